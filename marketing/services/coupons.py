"""Coupons: creating them, generating codes, checking one for an order, taking and returning uses.

The checks (``coupon_offer``) run first without locks, so the checkout can show the price
before payment; ``order_place`` then takes the use in its own transaction (``coupon_redeem``):
the coupon row is locked (one buyer's limit counted at a time) and the use is taken by a
conditional UPDATE on the coupon and on the code, so a coupon with 10 uses makes exactly 10
discounted orders however many buyers try at once.
"""

import csv
import io
import math
from dataclasses import dataclass
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from django.utils.translation import gettext as _

from agents import selectors as agent_selectors
from catalog.models import Product
from marketplace.errors import ServiceError
from marketplace.money import quantize
from marketplace.randomness import random_chars

from ..models import Coupon, CouponCode, CouponUse

ZERO = Decimal("0.00")
# Generated codes: no look-alikes (0/O, 1/I/L, 2/Z, 5/S, 8/B) so a code read aloud or typed
# from a poster is typed right; 12 characters of 27 ≈ 57 bits: not guessable.
CODE_ALPHABET = "ACDEFGHJKMNPQRTUVWXY3467 9".replace(" ", "")
CODE_LENGTH = 12
MAX_GENERATE = 10000


class CouponError(ServiceError):
    """A coupon refused; the message says why, in the buyer's words."""

    code = "coupon_refused"
    status = 422


def code_normalise(text: str) -> str:
    """What a buyer typed, as stored: trimmed, upper case, without spaces or dashes."""
    return "".join((text or "").split()).replace("-", "").upper()


def coupon_discount(*, coupon: Coupon, subtotal: Decimal) -> Decimal:
    """The coupon's discount on ``subtotal``, to the fen, never the whole of it (a payment of
    at least ¥0.01 remains: a gateway cannot take zero)."""
    if coupon.kind == Coupon.Kind.FIXED:
        off = quantize(coupon.amount)
    else:
        off = quantize(subtotal * coupon.percent / 100)
        if coupon.cap is not None:
            off = min(off, quantize(coupon.cap))
    return max(ZERO, min(off, subtotal - Decimal("0.01")))


@dataclass(frozen=True)
class Offer:
    """A coupon that applies to an order: its code, the discount, and who funds it."""

    coupon: Coupon
    code: CouponCode
    discount: Decimal

    @property
    def funder(self):
        """The agent whose earnings pay the discount; None: the platform."""
        return self.coupon.agent


def _in_scope(coupon: Coupon, *, product: Product, storefront) -> bool:
    if coupon.agent_id is not None and (storefront is None or storefront.agent_id != coupon.agent_id):
        return False  # an agent's coupon is for its own storefront only
    if coupon.scope == Coupon.Scope.STOREFRONT:
        return storefront is not None and storefront.pk == coupon.storefront_id
    if coupon.scope == Coupon.Scope.PRODUCTS:
        return coupon.products.filter(pk=product.pk).exists()
    if coupon.scope == Coupon.Scope.CATEGORIES:
        cats = {product.category_id, getattr(product.category, "parent_id", None)} - {None}
        return coupon.categories.filter(pk__in=cats).exists()
    return True


def _user_uses(coupon: Coupon, *, buyer, email: str) -> int:
    live = CouponUse.objects.filter(coupon=coupon, released_at__isnull=True)
    if buyer is not None:
        return live.filter(buyer=buyer).count()
    return live.filter(buyer__isnull=True, email=email).count()


