from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cache

from django.conf import settings
from django.db import connection, models
from django.db.models import Count, Min, OuterRef, Q, Subquery
from django.db.models.expressions import RawSQL
from django.db.models.lookups import IsNull
from django.utils import timezone
from django.utils.translation import get_language
from django.utils.translation import gettext as _

from agents import selectors as agent_selectors
from catalog import selectors as catalog_selectors
from catalog import topup as catalog_topup
from catalog.models import Product
from compliance import rating
from marketplace import rows
from marketplace.errors import NotFound
from marketplace.localcache import Kept
from marketplace.money import quantize
from marketplace.prepared import Paged, Prepared
from marketplace.text import email_normalise
from supply import services as supply_services

from ..models import CodeReveal, EmailRefusal, ManualTopup, Order, OrderCode, OrderStatusChange, reissue_parse


def orders_for_buyer(buyer):
    return Order.objects.filter(buyer=buyer).select_related("product").order_by("-id")


# What a row of the buyer's order list shows (``{% order_row %}``: its key and its template) and
# no more: an order and its product are some 60 columns, and building them (the JSON field's
# decoding, a setattr per field) was about a quarter of the list's Python.
ORDER_ROW_FIELDS = ("number", "buyer", "status", "product_name", "quantity", "created_at", "total", "product__kind")


def with_email_refusal(orders):
    """``orders`` (a list's rows) with ``email_refusal_permanent``: whether the mail server refused
    the order's address for good (True), for now (False), or neither (None), while the buyer should
    be told of it: the order page's condition (``email_refusal_shown``: refused for good, or for
    now and not sent since). A subquery on the refusal's unique order index in the list's own
    statement, so a list shows its marker (``{% order_row %}``) without a read per row or of its
    own, where almost every order has none."""
    shown = EmailRefusal.objects.filter(order_id=OuterRef("pk")).filter(
        Q(permanent=True) | Q(IsNull(OuterRef("buyer_notified_at"), True))
    )
    return orders.annotate(email_refusal_permanent=Subquery(shown.values("permanent")[:1]))


# The buyer's order list (issue 17): its page and its count compiled once per process.
_BUYER_ORDERS = Prepared(
    lambda buyer: with_email_refusal(orders_for_buyer(buyer).only(*ORDER_ROW_FIELDS)), buyer=987654321
)
_BUYER_ORDER_COUNT = Prepared(
    lambda buyer: (
        Order.objects.filter(buyer=buyer).order_by().values("buyer").annotate(n=Count("id")).values_list("n", flat=True)
    ),
    buyer=987654321,
)


def orders_for_buyer_paged(buyer) -> Paged:
    """``orders_for_buyer`` as a Paginator's object list: a count and pages of fixed statements."""
    return Paged(_BUYER_ORDERS, _BUYER_ORDER_COUNT, buyer=buyer.pk)


def order_counts_for_buyer(buyer) -> dict[str, int]:
    """The buyer's orders on the profile page: all, delivered and awaiting payment."""
    return Order.objects.filter(buyer=buyer).aggregate(
        total=Count("id"),
        delivered=Count("id", filter=Q(status=Order.Status.DELIVERED)),
        pending=Count("id", filter=Q(status=Order.Status.PENDING)),
    )


# The order page's reads have a fixed shape (only the values differ) and run on every view of
# an order: each is compiled once per process (``marketplace.prepared``). The samples are
# values no real read carries.
_SAMPLE_ID, _SAMPLE_OTHER_ID, _SAMPLE_NUMBER = 987654321, 987654322, "K-PREPARED-SAMPLE"


# Flags of an order that apps above orders read on its page (``order_page_flag``): name -> the
# SQL text of a boolean about the order, given its id column.
_PAGE_FLAGS: dict[str, Callable[[str], str]] = {}


def order_page_flag(name: str, sql: Callable[[str], str]) -> None:
    """Have the order page's read of an order (on PostgreSQL) carry the boolean ``name``: ``sql``
    gets the order's id column (quoted, qualified) and returns a boolean SQL expression composed
    from models' names only (no values; an ``EXISTS`` over an indexed column of the order).

    For an app above orders whose part of the page asks one question of its own tables on every
    view (after-sales: has the order any refund request?): the answer rides in the order's
    statement, and a false one spares that part its read. Registered when the app is ready,
    before any read is compiled (``marketplace.prepared`` keeps the first text it compiles); a
    reader finds the attribute missing on other databases and reads as before."""
    if not name.isidentifier() or _PAGE_FLAGS.get(name, sql) is not sql:
        raise ValueError(f"page flag {name!r}: an identifier, registered once")
    _PAGE_FLAGS[name] = sql


