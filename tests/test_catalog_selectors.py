import pytest

from catalog import selectors
from tests.factories import CategoryFactory


@pytest.mark.django_db
def test_category_tree_lists_active_tops_with_their_active_children_in_order(django_assert_num_queries):
    second = CategoryFactory(sort_order=2)
    first = CategoryFactory(sort_order=1)
    CategoryFactory(sort_order=0, is_active=False)  # an inactive top is not listed
    late = CategoryFactory(parent=first, sort_order=5)
    early = CategoryFactory(parent=first, sort_order=1)
    CategoryFactory(parent=first, sort_order=3, is_active=False)  # nor an inactive child

    with django_assert_num_queries(2):  # the tops, then every top's children at once
        tree = selectors.category_tree()
        children = {top.pk: [c.pk for c in top.active_children] for top in tree}

    assert [top.pk for top in tree] == [first.pk, second.pk]
    assert children == {first.pk: [early.pk, late.pk], second.pk: []}
