"""marketplace.rows writes a plain field's value of its plain type as it is: the same parameter
the ORM's preparation (``pre_save`` then ``get_db_prep_save``) gives, on every database."""

import pytest
from django.db import connection, models

from marketplace import rows

SAMPLES = [None, "", "abc", "12", "中文", 0, 7, -3, 2**40, True, False, 1.5]


class _Text(str):
    pass


@pytest.mark.parametrize("field_class", list(rows.PLAIN_VALUE_TYPES))
def test_plain_fields_prepare_their_type_as_it_is(field_class):
    kind = rows.PLAIN_VALUE_TYPES[field_class]
    # The ORM's steps the shortcut skips are Field's own (no override in these classes).
    assert field_class.pre_save is models.Field.pre_save
    assert field_class.get_db_prep_save is models.Field.get_db_prep_save
    assert field_class.get_db_prep_value is models.Field.get_db_prep_value
    field = field_class(null=True)
    field.set_attributes_from_name("x")
    for value in [*SAMPLES, _Text("sub")]:
        if not (value is None or type(value) is kind):
            continue  # prepared by the ORM as before
        prepared = field.get_db_prep_save(value, connection)
        assert prepared == value and type(prepared) is type(value), (field_class, value)


def test_other_fields_are_prepared():
    for field in (models.DecimalField(max_digits=5, decimal_places=2), models.JSONField(), models.DateTimeField()):
        assert rows.value_type(field) is None
    # A subclass may convert: only the exact classes are plain.
    assert rows.value_type(type("Upper", (models.CharField,), {"__module__": __name__})()) is None


def test_insert_parts_params_are_the_orms():
    from orders.models import Order, OrderStatusChange

    for obj in (
        Order(product_name="Card", quantity=2, channel="api", agent_order_no="A-1", callback_url="", buyer_device=""),
        OrderStatusChange(order_id=1, from_status="", to_status="pending", actor_id=None, note="placed"),
    ):
        _columns, _values, params = rows.insert_parts(obj, connection)
        fields, _c, _v = rows._insert_shape(type(obj), connection, {})
        assert len(params) == len(fields)
        plain = 0
        for (field, kind), param in zip(fields, params, strict=True):
            if kind is None:
                continue  # prepared by the ORM itself
            plain += 1
            expected = field.get_db_prep_save(field.pre_save(obj, True), connection)
            assert param == expected and type(param) is type(expected), field
        assert plain >= 3


@pytest.mark.django_db
def test_a_row_whose_key_the_database_gives_learns_it_when_written_on_its_own():
    """``Row.write`` outside a move (the order did not move): a balance payment's key is the
    database's, and the caller reads it (the API answers with the payment's order)."""
    from risk.models import BlockEntry

    entry = BlockEntry(kind=BlockEntry.Kind.EMAIL, value="row@example.com", reason="test")
    rows.Row(entry).write()
    assert entry.pk is not None and not entry._state.adding
    assert BlockEntry.objects.get(pk=entry.pk).value == "row@example.com"