def _page_order(*, history: bool = True):
    """The order page's order (with its product). On PostgreSQL its codes and (for ``history``)
    its history come in the same statement (``codes_json``, ``history_json``: ``_page_rows_sql``),
    where they were two more reads of every view of an order (issue 17), and so do the flags of
    the apps above (``order_page_flag``). Not ordered: the number is unique (the model's
    ordering would have PostgreSQL sort the one row).

    The product comes as a JSON subquery too (``product_json``, ``_with_product``), not joined:
    PostgreSQL plans the join of ``catalog_product`` (its columns, its indexes) in about 0.15 ms
    of CPU more than the subquery by its primary key, on every view of an order page."""
    if connection.vendor != "postgresql":
        return Order.objects.select_related("product").order_by()
    orders = Order.objects.order_by()
    codes_sql, history_sql, product_sql = _page_rows_sql()
    # Texts composed from the models' names only; no value in them.
    extra = {"codes_json": RawSQL(codes_sql, ()), "product_json": RawSQL(product_sql, ())}  # noqa: S611
    if history:  # the whole page (not an htmx reveal's answer): its history and the email refused
        extra["history_json"] = RawSQL(history_sql, ())  # noqa: S611
        extra["email_refusal_json"] = RawSQL(_refusal_sql(), ())  # noqa: S611
    order_id = _order_id_column()
    for name, sql in _PAGE_FLAGS.items():
        extra[name] = RawSQL(f"({sql(order_id)})", (), output_field=models.BooleanField())  # noqa: S611
    return orders.annotate(**extra)


def _order_id_column() -> str:
    q = connection.ops.quote_name
    return f"{q(Order._meta.db_table)}.{q(Order._meta.pk.column)}"


# A code's reveals: how many, and the first (``_order_codes``' annotations, for the refund offer).
_CODE_EXTRA = (("reveal_count", "plain"), ("first_revealed_at", "time"))


@cache
def _page_rows_sql() -> tuple[str, str, str]:
    """The subqueries of the order's codes (``_order_codes``: all, with their reveals' count and
    first time, by id), of its history (``_order_history``: by time, then id) and of its product
    (the one row of its ``product_id``) as JSON (``marketplace.rows.json_rows_sql``), composed
    once from the models' names."""
    q = connection.ops.quote_name
    order = q(Order._meta.db_table)
    order_id = _order_id_column()
    # An order never paid has no codes of its buyer's (``_NO_CODES``): they are not read.
    unpaid = ", ".join(f"'{s.value}'" for s in sorted(_NO_CODES))
    if not all(s.value.isidentifier() for s in _NO_CODES):  # written into the text: plain names only
        raise ValueError(f"status values to quote: {unpaid}")
    paid = f"{order}.{q(Order._meta.get_field('status').column)} NOT IN ({unpaid})"
    # Each code's reveals, counted and the first found in one pass (a lateral join per code).
    reveal_columns = {f.name: q(f.column) for f in CodeReveal._meta.concrete_fields}
    reveal_at, reveal_of = reveal_columns["at"], reveal_columns["order_code"]
    reveals = (
        f"LEFT JOIN LATERAL (SELECT count(*) AS n, min(r.{reveal_at}) AS first"  # noqa: S608 (names from the models)
        f" FROM {q(CodeReveal._meta.db_table)} r WHERE r.{reveal_of} = c.{q(OrderCode._meta.pk.column)}) rv ON true"
    )
    codes = rows.json_rows_sql(
        OrderCode,
        connection,
        alias="c",
        link="order",
        to=order_id,
        order=["id"],
        where=paid,
        extra=["rv.n", "rv.first"],
        join=reveals,
    )
    history = rows.json_rows_sql(
        OrderStatusChange, connection, alias="h", link="order", to=order_id, order=["at", "id"]
    )
    product = rows.json_rows_sql(
        Product,
        connection,
        alias="p",
        link="id",
        to=f"{q(Order._meta.db_table)}.{q(Order._meta.get_field('product').column)}",
        order=["id"],
    )
    return codes, history, product


@cache
def _refusal_sql() -> str:
    """The subquery of the order's ``EmailRefusal`` as JSON (``json_rows_sql``), only while the
    buyer should be told of it (``email_refusal_shown``): refused for good, or refused for now and
    the email not sent since (a later send claims ``buyer_notified_at`` again). One lookup on
    the refusal's unique order index, in the page's own statement: no read of its own on every
    view of an order, where almost every order has no refusal."""
    q = connection.ops.quote_name
    notified = f"{q(Order._meta.db_table)}.{q(Order._meta.get_field('buyer_notified_at').column)}"
    permanent = q(EmailRefusal._meta.get_field("permanent").column)
    return rows.json_rows_sql(
        EmailRefusal,
        connection,
        alias="er",
        link="order",
        to=_order_id_column(),
        order=["id"],
        where=f"(er.{permanent} OR {notified} IS NULL)",
    )


