"""The order's side of risk control: one call from ``order_place`` (``order_risk_screen``).

- the credit rating's limits (``compliance.rating.purchase_check``): a level may forbid buying,
  cap the codes per order and per day, forbid high-risk goods;
- risk's checkout screen: the blacklist (IP and networks, email and domain, device) and the
  order-burst rules per buyer, IP and device (counted in Redis: one round-trip);
- the stock-hogging cap, counted here from the orders themselves (one query): the unpaid
  orders and the codes they reserve, held by this buyer (member or guest email), this device
  and this IP, for this product and over all products. One client can never reserve a
  product's whole stock: the rest stays buyable by others.

The database reads of the three are one statement (``_screen_read``: the credit probe, the
blacklist lookup and the holdings, constant SQL text); a buyer with credit events on record
costs one more (the full rating).

The signed API is screened by the blacklist only: its orders are paid from the agent's balance
in the same request (they never hold stock unpaid) and its keys have their own rate limit.
The cap is read before the order's transaction: two orders of one client racing each other
could both pass it once (a burst the order-burst rule counts), never a whole stock.
"""

from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Q, Sum
from django.utils import timezone
from django.utils.translation import gettext as _

from agents.models import Withdrawal
from agents.services.withdrawals import payee_account
from compliance import rating
from marketplace import crypto
from risk import services as risk
from risk.models import BlockEntry, Rule, block_value_normalise

from ..models import Order


class StockHogging(risk.RiskRefused):
    code = "unpaid_orders_held"
    status = 409


def _holdings_sql(*, product_id: int, buyer, guest_email: str, ip: str | None, device: str) -> tuple[str, list]:
    """Unpaid orders and reserved codes per client (who / ip / device), for the product and in
    all, as a SELECT of 12 figures (constant text: no ORM compile on the checkout's path). An
    absent subject (no IP, no device) is compared with NULL: it matches nothing."""
    if buyer is not None:
        who, who_params = "buyer_id = %s", [buyer.pk]
    else:
        who, who_params = "(buyer_id IS NULL AND guest_email = %s)", [guest_email]
    subjects = [(who, who_params), ("buyer_ip = %s", [ip or None]), ("buyer_device = %s", [device or None])]
    columns: list[str] = []
    params: list = []
    for cond, cond_params in subjects:
        here = f"{cond} AND product_id = %s"
        columns += [
            f"COUNT(*) FILTER (WHERE {here})",
            f"SUM(quantity) FILTER (WHERE {here})",
            f"COUNT(*) FILTER (WHERE {cond})",
            f"SUM(quantity) FILTER (WHERE {cond})",
        ]
        params += [*cond_params, product_id, *cond_params, product_id, *cond_params, *cond_params]
    any_of = " OR ".join(cond for cond, _p in subjects)
    for _cond, cond_params in subjects:
        params += cond_params
    sql = (
        f"SELECT {', '.join(columns)} FROM {Order._meta.db_table}"  # noqa: S608 (no user input)
        f" WHERE ({any_of}) AND status = %s"
    )
    return sql, [*params, Order.Status.PENDING.value]


HOLDING_KEYS = [
    f"{name}_{measure}"
    for name in ("who", "ip", "device")
    for measure in ("product_orders", "product_codes", "orders", "codes")
]


@dataclass(frozen=True)
class ScreenReads:
    """What the screen reads from the database, in one statement (``_screen_read``)."""

    held: dict[str, int]  # the holdings (``_holdings_sql``) of the subjects given; none for the API
    blacklisted: int | None  # the blacklist entry that bars this checkout
    rated: bool  # the owner has credit events or an override (else: the unrated level)