def coupon_offer(
    *,
    code: str,
    product: Product,
    quantity: int,
    unit_price: Decimal,
    storefront=None,
    buyer=None,
    email: str = "",
    new_buyer: bool = True,
    agent_margin: Decimal | None = None,
) -> Offer:
    """Check ``code`` for this order (no locks, nothing written) and say what it takes off.

    ``new_buyer``: the buyer (member or guest email) has no earlier paid order (the caller,
    ``orders``, knows). ``agent_margin``: what the selling agent earns on the order at its price
    (retail less its cost, all codes); an agent's coupon may not take more than that. Raises
    ``CouponError`` with the reason: unknown, not started, expired, used up, not for this
    product or shop, minimum spend, per-buyer limit, new buyers only, below the agent's cost.
    """
    normal = code_normalise(code)
    # Only what a code can be (4-32 ASCII letters and digits) reaches the database: anything
    # else, however hostile (NUL bytes, 10 kB), is simply not a code.
    well_formed = 0 < len(normal) <= 32 and normal.isascii() and normal.isalnum()
    row = CouponCode.objects.select_related("coupon").filter(code=normal).first() if well_formed else None
    if row is None or not row.coupon.is_active:
        raise CouponError(_("This coupon code does not exist."), code="coupon_unknown")
    coupon = row.coupon
    now = timezone.now()
    if now < coupon.starts_at:
        raise CouponError(
            _("This coupon is valid from %(start)s.")
            % {"start": f"{timezone.localtime(coupon.starts_at):%Y-%m-%d %H:%M}"},
            code="coupon_not_started",
        )
    if now >= coupon.ends_at:
        raise CouponError(_("This coupon has expired."), code="coupon_expired")
    used_up = (coupon.total_limit is not None and coupon.used >= coupon.total_limit) or (
        row.max_uses is not None and row.used >= row.max_uses
    )
    if used_up:
        raise CouponError(_("This coupon has been used up."), code="coupon_used_up")
    if not _in_scope(coupon, product=product, storefront=storefront):
        raise CouponError(_("This coupon is not valid for this product or shop."), code="coupon_out_of_scope")
    subtotal = quantize(unit_price * quantity)
    if subtotal < coupon.min_spend:
        raise CouponError(
            _("This coupon needs a minimum spend of ¥%(min)s.") % {"min": coupon.min_spend},
            code="coupon_min_spend",
        )
    if coupon.per_user_limit is not None and _user_uses(coupon, buyer=buyer, email=email) >= coupon.per_user_limit:
        raise CouponError(_("You have already used this coupon as often as allowed."), code="coupon_per_user")
    if coupon.new_buyers_only and not new_buyer:
        raise CouponError(_("This coupon is for new buyers only."), code="coupon_new_buyers")
    discount = coupon_discount(coupon=coupon, subtotal=subtotal)
    if discount <= 0:
        raise CouponError(_("This coupon takes nothing off this order."), code="coupon_nothing_off")
    if coupon.agent_id is not None and (agent_margin is None or discount > agent_margin):
        # An agent's coupon is paid out of its own margin and never sells below its cost.
        raise CouponError(
            _("This coupon cannot be used on this order: it would sell below the shop's cost."),
            code="coupon_below_cost",
        )
    return Offer(coupon=coupon, code=row, discount=discount)


