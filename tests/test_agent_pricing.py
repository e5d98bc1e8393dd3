"""agents.services (tree, markups) and agents.selectors.agent_costs (price resolution)."""

import itertools
import random
from decimal import Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext

from agents import selectors
from agents.models import Agent, Markup, PriceKind
from agents.services import agents as services
from agents.services.agents import AgentError
from catalog.models import Product
from tests.factories import CategoryFactory, ProductFactory, UserFactory

D = Decimal
FIXED, PERCENT = PriceKind.FIXED, PriceKind.PERCENT
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("english")]


def make_chain(depth, levels, level_names=None):
    """A chain of ``depth`` agents, top first."""
    names = level_names or ["普通"] * depth
    chain, upline = [], None
    for i in range(depth):
        upline = services.agent_create(user=UserFactory(), level=levels[names[i]], upline=upline)
        chain.append(upline)
    return chain


def costs(agent, products):
    products = Product.objects.filter(pk__in=[p.pk for p in products]).select_related("category")
    return selectors.agent_costs(agent=agent, products=products)


# --- the tree ----------------------------------------------------------------------------


def test_path_and_depth_are_kept(levels):
    a, b, c = make_chain(3, levels)
    assert (a.depth, b.depth, c.depth) == (1, 2, 3)
    assert c.path == f"/{a.pk}/{b.pk}/{c.pk}/"
    assert c.chain_ids == [a.pk, b.pk, c.pk]
    assert set(selectors.agent_subtree(agent=a)) == {b, c}
    assert list(selectors.agent_subtree(agent=c)) == []


def test_depth_above_max_is_refused(levels, settings):
    settings.AGENTS_MAX_DEPTH = 3
    *_, bottom = make_chain(3, levels)
    with pytest.raises(AgentError, match="at most 3 levels deep"):
        services.agent_create(user=UserFactory(), level=levels["普通"], upline=bottom)
    assert Agent.objects.count() == 3


def test_default_max_depth_is_five(levels):
    *_, bottom = make_chain(5, levels)
    with pytest.raises(AgentError, match="at most 5 levels deep"):
        services.agent_create(user=UserFactory(), level=levels["普通"], upline=bottom)


def test_user_is_agent_once(levels):
    (a,) = make_chain(1, levels)
    with pytest.raises(AgentError, match="already an agent"):
        services.agent_create(user=a.user, level=levels["金牌"])


# --- markups: validation ------------------------------------------------------------------


@pytest.mark.parametrize("value", [D("-0.01"), "-1", -5])
def test_negative_markup_refused(levels, value):
    (a,) = make_chain(1, levels)
    with pytest.raises(AgentError, match="Cannot be negative"):
        services.markup_set(agent=a, kind=FIXED, value=value)
    assert not Markup.objects.exists()


def test_markup_value_checks(levels):
    (a,) = make_chain(1, levels)
    with pytest.raises(AgentError, match="not a float"):
        services.markup_set(agent=a, kind=PERCENT, value=1.5)
    with pytest.raises(AgentError, match="two decimal places"):
        services.markup_set(agent=a, kind=FIXED, value="0.001")
    with pytest.raises(AgentError, match="not a number"):
        services.markup_set(agent=a, kind=FIXED, value="abc")
    with pytest.raises(AgentError, match="not both"):
        p = ProductFactory()
        services.markup_set(agent=a, kind=FIXED, value="1", product=p, category=p.category)


def test_database_refuses_negative_markup(levels):
    (a,) = make_chain(1, levels)
    with pytest.raises(IntegrityError), transaction.atomic():
        Markup.objects.create(agent=a, scope=Markup.Scope.ALL, kind=FIXED, value=D("-1"))


def test_markup_set_replaces(levels):
    (a,) = make_chain(1, levels)
    services.markup_set(agent=a, kind=FIXED, value="1.00")
    services.markup_set(agent=a, kind=PERCENT, value="3")
    services.markup_set(agent=a, kind=FIXED, value="2.00", downline_level=levels["金牌"])
    assert Markup.objects.count() == 2
    assert Markup.objects.get(downline_level=None).kind == PERCENT


# --- resolution ---------------------------------------------------------------------------