def email_refusal_shown(order: Order) -> EmailRefusal | None:
    """The mail server's refusal of the buyer's address of ``order`` (``EmailRefusal``) while the
    buyer should be told of it: refused for good, or refused for now and not sent since. Read
    with the page's order on PostgreSQL (``email_refusal_json``); by itself elsewhere."""
    if hasattr(order, "email_refusal_json"):
        found = rows.json_rows(EmailRefusal, order.email_refusal_json, using=order._state.db or "default")
        return found[0] if found else None
    refusal = EmailRefusal.objects.filter(order_id=order.pk).first()
    if refusal is None or not (refusal.permanent or order.buyer_notified_at is None):
        return None
    return refusal


def _buyer_order_query(buyer: int, number: str, since: datetime, now: datetime, *, history: bool = True):
    """The buyer's order with ``credit_rated``: whether the buyer has anything their credit
    rating reads (``compliance.rating.credit_probe_sql``; false: the unrated level, no query of
    its own where the page needs the rating). ``since`` is ``rating.credit_probe_since(now)``,
    the probe's other value, named so that the compiled statement takes it as one."""
    rated = rating.credit_probe_annotation(user_id=buyer, now=now)
    return _page_order(history=history).filter(buyer_id=buyer, number=number).annotate(credit_rated=rated)


_BUYER_SAMPLES = {"buyer": _SAMPLE_ID, "number": _SAMPLE_NUMBER, **rating.CREDIT_PROBE_SAMPLES}
_buyer_order = Prepared(_buyer_order_query, **_BUYER_SAMPLES)
# The answer to an htmx reveal: the order and its codes, not its history.
_buyer_order_codes = Prepared(lambda **values: _buyer_order_query(**values, history=False), **_BUYER_SAMPLES)
_guest_order = Prepared(lambda number: _page_order().filter(buyer__isnull=True, number=number), number=_SAMPLE_NUMBER)
_guest_order_codes = Prepared(
    lambda number: _page_order(history=False).filter(buyer__isnull=True, number=number), number=_SAMPLE_NUMBER
)
# Every code of the order, released ones too: the page shows the live ones, numbers them among
# all (``code_places``) and the refund offer reads them all (aftersales' ``refund_options``
# takes ``all_codes`` instead of querying them again).
_order_codes = Prepared(
    lambda order: (
        OrderCode.objects.filter(order_id=order)
        .annotate(reveal_count=Count("reveals"), first_revealed_at=Min("reveals__at"))
        .order_by("id")
    ),
    order=_SAMPLE_ID,
)
_order_history = Prepared(
    lambda order: OrderStatusChange.objects.filter(order_id=order).order_by("at", "id"),  # the model's ordering
    order=_SAMPLE_ID,
)
# An order never paid has no codes of its buyer's (reserved ones go back to stock) and its page
# shows none: not read.
_NO_CODES = frozenset({Order.Status.PENDING, Order.Status.EXPIRED, Order.Status.CANCELLED})


def _buyer_order_row(buyer, number: str, read: Prepared = _buyer_order) -> Order | None:
    buyer_id = getattr(buyer, "pk", None)
    if not buyer_id:
        return None
    now = timezone.now()
    order = read.first(buyer=buyer_id, number=number, **rating.credit_probe_values(now))
    if order is not None:
        order.buyer = buyer  # the viewer: not loaded again (refund offer, links)
    return order


def _with_product(order: Order) -> None:
    """The order's product from ``product_json`` (``_page_order``), as ``select_related`` set it."""
    if hasattr(order, "product_json"):
        found = rows.json_rows(Product, order.product_json, using=order._state.db or "default")
        if found:  # always (a protected key); else the product loads on access as before
            order.product = found[0]


def _with_codes(order: Order | None) -> Order | None:
    if order is not None:
        _with_product(order)
        if order.status in _NO_CODES:
            codes = []
        elif hasattr(order, "codes_json"):  # read with the order (``_page_order``)
            codes = rows.json_rows(OrderCode, order.codes_json, using=order._state.db or "default", extra=_CODE_EXTRA)
        else:
            codes = _order_codes.objects(order=order.pk)
        setattr(order, "all_codes", codes)  # noqa: B010 (a page-only attribute)
    return order


