"""Reads for agents: the chain and what an agent pays.

``agent_costs`` resolves a whole catalogue page in a constant number of queries whatever the
depth of the chain and the number of products: one for the uplines (by the ids in the
agent's path), one for the top level's platform prices, one for the uplines' markups.
Products should come with ``select_related("category")``; any that do not cost one query
more in total, not one each.
"""

from collections.abc import Iterable
from decimal import Decimal

from django.db.models import Q

from catalog.models import Category, Product
from marketplace.money import quantize

from .models import Agent, LevelPrice, Markup, PriceKind

HUNDRED = Decimal(100)


def agent_chain(*, agent: Agent) -> list[Agent]:
    """The agents from the top of the tree down to ``agent`` (inclusive), in one query."""
    ids = agent.chain_ids
    uplines = {a.pk: a for a in Agent.objects.filter(pk__in=ids[:-1]).only("id", "level_id", "depth", "path")}
    if len(uplines) != len(ids) - 1:
        raise LookupError(f"agent {agent.pk}: path {agent.path!r} names missing agents")
    return [uplines[pk] for pk in ids[:-1]] + [agent]


def agent_subtree(*, agent: Agent):
    """All agents below ``agent`` (not itself), by path prefix."""
    return Agent.objects.filter(path__startswith=agent.path).exclude(pk=agent.pk)


def _apply(kind: str, value: Decimal, base: Decimal) -> Decimal:
    return quantize(base * value / HUNDRED) if kind == PriceKind.PERCENT else value


def _categories(products: list[Product]) -> dict[int, tuple[int, int | None]]:
    """product id -> (category id, parent category id), with at most one query."""
    out: dict[int, tuple[int, int | None]] = {}
    missing: dict[int, list[int]] = {}
    for p in products:
        if Product.category.is_cached(p):
            out[p.pk] = (p.category_id, p.category.parent_id)
        else:
            missing.setdefault(p.category_id, []).append(p.pk)
    if missing:
        for cat_id, parent_id in Category.objects.filter(pk__in=missing).values_list("id", "parent_id"):
            for pid in missing[cat_id]:
                out[pid] = (cat_id, parent_id)
    return out


def agent_costs(*, agent: Agent, products: Iterable[Product]) -> dict[int, Decimal]:
    """What ``agent`` pays for each product: ``{product_id: Decimal}``.

    Top agent (depth 1): its level's platform price: a product row, else a category rule
    (the product's category, then its parent), else the product's own price.
    Each agent below pays its upline's cost plus the upline's markup for the agent's level
    and the product, the most specific markup winning: product, then category, then parent
    category, then everything; within each, a markup for that level before one for any level.
    Every step is rounded to the fen (half up). Markups are never negative, so costs never
    go down the chain.
    """
    products = list(products)
    if not products:
        return {}
    cats = _categories(products)
    product_ids = [p.pk for p in products]
    category_ids = {c for pair in cats.values() for c in pair if c is not None}
    chain = agent_chain(agent=agent) if agent.depth > 1 else [agent]
    top = chain[0]

    # Platform prices of the top agent's level.
    by_product: dict[int, LevelPrice] = {}
    by_category: dict[int, LevelPrice] = {}
    for lp in LevelPrice.objects.filter(
        Q(product_id__in=product_ids) | Q(category_id__in=category_ids), level_id=top.level_id
    ):
        if lp.product_id is not None:
            by_product[lp.product_id] = lp
        else:
            by_category[lp.category_id] = lp

    costs: dict[int, Decimal] = {}
    for p in products:
        cat_id, parent_id = cats[p.pk]
        rule = by_product.get(p.pk) or by_category.get(cat_id) or (parent_id and by_category.get(parent_id))
        costs[p.pk] = quantize(_apply(rule.kind, rule.value, p.price)) if rule else quantize(p.price)

    if len(chain) == 1:
        return costs

    # All markups the uplines set, indexed by (upline, scope key, downline level or None).
    uplines = chain[:-1]
    table: dict[tuple, Markup] = {}
    for m in Markup.objects.filter(
        Q(scope=Markup.Scope.ALL) | Q(product_id__in=product_ids) | Q(category_id__in=category_ids),
        agent_id__in=[u.pk for u in uplines],
    ).only("agent_id", "scope", "product_id", "category_id", "downline_level_id", "kind", "value"):
        key = ("p", m.product_id) if m.product_id else ("c", m.category_id) if m.category_id else ("a", None)
        table[(m.agent_id, *key, m.downline_level_id)] = m

    for upline, buyer in zip(uplines, chain[1:], strict=True):
        level_id = buyer.level_id
        for p in products:
            cat_id, parent_id = cats[p.pk]
            targets = [("p", p.pk), ("c", cat_id)]
            if parent_id is not None:
                targets.append(("c", parent_id))
            targets.append(("a", None))
            markup = None
            for target in targets:
                markup = table.get((upline.pk, *target, level_id)) or table.get((upline.pk, *target, None))
                if markup is not None:
                    break
            if markup is not None:
                base = costs[p.pk]
                costs[p.pk] = quantize(base + _apply(markup.kind, markup.value, base))
    return costs