def test_top_agent_platform_price(levels):
    sub = CategoryFactory(parent=CategoryFactory())
    p_own, p_rule, p_parent, p_fixed = (ProductFactory(category=sub, price=D("10.00")) for _ in range(4))
    other = ProductFactory(price=D("20.00"))
    gold = levels["金牌"]
    services.level_price_set(level=gold, product=p_fixed, kind=FIXED, value="8.88")
    services.level_price_set(level=gold, category=sub.parent, kind=PERCENT, value="90")
    (a,) = make_chain(1, levels, ["金牌"])
    (n,) = make_chain(1, levels, ["普通"])
    assert costs(a, [p_own, p_fixed, other]) == {p_own.pk: D("9.00"), p_fixed.pk: D("8.88"), other.pk: D("20.00")}
    # The sub-category's own rule beats its parent's.
    services.level_price_set(level=gold, category=sub, kind=PERCENT, value="95.5")
    assert costs(a, [p_rule, p_parent])[p_rule.pk] == D("9.55")
    # Other levels are not affected.
    assert costs(n, [p_own, p_fixed]) == {p_own.pk: D("10.00"), p_fixed.pk: D("10.00")}


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5])
def test_chain_fixed_and_percent(levels, depth):
    p = ProductFactory(price=D("9.99"))
    chain = make_chain(depth, levels)
    for i, agent in enumerate(chain[:-1]):
        if i % 2 == 0:
            services.markup_set(agent=agent, kind=PERCENT, value="33.33")
        else:
            services.markup_set(agent=agent, kind=FIXED, value="0.50")
    # By hand: 9.99; +33.33% = 9.99 + 3.33 (3.329667) = 13.32; +0.50 = 13.82;
    # +33.33% = 13.82 + 4.61 (4.606206) = 18.43; +0.50 = 18.93.
    expected = [D("9.99"), D("13.32"), D("13.82"), D("18.43"), D("18.93")]
    for i, agent in enumerate(chain):
        assert costs(agent, [p]) == {p.pk: expected[i]}, f"agent at depth {i + 1}"


def test_rounding_half_up_to_the_fen(levels):
    p = ProductFactory(price=D("10.00"))
    a, b = make_chain(2, levels)
    services.markup_set(agent=a, kind=PERCENT, value="0.05")  # 0.005 -> 0.01 (half up)
    assert costs(b, [p])[p.pk] == D("10.01")
    services.markup_set(agent=a, kind=PERCENT, value="0.0499")  # 0.00499 -> 0.00
    assert costs(b, [p])[p.pk] == D("10.00")


def test_level_specific_beats_any_level(levels):
    p = ProductFactory(price=D("100.00"))
    top = services.agent_create(user=UserFactory(), level=levels["金牌"])
    silver = services.agent_create(user=UserFactory(), level=levels["银牌"], upline=top)
    plain = services.agent_create(user=UserFactory(), level=levels["普通"], upline=top)
    services.markup_set(agent=top, kind=FIXED, value="5.00")
    services.markup_set(agent=top, kind=FIXED, value="2.00", downline_level=levels["银牌"])
    assert costs(silver, [p])[p.pk] == D("102.00")
    assert costs(plain, [p])[p.pk] == D("105.00")


def test_product_beats_category_beats_parent_beats_all(levels):
    parent = CategoryFactory()
    sub = CategoryFactory(parent=parent)
    p_product, p_sub, p_parent = (ProductFactory(category=sub, price=D("50.00")) for _ in range(3))
    p_parent.category = CategoryFactory(parent=parent)
    p_parent.save(update_fields=["category"])
    p_all = ProductFactory(price=D("50.00"))
    a, b = make_chain(2, levels)
    services.markup_set(agent=a, kind=FIXED, value="1.00")
    services.markup_set(agent=a, kind=FIXED, value="2.00", category=parent)
    services.markup_set(agent=a, kind=FIXED, value="3.00", category=sub)
    services.markup_set(agent=a, kind=FIXED, value="4.00", product=p_product)
    # A level-specific markup of a broader scope does not beat a narrower one.
    services.markup_set(agent=a, kind=FIXED, value="9.00", downline_level=levels["普通"])
    assert costs(b, [p_product, p_sub, p_parent, p_all]) == {
        p_product.pk: D("54.00"),
        p_sub.pk: D("53.00"),
        p_parent.pk: D("52.00"),  # via the parent category
        p_all.pk: D("59.00"),  # the level-specific "everything" beats "everything" for any level
    }


def test_no_markup_means_upline_cost(levels):
    p = ProductFactory(price=D("12.34"))
    _top, b, c = make_chain(3, levels)
    services.markup_set(agent=b, kind=PERCENT, value="10")
    assert costs(b, [p])[p.pk] == D("12.34")
    assert costs(c, [p])[p.pk] == D("13.57")  # 1.234 -> 1.23