def _page(order: Order | None) -> Order | None:
    _with_codes(order)
    if order is None:
        return None
    if hasattr(order, "history_json"):  # read with the order (``_page_order``)
        history = rows.json_rows(OrderStatusChange, order.history_json, using=order._state.db or "default")
    else:
        history = _order_history.objects(order=order.pk)
    return order_page_extras(order, history=history)


def order_for_buyer(buyer, number: str) -> Order | None:
    """The buyer's own order for its page, or None: another buyer's order does not exist for
    them (the view answers 404).

    For its page: ``live_codes`` in their places (``code_places``), each with ``number`` and,
    for a replacement, ``replaces`` (the number of the code it replaced); ``reissues`` and
    ``timeline`` (``Reissued`` rows and the history as it is shown); ``credit_rated`` (see
    ``_buyer_order_query``)."""
    return _page(_buyer_order_row(buyer, number))


def order_codes_for_buyer(buyer, number: str) -> Order | None:
    """The buyer's own order with ``all_codes`` (and ``credit_rated``), without its history:
    what the answer to an htmx reveal shows (the refund offer); None as ``order_for_buyer``."""
    return _with_codes(_buyer_order_row(buyer, number, _buyer_order_codes))


def order_codes_for_guest(number: str) -> Order | None:
    """A guest order with ``all_codes``, without its history (``order_codes_for_buyer``)."""
    return _with_codes(_guest_order_codes.first(number=number))


def order_status_for_buyer(buyer, number: str) -> str:
    """The status of the buyer's own order (its page's status poll), or 404 like
    ``order_for_buyer``: one indexed statement, no order loaded."""
    if not getattr(buyer, "pk", None):
        raise NotFound(_("No such order."), code="order_not_found")
    status = _buyer_order_status(buyer.pk, number)
    if status is None:
        raise NotFound(_("No such order."), code="order_not_found")
    return status


@cache
def _status_sql() -> str:
    """The poll's statement, composed once from the model's names."""
    q, columns = connection.ops.quote_name, {f.name: f.column for f in Order._meta.concrete_fields}
    table = q(Order._meta.db_table)
    status, buyer, number = (f"{table}.{q(columns[name])}" for name in ("status", "buyer", "number"))
    return f"SELECT {status} FROM {table} WHERE {buyer} = %s AND {number} = %s LIMIT 1"  # noqa: S608 (names from the model, values bound)


def _buyer_order_status(buyer_id: int, number: str) -> str | None:
    """The status of the order ``number`` of ``buyer_id``: a poll every 2 s per open order page,
    so one statement composed once instead of a queryset compiled on every call (about a fifth
    of the poll's CPU)."""
    with connection.cursor() as cursor:
        cursor.execute(_status_sql(), [buyer_id, number])
        row = cursor.fetchone()
    return row[0] if row else None


def order_status_for_guest(number: str) -> str:
    """The status of a guest order (its page's status poll), or 404 like ``order_for_guest``."""
    status = Order.objects.filter(buyer__isnull=True, number=number).values_list("status", flat=True).first()
    if status is None:
        raise NotFound(_("No such order."), code="order_not_found")
    return status


def order_for_guest(number: str) -> Order | None:
    """A guest order for its page, or None (a member's order is never one; the view answers
    404). The caller has checked that this browser may see it (placed here, or opened from its
    signed link)."""
    return _page(_guest_order.first(number=number))


def order_page_extras(order: Order, *, history: list | None = None) -> Order:
    """Set what the order page shows beyond the row (see ``order_for_buyer``) on an order
    fetched with its ``all_codes``, given its ``history`` rows (read here when not given);
    returns it."""
    all_codes = getattr(order, "all_codes", None)
    if all_codes is not None:
        setattr(order, "live_codes", [oc for oc in all_codes if oc.released_at is None])  # noqa: B010
    if history is None:
        history = list(order.history.all())
    pairs = [pair for h in history if (pair := reissue_parse(h.note)) is not None]
    # Every code keeps its place: after a refund the codes left are numbered as the refund form
    # and the refund request number them (#2 stays #2).
    places = code_places(order, pairs)
    replaced = {new: old for old, new in pairs}
    live = getattr(order, "live_codes", [])
    # Page-only attributes of the fetched rows (no fields): set by name.
    for i, oc in enumerate(live, start=1):
        setattr(oc, "number", places.get(oc.pk, i))  # noqa: B010
        setattr(oc, "replaces", places.get(replaced[oc.pk]) if oc.pk in replaced else None)  # noqa: B010
    live.sort(key=lambda oc: oc.number)
    reissues = []
    timeline = []
    for h in history:
        pair = reissue_parse(h.note)
        if pair is None:
            timeline.append(TimelineEntry(at=h.at, label=h.get_to_status_display()))
            continue
        done = Reissued(at=h.at, number=places.get(pair[0], 0))
        reissues.append(done)
        timeline.append(
            TimelineEntry(at=h.at, label=_("Code #%(n)s replaced (reissue)") % {"n": done.number}, reissue=True)
        )
    setattr(order, "reissues_done", reissues)  # noqa: B010
    setattr(order, "timeline", timeline)  # noqa: B010
    setattr(order, "topup", topup_view(order))  # noqa: B010
    setattr(order, "email_refused", email_refusal_shown(order))  # noqa: B010
    return order