def _screen_read(
    *, buyer, guest_email: str, email: str, ip: str | None, device: str, product_id: int, api: bool, now
) -> ScreenReads:
    """The credit probe, the blacklist lookup and (but for the API) the holdings: one statement."""
    probe, probe_params = rating.credit_probe_sql(user=buyer, email=guest_email, now=now)
    black = risk.blacklist_sql(scope=BlockEntry.Scope.CHECKOUT, ip=ip, email=email, device=device)
    black_sql, black_params = black if black is not None else ("SELECT NULL", [])
    head = f"({black_sql}), {probe}"
    if api:
        sql, params = f"SELECT {head}", [*black_params, *probe_params]
    else:
        held_sql, held_params = _holdings_sql(
            product_id=product_id, buyer=buyer, guest_email=guest_email, ip=ip, device=device
        )
        sql = f"SELECT {head}, h.* FROM ({held_sql}) h"  # noqa: S608 (no user input)
        params = [*black_params, *probe_params, *held_params]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    held: dict[str, int] = {}
    if not api:
        given = {"who": True, "ip": bool(ip), "device": bool(device)}
        held = {k: int(v or 0) for k, v in zip(HOLDING_KEYS, row[2:], strict=True) if given[k.split("_", 1)[0]]}
    return ScreenReads(held=held, blacklisted=row[0], rated=bool(row[1]))


def codes_ordered_today(*, buyer, guest_email: str = "") -> int:
    """The codes a member (or the guest ``guest_email``) has ordered since midnight (Beijing),
    counting every order not cancelled or expired: what a credit level's daily cap counts."""
    start = timezone.localtime().replace(hour=0, minute=0, second=0, microsecond=0)
    orders = Order.objects.filter(created_at__gte=start).exclude(
        status__in=(Order.Status.CANCELLED, Order.Status.EXPIRED)
    )
    if buyer is not None:
        orders = orders.filter(buyer=buyer)
    else:
        orders = orders.filter(buyer__isnull=True, guest_email=guest_email)
    return int(orders.aggregate(n=Sum("quantity"))["n"] or 0)


def order_risk_screen(
    *,
    buyer,
    guest_email: str,
    ip: str | None,
    device: str,
    product,
    quantity: int,
    channel: str,
    key: str = "",
    captcha: str = "",
) -> None:
    """Raise if this order may not be placed, nothing otherwise: ``CreditRestricted`` (403, the
    credit level's limits: ``compliance.rating``), ``risk.RiskRefused`` (403 blacklisted, 429 too
    many orders at once), ``CaptchaRequired`` (429: a rule asks for a solved ``captcha``, the
    checkout form's ``altcha`` field, risk/captcha.py) or ``StockHogging`` (409)."""
    # One statement for a clean buyer (``_screen_read``): the credit probe, the blacklist and
    # the holdings; a rated owner's rating is read in full, and the day's codes are counted
    # only for a capped level. The checks then run in their order: credit, blacklist, bursts,
    # holdings.
    email = buyer.email.lower() if buyer is not None else guest_email
    api = channel == Order.Channel.API
    now = timezone.now()
    reads = _screen_read(
        buyer=buyer, guest_email=guest_email, email=email, ip=ip, device=device, product_id=product.pk, api=api, now=now
    )
    rating.purchase_check(
        user=buyer,
        email=guest_email,
        product=product,
        quantity=quantity,
        codes_today=lambda: codes_ordered_today(buyer=buyer, guest_email=guest_email),
        rating=None if reads.rated else rating.credit_rating_unrated(now),
    )
    risk.checkout_screen(
        user=buyer, email=email, ip=ip, device=device, count=not api, captcha=captcha, blacklisted=reads.blacklisted
    )
    if api:
        return
    who = Q(buyer=buyer) if buyer is not None else Q(buyer__isnull=True, guest_email=guest_email)
    held = reads.held
    for name, factor in (("who", 1), ("device", 1), ("ip", settings.RISK_HOLD_IP_FACTOR)):
        caps = {
            "product_orders": (settings.RISK_HOLD_PRODUCT_ORDERS * factor, 1),
            "product_codes": (settings.RISK_HOLD_PRODUCT_CODES * factor, quantity),
            "orders": (settings.RISK_HOLD_ORDERS * factor, 1),
            "codes": (settings.RISK_HOLD_CODES * factor, quantity),
        }
        for measure, (cap, adding) in caps.items():
            name_key = f"{name}_{measure}"
            if name_key in held and held[name_key] + adding > cap:
                if key and Order.objects.filter(who, idempotency_key=key).exists():
                    return  # a repeat of a placed order (a double click): order_place returns that order
                evidence = {
                    "subject": name,
                    "measure": measure,
                    "held": held[name_key],
                    "adding": adding,
                    "cap": cap,
                    "product": product.pk,
                }
                risk.hogging_alert(user=buyer, email=email, ip=ip, device=device, evidence=evidence)
                if measure.endswith("orders"):
                    message = _(
                        "There are already %(held)d unpaid orders from you (at most %(cap)d at a time). Pay or "
                        "cancel them first (My orders), or wait until they expire."
                    ) % {"held": held[name_key], "cap": cap}
                else:
                    message = _(
                        "Your unpaid orders already hold %(held)d codes; with these %(adding)d that is more than "
                        "the %(cap)d you can reserve at a time. Pay or cancel them first (My orders), or wait "
                        "until they expire."
                    ) % {"held": held[name_key], "adding": adding, "cap": cap}
                raise StockHogging(message)