def test_changing_markup_changes_later_resolutions(levels):
    p = ProductFactory(price=D("10.00"))
    a, b = make_chain(2, levels)
    services.markup_set(agent=a, kind=FIXED, value="1.00")
    before = costs(b, [p])[p.pk]
    services.markup_set(agent=a, kind=FIXED, value="2.00")
    assert (before, costs(b, [p])[p.pk]) == (D("11.00"), D("12.00"))


def test_products_without_loaded_category_still_bounded(levels):
    products = [ProductFactory(category=CategoryFactory(parent=CategoryFactory())) for _ in range(5)]
    a, b = make_chain(2, levels)
    services.markup_set(agent=a, kind=FIXED, value="1.00", category=products[0].category.parent)
    plain = list(Product.objects.filter(pk__in=[p.pk for p in products]))
    with CaptureQueriesContext(connection) as ctx:
        result = selectors.agent_costs(agent=b, products=plain)
    assert len(ctx) == 4  # + one for the categories
    assert result[products[0].pk] == D("98.00")


@pytest.mark.parametrize("seed", range(5))
def test_no_agent_buys_below_its_upline(levels, seed):
    """Property: with any (non-negative) markups, cost never goes down the chain."""
    rng = random.Random(seed)
    parent = CategoryFactory()
    cats = [parent, CategoryFactory(parent=parent), CategoryFactory()]
    products = [ProductFactory(category=rng.choice(cats), price=D(rng.randint(1, 99999)) / 100) for _ in range(15)]
    names = list(levels)
    chain = make_chain(5, levels, [rng.choice(names) for _ in range(5)])
    for level in levels.values():
        services.level_price_set(level=level, category=cats[0], kind=PERCENT, value=str(rng.randint(50, 100)))
    for agent in chain[:-1]:
        for _ in range(6):
            target = rng.choice([{}, {"product": rng.choice(products)}, {"category": rng.choice(cats)}])
            kind = rng.choice([FIXED, PERCENT])
            value = D(rng.randint(0, 5000)) / (100 if kind == FIXED else 1000)
            level = rng.choice([None, *levels.values()])
            services.markup_set(agent=agent, kind=kind, value=value, downline_level=level, **target)
    per_level = [costs(agent, products) for agent in chain]
    for upper, lower in itertools.pairwise(per_level):
        for pk in upper:
            assert lower[pk] >= upper[pk]
            assert lower[pk] == lower[pk].quantize(D("0.01"))


# --- a constant number of queries ---------------------------------------------------------


def _count(agent, products) -> int:
    loaded = list(Product.objects.filter(pk__in=[p.pk for p in products]).select_related("category"))
    with CaptureQueriesContext(connection) as ctx:
        result = selectors.agent_costs(agent=agent, products=loaded)
    assert len(result) == len(products)
    return len(ctx)


def _marked_up_catalogue(levels, n_products, depth):
    parent = CategoryFactory()
    sub = CategoryFactory(parent=parent)
    products = ProductFactory.create_batch(n_products, category=sub)
    chain = make_chain(depth, levels)
    services.level_price_set(level=levels["普通"], category=parent, kind=PERCENT, value="90")
    for agent in chain[:-1]:
        services.markup_set(agent=agent, kind=PERCENT, value="5")
        services.markup_set(agent=agent, kind=FIXED, value="1.00", category=sub, downline_level=levels["普通"])
        for p in products[:3]:
            services.markup_set(agent=agent, kind=FIXED, value="0.10", product=p)
    return products, chain


def test_queries_do_not_grow_with_depth(levels, django_assert_max_num_queries):
    products, chain = _marked_up_catalogue(levels, 20, 5)
    counts = {agent.depth: _count(agent, products) for agent in chain}
    assert counts == {1: 1, 2: 3, 3: 3, 4: 3, 5: 3}
    # Passing the queryset itself: loading the products is the fourth query.
    with django_assert_max_num_queries(4):
        selectors.agent_costs(agent=chain[-1], products=Product.objects.select_related("category"))


def test_queries_do_not_grow_with_catalogue(levels):
    products, chain = _marked_up_catalogue(levels, 200, 5)
    for agent in (chain[0], chain[-1]):
        assert _count(agent, products[:10]) == _count(agent, products)
    assert _count(chain[-1], products) == 3