@dataclass(frozen=True)
class TopupView:
    """A direct top-up on its order page: its state for the buyer and the values they gave."""

    state: str  # TOPUP_STATES' key
    label: str
    rows: list[tuple[str, str, str]]  # (name, label, value shown: a phone masked)
    note: str = ""  # staff's note when it failed

    @property
    def is_done(self) -> bool:
        return self.state == "done"


def topup_state(order: Order) -> tuple[str, str]:
    """The buyer's words for where a top-up order is: awaiting payment, waiting for the top-up
    (queued for staff or the supplier), topping up (the supplier is working), topped up, or
    failed (refunded, or being refunded)."""
    status = Order.Status
    if order.status in (status.PENDING, status.EXPIRED, status.CANCELLED):
        return "unpaid", order.get_status_display()
    if order.status == status.DELIVERED:
        return "done", _("Topped up")
    if order.status == status.REFUNDED and order.delivered_at is not None:
        return "done", _("Topped up (refunded)")
    if order.status in (status.REFUND_PENDING, status.REFUNDED):
        if order.status == status.REFUNDED:
            return "failed", _("Failed, refunded")
        return "failed", _("Failed, being refunded")
    # Paid: staff's queue has not taken it, or the supplier is working on it.
    upstream = getattr(order, "upstream", None) if order.fulfilment == Order.Fulfilment.UPSTREAM else None
    if upstream is not None and upstream.state in ("placing", "pending"):
        return "working", _("Topping up")
    return "waiting", _("Waiting for the top-up")


def topup_view(order: Order) -> TopupView | None:
    """The top-up part of ``order``'s page, None for an order of codes."""
    if order.product is None or not order.product.is_direct_topup:
        return None
    manual = None
    if order.fulfilment == Order.Fulfilment.MANUAL:
        manual = ManualTopup.objects.filter(order_id=order.pk).first()
    state, label = topup_state(order)
    note = manual.note if manual is not None and manual.state == ManualTopup.State.FAILED else ""
    return TopupView(
        state=state, label=label, rows=catalog_topup.values_display(order.product, order.topup_values), note=note
    )


@dataclass(frozen=True)
class Reissued:
    """A code of the order replaced after a dispute: when, and the place (number) it had."""

    at: datetime
    number: int


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    label: str
    reissue: bool = False


def code_places(order: Order, reissues: list[tuple[int, int]]) -> dict[int, int]:
    """Each of the order's codes' number on its page (1, 2 ...) by id: a replacement takes the
    number of the code it replaced, a refunded code keeps its own."""
    replaced = {new: old for old, new in reissues}
    places: dict[int, int] = {}
    fetched = getattr(order, "all_codes", None)  # the order page's rows: already fetched, in order
    ids = (
        [oc.pk for oc in fetched]
        if fetched is not None
        else OrderCode.objects.filter(order_id=order.pk).order_by("id").values_list("pk", flat=True)
    )
    for pk in ids:
        old = replaced.get(pk)
        places[pk] = places[old] if old in places else len(set(places.values())) + 1
    return places


# --- What a viewer pays, and whether they can buy -----------------------------------------------
#
# One answer for every page that sells (the catalogue, a product, a storefront, the checkout),
# the API's product list, and ``services.order_place``, which enforces the same rules with the
# same functions (``product_refusal``, ``quantity_refusal``, ``key_refusal``) and the same
# price resolution (``agents.selectors``), so a page never offers what the service refuses.
# It lives in ``orders``: the rules are those of placing an order, and orders sees both the
# prices (agents) and the stock (catalog).