# --- clusters: many accounts on one device, IP or payout account (a beat task) ----------------
# Here, not in risk: this is the lowest layer that sees the orders (buyer IP and device) and the
# agents' payout accounts; risk keeps the sign-ups and raises the alerts (``risk.cluster_alert``).


def clusters_scan() -> int:
    """Devices and IPs used by more than the rule's limit of distinct accounts (members or guest
    emails; orders and sign-ups) within its window, and payout accounts named by more than the
    limit of agents: one alert per cluster (``risk.cluster_alert`` makes it idempotent). Returns
    how many alerts were raised. Reads the window's distinct (subject, account) pairs only."""
    now = timezone.now()
    raised = 0

    def since(rule: str):
        return now - timedelta(seconds=settings.RISK_RULES[rule]["window"])

    by_device: dict[str, set[str]] = defaultdict(set)
    orders = Order.objects.filter(created_at__gte=since(Rule.SHARED_DEVICE)).exclude(buyer_device="")
    for device, buyer_id, email in orders.values_list("buyer_device", "buyer_id", "guest_email").distinct():
        by_device[device].add(risk.account_key(user_id=buyer_id, email=email))
    for device, _ip, user_id in risk.signups_since(since(Rule.SHARED_DEVICE)):
        if device:
            by_device[device].add(risk.account_key(user_id=user_id))
    for device, accounts in sorted(by_device.items()):
        raised += bool(risk.cluster_alert(rule=Rule.SHARED_DEVICE, subject=device, accounts=accounts, device=device))

    by_ip: dict[str, set[str]] = defaultdict(set)
    orders = Order.objects.filter(created_at__gte=since(Rule.SHARED_IP), buyer_ip__isnull=False)
    for ip, buyer_id, email in orders.values_list("buyer_ip", "buyer_id", "guest_email").distinct():
        by_ip[str(ip)].add(risk.account_key(user_id=buyer_id, email=email))
    for _device, ip, user_id in risk.signups_since(since(Rule.SHARED_IP)):
        if ip:
            by_ip[ip].add(risk.account_key(user_id=user_id))
    for ip, accounts in sorted(by_ip.items()):
        raised += bool(risk.cluster_alert(rule=Rule.SHARED_IP, subject=ip, accounts=accounts, ip=ip))

    # Payout accounts are encrypted at rest (no index can group them): the window's withdrawals
    # are decrypted here and grouped by a hash; the alert shows the account masked.
    by_payout: dict[str, set[str]] = defaultdict(set)
    masked: dict[str, str] = {}
    withdrawals = Withdrawal.objects.filter(created_at__gte=since(Rule.SHARED_PAYOUT)).select_related("agent")
    for withdrawal in withdrawals.order_by("pk"):
        account = "".join(payee_account(withdrawal).split()).lower()
        digest = block_value_normalise(BlockEntry.Kind.PAYOUT, account)  # keyed: the blacklist's form
        by_payout[digest].add(risk.account_key(user_id=withdrawal.agent.user_id))
        masked[digest] = f"{withdrawal.get_method_display()} {crypto.mask(account)}"
    for digest, accounts in sorted(by_payout.items()):
        alert = risk.cluster_alert(
            rule=Rule.SHARED_PAYOUT,
            subject="payout:" + digest[5:37],
            accounts=accounts,
            payout=digest,
            extra={"payout": masked[digest]},
        )
        raised += bool(alert)
    return raised
