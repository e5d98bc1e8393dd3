"""Reads for agents: the chain and what an agent pays.

``agent_costs`` resolves a whole catalogue page in a constant number of queries whatever the
depth of the chain and the number of products: one for the uplines (by the ids in the
agent's path), one for the top level's platform prices, one for the uplines' markups.
Products should come with ``select_related("category")``; any that do not cost one query
more in total, not one each.
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from catalog.models import Category, Product
from marketplace import crypto
from marketplace.errors import Conflict
from marketplace.money import quantize
from marketplace.prepared import Prepared
from marketplace.text import mask_ends

from .models import Agent, LevelPrice, Markup, OperatorIdentity, PriceKind, RetailPrice, Storefront

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
    _chain, costs = agent_chain_costs(agent=agent, products=products)
    return {pid: steps[-1] for pid, steps in costs.items()}


def _markup_target(m: Markup) -> tuple:
    """What a markup is for: ("p", product id), ("c", category id) or ("a", None) for everything."""
    return ("p", m.product_id) if m.product_id else ("c", m.category_id) if m.category_id else ("a", None)


def _markup_find(table: dict, owner: tuple, cats: dict, product_id: int, level_id) -> Markup | None:
    """The markup of ``owner`` for a product sold to a downline of ``level_id``: the first for
    the product, its category, the category's parent, everything; at each, one for the level
    before one for any level. ``table`` is keyed ``(*owner, *_markup_target(m), level or None)``."""
    cat_id, parent_id = cats[product_id]
    targets = [("p", product_id), ("c", cat_id), *([("c", parent_id)] if parent_id is not None else []), ("a", None)]
    for target in targets:
        markup = table.get((*owner, *target, level_id)) or table.get((*owner, *target, None))
        if markup is not None:
            return markup
    return None


# The platform prices of one product for a level: the product's own, its category's or its
# parent category's (``agent_chain_costs``; a category without a parent is named twice).
_LEVEL_PRICES_OF_ONE = Prepared(
    lambda level, product, category, parent: LevelPrice.objects.filter(
        Q(product_id=product) | Q(category_id=category) | Q(category_id=parent), level_id=level
    ),
    level=987654321,
    product=987654322,
    category=987654323,
    parent=987654324,
)


def agent_chain_costs(*, agent: Agent, products: Iterable[Product]) -> tuple[list[Agent], dict[int, list[Decimal]]]:
    """The chain (top first, ``agent`` last) and, per product, what each agent of it pays.

    Same queries as ``agent_costs``; orders snapshot this to split a sale's margin.
    """
    products = list(products)
    chain = agent_chain(agent=agent) if agent.depth > 1 else [agent]
    if not products:
        return chain, {}
    cats = _categories(products)
    product_ids = [p.pk for p in products]
    category_ids = {c for pair in cats.values() for c in pair if c is not None}
    top = chain[0]

    # Platform prices of the top agent's level.
    by_product: dict[int, LevelPrice] = {}
    by_category: dict[int, LevelPrice] = {}
    if len(products) == 1:  # one sale's quote: a statement of one shape, compiled once
        cat_id, parent_id = cats[product_ids[0]]
        rules: Iterable[LevelPrice] = _LEVEL_PRICES_OF_ONE.objects(
            level=top.level_id,
            product=product_ids[0],
            category=cat_id,
            parent=cat_id if parent_id is None else parent_id,
        )
    else:
        rules = LevelPrice.objects.filter(
            Q(product_id__in=product_ids) | Q(category_id__in=category_ids), level_id=top.level_id
        )
    for lp in rules:
        if lp.product_id is not None:
            by_product[lp.product_id] = lp
        elif lp.category_id is not None:  # one of the two is set (levelprice check constraint)
            by_category[lp.category_id] = lp

    costs: dict[int, list[Decimal]] = {}
    for p in products:
        cat_id, parent_id = cats[p.pk]
        rule = by_product.get(p.pk) or by_category.get(cat_id) or (parent_id and by_category.get(parent_id))
        costs[p.pk] = [quantize(_apply(rule.kind, rule.value, p.price)) if rule else quantize(p.price)]

    if len(chain) == 1:
        return chain, costs

    # All markups the uplines set, indexed by (upline, scope key, downline level or None).
    uplines = chain[:-1]
    table: dict[tuple, Markup] = {}
    for m in Markup.objects.filter(
        Q(scope=Markup.Scope.ALL) | Q(product_id__in=product_ids) | Q(category_id__in=category_ids),
        agent_id__in=[u.pk for u in uplines],
    ).only("agent_id", "scope", "product_id", "category_id", "downline_level_id", "kind", "value"):
        table[(m.agent_id, *_markup_target(m), m.downline_level_id)] = m

    for upline, buyer in zip(uplines, chain[1:], strict=True):
        level_id = buyer.level_id
        for p in products:
            markup = _markup_find(table, (upline.pk,), cats, p.pk, level_id)
            base = costs[p.pk][-1]
            step = quantize(base + _apply(markup.kind, markup.value, base)) if markup is not None else base
            costs[p.pk].append(step)
    return chain, costs


def storefront_prices(*, storefront: Storefront, products: Iterable[Product]) -> dict[int, tuple[Decimal, Decimal]]:
    """``{product_id: (agent's cost, retail price)}`` for the storefront's listed products.

    Retail: the storefront's own price for the product, else the agent's cost plus the
    storefront's default markup; never below the cost (a price set before the cost rose is
    lifted to it). Products the agent unlisted are left out.
    """
    products = list(products)
    costs = agent_costs(agent=storefront.agent, products=products)
    own = {
        rp.product_id: rp
        for rp in RetailPrice.objects.filter(storefront=storefront, product_id__in=[p.pk for p in products])
    }
    out: dict[int, tuple[Decimal, Decimal]] = {}
    for p in products:
        cost = costs[p.pk]
        rp = own.get(p.pk)
        if rp is not None and not rp.is_listed:
            continue
        if rp is not None:
            retail = rp.price
        else:
            kind, value = storefront.default_markup_kind, storefront.default_markup_value
            retail = quantize(cost + _apply(kind, value, cost))
        out[p.pk] = (cost, max(quantize(retail), cost))
    return out


@dataclass(frozen=True)
class Share:
    agent: Agent
    depth: int
    unit_cost: Decimal
    unit_earning: Decimal


@dataclass(frozen=True)
class Quote:
    """The price of one code of a product for one sale, and who earns what of it."""

    unit_price: Decimal
    agent: Agent | None  # the selling agent, if any
    shares: tuple[Share, ...]


def buying_agent(user) -> Agent | None:
    """The agent ``user`` buys as on the platform (paying its own cost), or None: anonymous,
    or not an agent."""
    if user is None or not user.is_authenticated or not getattr(user, "is_agent", False):
        return None  # is_agent: no query of the agents table for a buyer (agents.receivers)
    return getattr(user, "agent", None)  # a missing profile raises an AttributeError subclass


def storefront_unlisted_ids(*, storefront: Storefront) -> set[int]:
    """The products the storefront's agent unlisted (``storefront_prices`` leaves them out)."""
    return set(RetailPrice.objects.filter(storefront=storefront, is_listed=False).values_list("product_id", flat=True))


class NotForSale(Conflict):
    """The storefront does not sell this product (closed, or the agent unlisted it)."""

    code = "not_for_sale"

    @classmethod
    def default_message(cls) -> str:
        return _("This shop does not sell this product.")


def price_quote(*, product: Product, buyer=None, storefront: Storefront | None = None) -> Quote:
    """What a sale of ``product`` costs and how its margin splits along the chain.

    Through a storefront: the storefront's retail price; its agent earns retail − its cost,
    each upline the markup it charged the agent below. An agent buying for itself (the site or
    the API): its own cost; its uplines earn their markups. Anyone else: the product's price.
    The platform keeps the rest: the top agent's cost less the stock's cost price.
    """
    seller: Agent | None
    if storefront is not None:
        if not storefront.is_open:
            raise NotForSale
        seller = storefront.agent
        prices = storefront_prices(storefront=storefront, products=[product])
        if product.pk not in prices:
            raise NotForSale
        unit_price = prices[product.pk][1]
    else:
        seller = buying_agent(buyer)
        if seller is None:
            return Quote(unit_price=quantize(product.price), agent=None, shares=())
        unit_price = None
    chain, costs = agent_chain_costs(agent=seller, products=[product])
    steps = costs[product.pk]
    if unit_price is None:
        unit_price = steps[-1]
    shares = []
    for i, agent in enumerate(chain):
        above_next = steps[i + 1] if i + 1 < len(chain) else unit_price
        shares.append(Share(agent=agent, depth=agent.depth, unit_cost=steps[i], unit_earning=above_next - steps[i]))
    return Quote(unit_price=unit_price, agent=seller, shares=tuple(shares))


def downline_costs(
    *, agent: Agent, products: Iterable[Product], level_ids: Iterable[int]
) -> tuple[dict[int, Decimal], dict[int, dict[int, Decimal]]]:
    """``agent``'s own cost and what a direct downline agent of each level would pay.

    Returns ``(own, by_level)``: ``own = {product_id: cost}``, ``by_level = {level_id:
    {product_id: cost}}``, each the agent's cost plus its markup for that level and product
    (resolved as in ``agent_chain_costs``: product, category, parent category, everything; a
    markup for the level before one for any level), rounded to the fen. The queries of
    ``agent_costs`` plus one for the agent's own markups, whatever the number of products.
    """
    products = list(products)
    level_ids = list(level_ids)
    own = agent_costs(agent=agent, products=products)
    if not products:
        return own, {lid: {} for lid in level_ids}
    cats = _categories(products)
    product_ids = [p.pk for p in products]
    category_ids = {c for pair in cats.values() for c in pair if c is not None}
    table: dict[tuple, Markup] = {}
    for m in Markup.objects.filter(
        Q(scope=Markup.Scope.ALL) | Q(product_id__in=product_ids) | Q(category_id__in=category_ids), agent=agent
    ).only("scope", "product_id", "category_id", "downline_level_id", "kind", "value"):
        table[(*_markup_target(m), m.downline_level_id)] = m
    by_level: dict[int, dict[int, Decimal]] = {}
    for level_id in level_ids:
        out = by_level.setdefault(level_id, {})
        for p in products:
            markup = _markup_find(table, (), cats, p.pk, level_id)
            base = own[p.pk]
            out[p.pk] = quantize(base + _apply(markup.kind, markup.value, base)) if markup is not None else base
    return own, by_level


# --- storefront operators (网络交易监督管理办法 第二十四条、第二十五条) -------------------------------


# 网络交易监督管理办法 第八条第三款: an individual's sporadic small-value sales stay under ¥100,000 a
# year (the shops on the platform added together); past it, registration is due and the report marks them.
SMALL_SALES_YEARLY_LIMIT = Decimal("100000.00")


def operator_identity_of(agent: Agent) -> OperatorIdentity | None:
    return OperatorIdentity.objects.filter(agent=agent).defer("licence_image").first()


def id_number_of(identity: OperatorIdentity) -> str:
    """The full ID number, decrypted: for the regulator's report and the audited reveal only."""
    return crypto.decrypt(identity.id_number) if identity.id_number else ""


def id_number_masked(identity: OperatorIdentity) -> str:
    """First and last character, the rest hidden: 1••••••••••••••••X."""
    if not identity.id_number:
        return ""
    try:
        number = id_number_of(identity)
    except ValueError:
        return "••••"
    return mask_ends(number, fill="•")


@dataclass(frozen=True)
class OperatorReportRow:
    """One storefront operator as the half-yearly report lists it (网络交易监督管理办法 第二十五条):
    a registered business by its name and credit code; an unregistered individual by name, ID
    number and the self-declaration of why no registration is needed."""

    agent_id: int
    storefront_id: int
    operator_type: str  # OperatorIdentity.Kind value, "" when the agent never submitted one
    operator_type_label: str
    name: str  # the company's name, or the individual's
    legal_name: str  # the individual, or the business's legal representative
    number: str  # the FULL ID number or credit code (see operators_report_rows)
    address: str
    phone: str
    small_sales_declared: bool
    storefront_name: str
    storefront_path: str  # /s/<slug>/; the report prefixes the site's address
    opened_at: datetime
    is_open: bool
    status: str  # OperatorIdentity.Status value, "" when none was submitted
    status_label: str
    verified_at: datetime | None


def operators_report_rows(*, start: datetime, end: datetime) -> list[OperatorReportRow]:
    """Every storefront operator active in ``[start, end)`` — a storefront opened before ``end`` —
    with the identity information 第二十五条 asks the platform to report each January and July.

    The ID number and credit code are returned IN FULL, decrypted: the regulator needs the real
    numbers. Only callers behind a dedicated permission may use this (the operator report's
    download, itself audited); never show these rows on a page or in a log. Storefronts whose
    operator never submitted an identity are listed too (status ""), so the report shows the gap
    rather than hiding it. Sales in the period are ``orders.selectors.operators.operator_sales``
    (orders sit above agents, so this module cannot read them). Two queries in all.
    """
    storefronts = list(
        Storefront.objects.filter(created_at__lt=end).select_related("agent").defer("logo").order_by("created_at", "pk")
    )
    identities = {
        identity.agent_id: identity
        for identity in OperatorIdentity.objects.filter(agent_id__in=[sf.agent_id for sf in storefronts]).defer(
            "licence_image"
        )
    }
    rows = []
    for sf in storefronts:
        identity = identities.get(sf.agent_id)
        if identity is None:
            kind = status = legal_name = number = address = phone = name = ""
            kind_label = status_label = ""
            declared, verified_at = False, None
        else:
            kind, kind_label = identity.kind, identity.get_kind_display()
            business = identity.kind == OperatorIdentity.Kind.BUSINESS
            name = identity.company_name if business else identity.legal_name
            legal_name = identity.legal_name
            number = identity.credit_code if business else id_number_of(identity)
            address, phone = identity.address, identity.phone
            declared = identity.small_sales_declared
            status, status_label = identity.status, identity.get_status_display()
            verified_at = identity.verified_at
        rows.append(
            OperatorReportRow(
                agent_id=sf.agent_id,
                storefront_id=sf.pk,
                operator_type=kind,
                operator_type_label=str(kind_label),
                name=name,
                legal_name=legal_name,
                number=number,
                address=address,
                phone=phone,
                small_sales_declared=declared,
                storefront_name=sf.name,
                storefront_path=f"/s/{sf.slug}/",
                opened_at=sf.created_at,
                is_open=sf.is_open,
                status=status,
                status_label=str(status_label),
                verified_at=verified_at,
            )
        )
    return rows


# --- what a storefront shows of its operator (电子商务法 第十五条; 网络交易监督管理办法 第十二条) --------

# A Chinese address down to the city: an optional province (省, 自治区, 特别行政区) then a city-level
# unit (市, 自治州, 地区, 盟). 北京市东城区… → 北京市; 浙江省杭州市西湖区… → 浙江省杭州市.
_REGION_RE = re.compile(
    r"^\s*(?P<province>[^\s\d省市]{2,10}?(?:省|自治区|特别行政区))?\s*"
    r"(?P<city>[^\s\d省市]{1,12}?(?:市|自治州|地区|盟))?"
)


def address_region(address: str) -> str:
    """The province and city of an address, or "" when it names neither (nothing is published then)."""
    found = _REGION_RE.match(address or "")
    if found is None:
        return ""
    return "".join(part for part in (found["province"], found["city"]) if part)


def name_masked(name: str) -> str:
    """The surname (first character) and two stars whatever the length: 张三 → 张**."""
    name = (name or "").strip()
    return f"{name[0]}**" if name else ""


@dataclass(frozen=True)
class OperatorPublicInfo:
    """What a storefront publishes of its operator, and nothing more: templates get this, never the
    ``OperatorIdentity`` row, so the encrypted ID number, an individual's home address and every
    phone number are out of their reach.

    电子商务法 第十五条 and 网络交易监督管理办法 第十二条: a registered business shows its licence
    information (name, 统一社会信用代码, legal representative, address, the licence); an individual
    exempt from registration (电子商务法 第十条: 零星小额交易) shows a statement of that instead.
    For an individual, 个人信息保护法 第六条 (minimisation): the name masked to the surname and the
    region (province and city) only; never the ID number, the full home address or the phone.
    """

    is_business: bool
    name: str  # the company's name, or the individual's name masked (张**)
    credit_code: str  # "" for an individual
    legal_representative: str  # "" for an individual
    address: str  # a business's registered address; an individual's province and city only
    has_licence: bool
    licence_version: int  # changes with the identity (the licence image's ?v=), 0 without a licence
    verified_on: date  # when the platform last verified the identity


# The columns read: never the ID number (nor its digest) or the phone.
_PUBLIC_COLUMNS = (
    "kind",
    "legal_name",
    "company_name",
    "credit_code",
    "address",
    "verified_at",
    "updated_at",
    "status",
)


def storefront_operator_public(*, storefront: Storefront) -> OperatorPublicInfo | None:
    """The public operator information of ``storefront``, or None unless its identity is verified.
    One query; the licence image is not loaded (``storefront_operator_licence`` serves it)."""
    identity = (
        OperatorIdentity.objects.filter(agent_id=storefront.agent_id, status=OperatorIdentity.Status.VERIFIED)
        .only(*_PUBLIC_COLUMNS)
        .annotate(has_licence=Q(licence_image__isnull=False))
        .first()
    )
    if identity is None or identity.verified_at is None:
        return None
    verified_on = timezone.localdate(identity.verified_at)
    if identity.kind == OperatorIdentity.Kind.BUSINESS:
        return OperatorPublicInfo(
            is_business=True,
            name=identity.company_name,
            credit_code=identity.credit_code,
            legal_representative=identity.legal_name,
            address=identity.address,
            has_licence=bool(identity.has_licence),
            licence_version=_licence_version(identity.verified_at, identity.updated_at) if identity.has_licence else 0,
            verified_on=verified_on,
        )
    return OperatorPublicInfo(
        is_business=False,
        name=name_masked(identity.legal_name),
        credit_code="",
        legal_representative="",
        address=address_region(identity.address),
        has_licence=False,
        licence_version=0,
        verified_on=verified_on,
    )


def _licence_version(verified_at: datetime | None, updated_at: datetime) -> int:
    return int(max(verified_at or updated_at, updated_at).timestamp() * 1000)


def storefront_operator_licence(*, storefront: Storefront) -> tuple[bytes, int] | None:
    """The business licence image of ``storefront``'s verified business operator and a version
    (the verification time, in ms), or None: an individual, unverified, or no image."""
    row = (
        OperatorIdentity.objects.filter(
            agent_id=storefront.agent_id,
            status=OperatorIdentity.Status.VERIFIED,
            kind=OperatorIdentity.Kind.BUSINESS,
            licence_image__isnull=False,
        )
        .values_list("licence_image", "verified_at", "updated_at")
        .first()
    )
    if row is None or row[0] is None or not row[0]:
        return None
    data, verified_at, updated_at = row
    return bytes(data or b""), _licence_version(verified_at, updated_at)