def coupon_redeem(*, offer: Offer, order, buyer, email: str) -> CouponUse:
    """Take one use of ``offer``'s coupon for ``order`` (just created, in ``order_place``'s
    transaction). The coupon row is locked, so the buyer's own count is exact; the uses are
    taken by conditional UPDATEs. Raises ``CouponError`` (the order is rolled back with it)."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("coupon_redeem must run in order_place's transaction")
    coupon = Coupon.objects.select_for_update().get(pk=offer.coupon.pk)
    if coupon.per_user_limit is not None and _user_uses(coupon, buyer=buyer, email=email) >= coupon.per_user_limit:
        raise CouponError(_("You have already used this coupon as often as allowed."), code="coupon_per_user")
    took = (
        Coupon.objects.filter(pk=coupon.pk)
        .filter(Q(total_limit__isnull=True) | Q(used__lt=F("total_limit")))
        .update(used=F("used") + 1)
    )
    took = took and (
        CouponCode.objects.filter(pk=offer.code.pk)
        .filter(Q(max_uses__isnull=True) | Q(used__lt=F("max_uses")))
        .update(used=F("used") + 1)
    )
    if not took:
        raise CouponError(_("This coupon has been used up."), code="coupon_used_up")
    return CouponUse.objects.create(
        coupon=coupon,
        code=offer.code,
        order=order,
        buyer=buyer,
        email="" if buyer is not None else email,
        discount=offer.discount,
    )


def coupon_use_release(*, order_id: int, reason: str, only_if_valid: bool = False) -> bool:
    """Give back the use ``order_id`` took (its order lapsed unpaid, was cancelled, or was
    refunded in full), in the caller's transaction. ``only_if_valid``: only while the coupon is
    still active and inside its window (a refund does not revive an expired promotion).
    Returns whether a use came back; a repeat is a no-op."""
    use = CouponUse.objects.select_for_update().filter(order_id=order_id, released_at__isnull=True).first()
    if use is None:
        return False
    coupon = Coupon.objects.select_for_update().get(pk=use.coupon_id)
    now = timezone.now()
    if only_if_valid and not (coupon.is_active and coupon.starts_at <= now < coupon.ends_at):
        return False
    CouponUse.objects.filter(pk=use.pk).update(released_at=now, release_reason=reason[:40])
    Coupon.objects.filter(pk=coupon.pk, used__gt=0).update(used=F("used") - 1)
    CouponCode.objects.filter(pk=use.code_id, used__gt=0).update(used=F("used") - 1)
    return True


def coupon_use_retake(*, order_id: int) -> bool:
    """An order paid after its use came back (paid late, after expiry): take the use again when
    the limits leave one. Returns whether it was taken."""
    use = CouponUse.objects.select_for_update().filter(order_id=order_id, released_at__isnull=False).first()
    if use is None:
        return False
    Coupon.objects.select_for_update().filter(pk=use.coupon_id).first()
    took = (
        Coupon.objects.filter(pk=use.coupon_id)
        .filter(Q(total_limit__isnull=True) | Q(used__lt=F("total_limit")))
        .update(used=F("used") + 1)
    )
    took = took and (
        CouponCode.objects.filter(pk=use.code_id)
        .filter(Q(max_uses__isnull=True) | Q(used__lt=F("max_uses")))
        .update(used=F("used") + 1)
    )
    if took:
        CouponUse.objects.filter(pk=use.pk).update(released_at=None, release_reason="")
    return bool(took)


# --- issuing ---------------------------------------------------------------------------------


def _agent_cost_refusal(coupon: Coupon) -> None:
    """An agent's coupon whose largest discount could take a scoped product below the agent's
    cost is refused: checked for one order at the smallest quantity the minimum spend allows."""
    storefront = getattr(coupon.agent, "storefront", None)
    if storefront is None:
        raise CouponError(_("Open your storefront first: an agent's coupons are for its storefront."))
    products = Product.objects.filter(is_active=True).select_related("category")
    if coupon.scope == Coupon.Scope.PRODUCTS:
        products = products.filter(pk__in=coupon.products.values("pk"))
    elif coupon.scope == Coupon.Scope.CATEGORIES:
        cats = list(coupon.categories.values_list("pk", flat=True))
        products = products.filter(Q(category_id__in=cats) | Q(category__parent_id__in=cats))
    prices = agent_selectors.storefront_prices(storefront=storefront, products=products)
    for product in products:
        if product.pk not in prices:
            continue
        cost, retail = prices[product.pk]
        quantity = max(1, math.ceil(coupon.min_spend / retail)) if retail > 0 else 1
        subtotal = quantize(retail * quantity)
        margin = quantize((retail - cost) * quantity)
        if coupon_discount(coupon=coupon, subtotal=subtotal) > margin:
            raise CouponError(
                _(
                    "This coupon could sell %(product)s below your cost (¥%(cost)s a code, retail ¥%(retail)s): "
                    "lower the discount or its cap, raise the minimum spend, or leave the product out."
                )
                % {"product": product.name, "cost": cost, "retail": retail},
                code="coupon_below_cost",
            )


def coupon_create(
    *,
    name: str,
    kind: str,
    ends_at,
    starts_at=None,
    amount: Decimal = ZERO,
    percent: Decimal = ZERO,
    cap: Decimal | None = None,
    min_spend: Decimal = ZERO,
    scope: str = Coupon.Scope.ALL,
    products=(),
    categories=(),
    storefront=None,
    total_limit: int | None = None,
    per_user_limit: int | None = 1,
    new_buyers_only: bool = False,
    agent=None,
    public_code: str = "",
    generate: int = 0,
    created_by=None,
) -> Coupon:
    """A coupon of the platform (``agent=None``) or of ``agent`` (valid at its storefront
    only, refused when it could sell a scoped product below the agent's cost), with one public
    code and/or ``generate`` single-use codes."""
    name = (name or "").strip()
    if not name:
        raise CouponError(_("Give the coupon a name."))
    starts_at = starts_at or timezone.now()
    if ends_at <= starts_at:
        raise CouponError(_("A coupon must end after it starts."))
    amount, percent, min_spend = quantize(amount or 0), Decimal(percent or 0), quantize(min_spend or 0)
    if kind == Coupon.Kind.FIXED and amount <= 0:
        raise CouponError(_("Give the amount the coupon takes off."))
    if kind == Coupon.Kind.PERCENT and not (0 < percent < 100):
        raise CouponError(_("A percentage must be between 0 and 100."))
    if kind not in Coupon.Kind.values or scope not in Coupon.Scope.values:
        raise CouponError(_("Choose a kind of discount and where it is valid."))
    if scope == Coupon.Scope.STOREFRONT and storefront is None:
        raise CouponError(_("Choose the storefront."))
    if agent is not None:
        storefront = getattr(agent, "storefront", None)
        if scope == Coupon.Scope.STOREFRONT:
            scope = Coupon.Scope.ALL  # an agent's coupon is for its storefront anyway
    public_code = code_normalise(public_code)
    if public_code and not (4 <= len(public_code) <= 32 and public_code.isalnum() and public_code.isascii()):
        raise CouponError(_("A code has 4 to 32 letters and digits."))
    if not public_code and not generate:
        raise CouponError(_("Give a public code, or how many codes to generate."))
    if not 0 <= generate <= MAX_GENERATE:
        raise CouponError(_("Generate at most %(n)d codes at a time.") % {"n": MAX_GENERATE})
    with transaction.atomic():
        coupon = Coupon.objects.create(
            name=name[:80],
            agent=agent,
            kind=kind,
            amount=amount if kind == Coupon.Kind.FIXED else ZERO,
            percent=percent if kind == Coupon.Kind.PERCENT else ZERO,
            cap=quantize(cap) if cap is not None and kind == Coupon.Kind.PERCENT else None,
            min_spend=min_spend,
            scope=scope,
            storefront=storefront if scope == Coupon.Scope.STOREFRONT else None,
            starts_at=starts_at,
            ends_at=ends_at,
            total_limit=total_limit,
            per_user_limit=per_user_limit,
            new_buyers_only=new_buyers_only,
            created_by=created_by,
        )
        if products:
            coupon.products.set(products)
        if categories:
            coupon.categories.set(categories)
        if agent is not None:
            _agent_cost_refusal(coupon)
        if public_code:
            try:
                with transaction.atomic():
                    CouponCode.objects.create(coupon=coupon, code=public_code, max_uses=None)
            except IntegrityError:
                raise CouponError(_("This code is taken: choose another."), code="coupon_code_taken") from None
        if generate:
            coupon_codes_generate(coupon=coupon, count=generate)
    return coupon


def _new_code() -> str:
    return random_chars(CODE_LENGTH, CODE_ALPHABET)


def coupon_codes_generate(*, coupon: Coupon, count: int) -> int:
    """``count`` new single-use codes for ``coupon`` (``secrets``, no look-alike characters);
    a collision with an existing code is drawn again. Returns how many were made."""
    if not 1 <= count <= MAX_GENERATE:
        raise CouponError(_("Generate at most %(n)d codes at a time.") % {"n": MAX_GENERATE})
    codes = CouponCode.objects.filter(coupon=coupon, max_uses=1)
    start = codes.count()
    while (made := codes.count() - start) < count:
        batch = {_new_code() for _ in range(count - made)}
        CouponCode.objects.bulk_create(
            [CouponCode(coupon=coupon, code=c, max_uses=1) for c in batch], ignore_conflicts=True
        )
    return made


def coupon_codes_csv(*, coupon: Coupon) -> str:
    """The coupon's codes as CSV (code, uses allowed, used), for a mailing or printing."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["code", "max_uses", "used"])
    for row in coupon.codes.order_by("pk").values_list("code", "max_uses", "used"):
        writer.writerow([row[0], "" if row[1] is None else row[1], row[2]])
    return out.getvalue()


def _cell(text: str) -> str:
    """A spreadsheet must not read a name as a formula (CSV injection)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def coupons_codes_csv(*, coupons) -> str:
    """Several coupons' codes as one CSV (coupon id and name, code, uses allowed, used)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["coupon_id", "coupon", "code", "max_uses", "used"])
    for coupon in coupons:
        for row in coupon.codes.order_by("pk").values_list("code", "max_uses", "used"):
            writer.writerow([coupon.pk, _cell(coupon.name), row[0], "" if row[1] is None else row[1], row[2]])
    return out.getvalue()


def coupon_active_set(*, coupon: Coupon, active: bool) -> None:
    """Pause (or resume) a coupon: a paused one refuses new orders; uses taken stand."""
    Coupon.objects.filter(pk=coupon.pk).update(is_active=active)
    coupon.is_active = active