class ReasonCode(models.TextChoices):
    """Why a viewer cannot buy a product (stable codes, for templates, tests and the API)."""

    INACTIVE = "inactive"  # the product or its category is off sale
    NOT_FOR_SALE = "not_for_sale"  # the storefront is closed or does not list the product
    OUT_OF_STOCK = "out_of_stock"  # no code left
    NOT_ENOUGH_STOCK = "not_enough_stock"  # fewer codes left than the product's minimum per order
    # An account is required (no longer for buying: anyone may buy as a guest; kept for pages
    # that need one).
    LOGIN_REQUIRED = "login_required"
    # Checkout input (``quantity_refusal``, ``key_refusal``, the API's product id):
    PRODUCT_MISSING = "product_missing"
    QUANTITY_INVALID = "quantity_invalid"
    BELOW_MINIMUM = "below_minimum"
    ABOVE_MAXIMUM = "above_maximum"
    FORM_EXPIRED = "form_expired"
    # The rights ledger (rights.services): a rights holder's notice holds the product (电子商务法
    # 第四十二条), or its supply authorisation's validity has ended.
    SALE_HELD = "sale_held"
    AUTHORISATION_LAPSED = "authorisation_lapsed"


class PriceKind(models.TextChoices):
    PUBLIC = "public"  # the platform's price, for a buyer or a visitor (a guest buys at it)
    AGENT = "agent"  # an agent buying for itself on the platform: its own cost
    RETAIL = "retail"  # a storefront's retail price, for whoever buys there


@dataclass(frozen=True)
class Reason:
    code: str  # a ReasonCode
    message: str  # translated, for people

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class PurchaseInfo:
    """What ``viewer`` pays for ``product`` (here, on the platform or in a storefront) and
    whether they can buy it now; ``reason`` says why not (None when they can)."""

    product: Product
    price: Decimal | None  # per code, for this viewer; None where it is not for sale
    price_kind: str  # a PriceKind
    list_price: Decimal  # the platform's public price
    face_value: Decimal
    stock: int  # codes available now
    min_quantity: int
    max_quantity: int
    reason: Reason | None
    # The stock shown includes the supplier's availability (issue 16: upstream or stock-first
    # goods), read at most a minute ago: pages say so.
    upstream: bool = False

    @property
    def can_buy(self) -> bool:
        return self.reason is None

    @property
    def is_agent_price(self) -> bool:
        return self.price_kind == PriceKind.AGENT

    @property
    def agent_price(self) -> Decimal | None:
        """An agent's own cost, shown beside the public price; None for anyone else."""
        return self.price if self.is_agent_price else None

    @property
    def needs_login(self) -> bool:
        """Only the login stands between this visitor and the purchase (pages offer it)."""
        return self.reason is not None and self.reason.code == ReasonCode.LOGIN_REQUIRED

    @property
    def listed(self) -> bool:
        return self.reason is None or self.reason.code not in UNLISTED


# Reasons that take the product off the lists, not merely off the buy button.
UNLISTED = frozenset({ReasonCode.NOT_FOR_SALE, ReasonCode.SALE_HELD, ReasonCode.AUTHORISATION_LAPSED})


def reason(code: str, **params) -> Reason:
    """The reason ``code`` with its message in the active language."""
    messages = {
        ReasonCode.INACTIVE: _("This product is not on sale."),
        ReasonCode.NOT_FOR_SALE: _("This shop does not sell this product."),
        ReasonCode.OUT_OF_STOCK: _("Sold out: no codes left for this product."),
        ReasonCode.LOGIN_REQUIRED: _("Log in to buy"),
        ReasonCode.QUANTITY_INVALID: _("Quantity must be a whole number."),
        ReasonCode.FORM_EXPIRED: _("This form has expired: reload the page and try again."),
        ReasonCode.PRODUCT_MISSING: _("This product does not exist."),
        ReasonCode.SALE_HELD: _("This product is off sale while a rights holder's notice about it is handled."),
        ReasonCode.AUTHORISATION_LAPSED: _(
            "This product is off sale: its supply authorisation has ended and awaits renewal."
        ),
    }
    if code == ReasonCode.NOT_ENOUGH_STOCK:
        message = _("Only %(available)d left in stock, fewer than the %(n)d per order minimum.") % params
    elif code == ReasonCode.BELOW_MINIMUM:
        message = (
            _("Quantity must be at least 1.")
            if params["n"] <= 1
            else _("Buy at least %(n)d of this product per order.") % params
        )
    elif code == ReasonCode.ABOVE_MAXIMUM:
        message = _("Buy at most %(n)d of this product per order.") % params
    else:
        message = messages[ReasonCode(code)]
    return Reason(code=code, message=str(message))


def product_refusal(product: Product) -> Reason | None:
    """Whether the product is on sale at all (the product and its category are active)."""
    if not product.is_active or not product.category.is_active:
        return reason(ReasonCode.INACTIVE)
    # A hold (a rights holder's notice) or a lapsed authorisation refuses whatever is_active says.
    # An empty sale_authorised_until is a product from before the review ledger: not enforced here
    # (rights.services explains; activating a product needs an approved review).
    if product.sale_hold:
        return reason(ReasonCode.SALE_HELD)
    if product.sale_authorised_until is not None and product.sale_authorised_until < timezone.localdate():
        return reason(ReasonCode.AUTHORISATION_LAPSED)
    return None


def quantity_parse(raw) -> int | None:
    """A quantity as typed or sent ("2", " 2 ", 2), or None when it is not a whole number."""
    try:
        return int(str(raw).strip())
    except (TypeError, ValueError):
        return None


def quantity_refusal(quantity: int | None, *, product: Product | None = None) -> Reason | None:
    """A whole number, at least 1 and, for ``product``, within its limits per order."""
    if quantity is None:
        return reason(ReasonCode.QUANTITY_INVALID)
    if quantity < 1:
        return reason(ReasonCode.BELOW_MINIMUM, n=1)
    if product is not None:
        if quantity < product.min_per_order:
            return reason(ReasonCode.BELOW_MINIMUM, n=product.min_per_order)
        if quantity > product.max_per_order:
            return reason(ReasonCode.ABOVE_MAXIMUM, n=product.max_per_order)
    return None


def quantity_clamp(raw, *, product: Product, stock: int | None = None) -> int:
    """The quantity to show in a form: ``raw`` moved into the product's limits (and, given
    the ``stock``, no more than it when it covers the minimum), its minimum when ``raw`` is
    not a whole number."""
    quantity = quantity_parse(raw)
    if quantity is None:
        return product.min_per_order
    return max(product.min_per_order, min(quantity_max(product=product, stock=stock), quantity))


def quantity_max(*, product: Product, stock: int | None = None) -> int:
    """The most one order can take now: the product's maximum, or the stock when it is less
    (but never below the minimum: with less stock than that, nothing can be bought)."""
    if stock is None or stock < product.min_per_order:
        return product.max_per_order
    return min(product.max_per_order, stock)


IDEMPOTENCY_KEY_MAX = 64  # Order.idempotency_key


def key_refusal(key: str) -> Reason | None:
    """A checkout form's token (stripped): 1 to 64 characters."""
    if not key or len(key) > IDEMPOTENCY_KEY_MAX:
        return reason(ReasonCode.FORM_EXPIRED)
    return None


def purchase_infos(
    products, *, viewer=None, storefront=None, stock: dict[int, int] | None = None
) -> list[PurchaseInfo]:
    """``purchase_info`` for each product (in order), in a constant number of queries: one
    price resolution (``agents.selectors``) and one stock count for the whole list.

    ``viewer`` is a user, anonymous or not (None counts as anonymous); ``storefront`` the shop
    the viewer is in, if any. Products come from ``catalog.selectors.products_on_sale()`` (with
    their category) or at least with their category loaded. ``stock``: the codes available per
    product, when the caller has just read them (``catalog.selectors.product_on_sale(counted=True)``);
    counted here otherwise.
    """
    products = list(products)
    if not products:
        return []
    prices: dict[int, Decimal] = {}
    if storefront is not None:
        kind = PriceKind.RETAIL
        if storefront.is_open:
            retail = agent_selectors.storefront_prices(storefront=storefront, products=products)
            prices = {pk: pair[1] for pk, pair in retail.items()}
    else:
        agent = agent_selectors.buying_agent(viewer)
        if agent is not None:
            kind = PriceKind.AGENT
            prices = agent_selectors.agent_costs(agent=agent, products=products)
        else:
            kind = PriceKind.PUBLIC
            prices = {p.pk: quantize(p.price) for p in products}
    if stock is None:
        stock = catalog_selectors.stock_counts(p.pk for p in products)
    upstream = _upstream_stock(products)  # no query for stock-only lists
    out = []
    for p in products:
        available = stock.get(p.pk, 0) + upstream.get(p.pk, 0)
        if p.supply_mode == Product.SupplyMode.MANUAL:
            # A manual top-up (代充 by staff) has no codes: as many as one order may take.
            available = p.max_per_order
        why = product_refusal(p)
        if why is None and p.pk not in prices:
            why = reason(ReasonCode.NOT_FOR_SALE)
        if why is None and not available:
            why = reason(ReasonCode.OUT_OF_STOCK)
        if why is None and available < p.min_per_order:
            why = reason(ReasonCode.NOT_ENOUGH_STOCK, available=available, n=p.min_per_order)
        out.append(
            PurchaseInfo(
                product=p,
                price=prices.get(p.pk),
                price_kind=kind,
                list_price=quantize(p.price),
                face_value=p.face_value,
                stock=available,
                min_quantity=p.min_per_order,
                max_quantity=p.max_per_order,
                reason=why,
                upstream=p.supply_mode in UPSTREAM_MODES,
            )
        )
    return out


UPSTREAM_MODES = frozenset({Product.SupplyMode.UPSTREAM, Product.SupplyMode.STOCK_FIRST})


def _upstream_stock(products) -> dict[int, int]:
    """The supplier's availability of the upstream and stock-first products among ``products``
    (``supply.services.upstream_availability``: at most a minute old; unknown counts as none)."""
    ids = [p.pk for p in products if p.supply_mode in UPSTREAM_MODES]
    if not ids:
        return {}
    return {pk: a.available or 0 for pk, a in supply_services.upstream_availability(ids).items() if a.known}


def purchase_info(*, product: Product, viewer=None, storefront=None) -> PurchaseInfo:
    """What ``viewer`` pays for ``product`` (in ``storefront``, if given), the codes in stock,
    the limits per order, and whether they can buy it now, else why not. A product read with
    ``catalog.selectors.product_on_sale(counted=True)`` brings its stock: not counted again."""
    counted = getattr(product, "codes_available", None)
    stock = None if counted is None else {product.pk: counted}
    return purchase_infos([product], viewer=viewer, storefront=storefront, stock=stock)[0]


# The catalogue's home for a member (issue 17): the same list for every viewer who pays the same
# prices, so it is kept per process for PAGE_CACHE_SECONDS (the age the anonymous pages promise):
# the stock and prices shown are never older than that. Public prices: one list per language
# (the reasons are translated); an agent's own costs: one per agent.
_kept_lists = Kept(limit=512)


def home_infos(viewer) -> list[PurchaseInfo]:
    """``purchase_infos`` of every product on sale for ``viewer`` (the catalogue's home), at most
    ``settings.PAGE_CACHE_SECONDS`` old; treat it as read-only."""

    def load() -> list[PurchaseInfo]:
        return purchase_infos(catalog_selectors.product_search(), viewer=viewer)

    seconds = settings.PAGE_CACHE_SECONDS
    if seconds <= 0:
        return load()
    agent = viewer is not None and viewer.is_authenticated and getattr(viewer, "is_agent", False)
    key = ("home", get_language(), viewer.pk if agent else None)
    return _kept_lists.get_or_load(key, load, seconds)


def game_topup_month_spent(*, id_digest: str, start: datetime, end: datetime, exclude_order_id=None) -> Decimal:
    """What the person with this identity number (by its keyed digest, whatever account, guest
    email or agent's API carried the verification) spent on game top-ups in [start, end), for the
    minors' monthly limit (compliance.minors).

    Counted: orders awaiting payment (not past their deadline), paid, delivered or in a refund,
    less the codes a decided refund gives back (``refunded_quantity``). Not counted: expired and
    cancelled orders (never paid) and refunded ones. The decision on refunds: money returned is
    not spending, and a refunded code is one nobody revealed (the no-reason refund's rule), so
    nothing was topped up with it; the minor may spend that amount again this month."""
    from django.db.models import DecimalField, ExpressionWrapper, F, Sum, Value
    from django.db.models.functions import Coalesce, Greatest
    from django.utils import timezone

    S = Order.Status
    rows = Order.objects.filter(
        Q(status=S.PENDING, expires_at__gt=timezone.now()) | Q(status__in=[S.PAID, S.DELIVERED, S.REFUND_PENDING]),
        product__is_game_topup=True,
        realname_verification__id_digest=id_digest,
        created_at__gte=start,
        created_at__lt=end,
    )
    if exclude_order_id is not None:
        rows = rows.exclude(pk=exclude_order_id)
    money: DecimalField = DecimalField(max_digits=12, decimal_places=2)
    kept = Greatest(
        ExpressionWrapper(F("total") - F("unit_price") * F("refunded_quantity"), output_field=money),
        Value(Decimal("0"), output_field=money),
    )
    total = rows.aggregate(spent=Coalesce(Sum(kept), Value(Decimal("0"), output_field=money)))["spent"]
    return quantize(total)


def has_paid_order(*, buyer=None, email: str = "") -> bool:
    """Has this member (or, for a guest, this normalised email, as a guest or a member) ever
    paid for an order? Coupons for new buyers only ask."""
    if buyer is not None:
        return Order.objects.filter(buyer=buyer, paid_at__isnull=False).exists()
    email = email_normalise(email)
    if not email:
        return False
    return Order.objects.filter(
        Q(buyer__isnull=True, guest_email=email) | Q(buyer__email__iexact=email), paid_at__isnull=False
    ).exists()
