"""Risk control's services: the screens that run where an event happens (sign-up, checkout,
withdrawal request), the alerts they raise and staff's decisions on them.

A screen checks the blacklist (one query) and counts the event for its rules (one Redis
round-trip, ``counters``). A rule past its threshold raises ONE alert per window (the hit that
passes it), and then does what its setting says (RISK_RULES): log only; refuse while the window
lasts; hold the subject (refused until staff review the alert); block it for RISK_BLOCK_MINUTES.
Holds and blocks are blacklist entries pointing at their alert, so staff undo them by
dismissing the alert (or lifting the entry): nothing is silently blocked, all of it reversible.
Every refusal says why in words the person understands, and is audited.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
from collections.abc import Sequence
from datetime import timedelta
from functools import cache as memoise
from functools import lru_cache
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from compliance.models import CreditEvent
from compliance.services import audit_denied, audit_record, credit_event_record, credit_events_cancel
from marketplace.errors import ServiceError
from marketplace.ratelimit import client_network

from .captcha import captcha_check
from .counters import Counter, counter_reset, counters_hit
from .models import (
    ALERT_FLOW,
    Action,
    Alert,
    AlertStatus,
    BlockEntry,
    Rule,
    Signup,
    active_entries,
    block_value_normalise,
    block_value_shown,
)

log = logging.getLogger(__name__)
Kind, Scope = BlockEntry.Kind, BlockEntry.Scope
DATA = Path(__file__).resolve().parent / "data"


class RiskRefused(ServiceError):
    """Refused by risk control: blacklisted (403), too many at once (429), too much stock held (409)."""

    code = "risk_refused"
    status = 403


# --- the blacklist ----------------------------------------------------------------------------


@memoise
def disposable_domains() -> frozenset[str]:
    lines = (DATA / "disposable_email_domains.txt").read_text().splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))


def _parents(domain: str) -> list[str]:
    """mail.example.com -> [mail.example.com, example.com] (not the bare top-level domain)."""
    parts = domain.split(".")
    return [".".join(parts[i:]) for i in range(len(parts) - 1)]


def email_disposable(email: str) -> bool:
    domain = (email or "").rsplit("@", 1)[-1].lower().strip(".")
    return any(d in disposable_domains() for d in _parents(domain))


@lru_cache(maxsize=4096)
def _networks(ip: str | None) -> tuple[str, ...]:
    """Every network that holds ``ip`` (its /32 up to /0, or /128 up to /0), as stored.
    Memoised per process: a pure function of the address (33 or 129 network objects)."""
    try:
        address = ipaddress.ip_address(ip or "")
    except ValueError:
        return ()
    bits = address.max_prefixlen
    return tuple(str(ipaddress.ip_network(f"{address}/{n}", strict=False)) for n in range(bits, -1, -1))


def _placeholders(values: Sequence) -> str:
    return ", ".join(["%s"] * len(values))


def blacklist_sql(
    *, scope: str, ip: str | None = None, email: str = "", device: str = "", payout: str = ""
) -> tuple[str, list] | None:
    """``blacklist_match``'s lookup as a SELECT of the matching entry's id (the earliest to
    expire, as ``blacklist_match`` orders them), with its parameters; None when no subject is
    given. Its text depends only on which subjects are given and how many networks and parent
    domains they have (no ORM compile), so a caller can run it within a statement of its own
    (``orders.services.risk``) and hand the id to ``checkout_screen``."""
    where: list[str] = []
    params: list = []
    if nets := _networks(ip):
        where.append(f"(kind = %s AND value IN ({_placeholders(nets)}))")
        params += [Kind.NETWORK.value, *nets]
    email = (email or "").strip().lower()
    if "@" in email:
        parents = _parents(email.rsplit("@", 1)[1])
        where.append("(kind = %s AND value = %s)")
        params += [Kind.EMAIL.value, email]
        if parents:
            where.append(f"(kind = %s AND value IN ({_placeholders(parents)}))")
            params += [Kind.DOMAIN.value, *parents]
    if device:
        where.append("(kind = %s AND value = %s)")
        params += [Kind.DEVICE.value, device]
    if payout:
        where.append("(kind = %s AND value = %s)")
        params += [Kind.PAYOUT.value, block_value_normalise(Kind.PAYOUT, payout)]
    if not where:
        return None
    sql = (
        f"SELECT id FROM {BlockEntry._meta.db_table} WHERE ({' OR '.join(where)})"  # noqa: S608 (no user input)
        " AND (expires_at IS NULL OR expires_at > %s) AND scope IN (%s, %s) ORDER BY expires_at ASC LIMIT 1"
    )
    params += [connection.ops.adapt_datetimefield_value(timezone.now()), Scope.ALL.value, str(scope)]
    return sql, params


def blacklist_match(
    *, scope: str, ip: str | None = None, email: str = "", device: str = "", payout: str = ""
) -> BlockEntry | None:
    """The active entry that bars this ``scope`` (signup / checkout / withdrawal) to any of the
    subjects given, or None. One query (two on a match: the entry itself)."""
    query = blacklist_sql(scope=scope, ip=ip, email=email, device=device, payout=payout)
    if query is None:
        return None
    with connection.cursor() as cursor:
        cursor.execute(*query)
        row = cursor.fetchone()
    return _entry(row[0] if row else None)


def _entry(entry_id: int | None) -> BlockEntry | None:
    return BlockEntry.objects.filter(pk=entry_id).first() if entry_id is not None else None


def _refuse_entry(entry: BlockEntry, *, action: str, what: str) -> None:
    audit_denied(action=action, target=f"blacklist #{entry.pk}", detail=f"{entry.kind} {what}")
    if entry.expires_at is not None:
        until = timezone.localtime(entry.expires_at).strftime("%Y-%m-%d %H:%M")
        message = _(
            "For your account's and other buyers' safety, this is paused for your %(what)s until %(until)s. "
            "If you think this is a mistake, contact customer service."
        ) % {"what": what, "until": until}
    else:
        message = _(
            "For your account's and other buyers' safety, this is paused for your %(what)s while our risk team "
            "reviews it. If you think this is a mistake, contact customer service."
        ) % {"what": what}
    raise RiskRefused(message, code="blacklisted")


def _subject_word(kind: str) -> str:
    return {
        Kind.NETWORK: _("network"),
        Kind.EMAIL: _("email address"),
        Kind.DOMAIN: _("email domain"),
        Kind.DEVICE: _("device"),
        Kind.PAYOUT: _("payout account"),
    }.get(BlockEntry.Kind(kind), _("account"))


def block_add(
    *,
    kind: str,
    value: str,
    reason: str,
    scope: str = Scope.ALL,
    expires_at=None,
    by=None,
    alert=None,
    shown: str = "",
) -> BlockEntry:
    """A blacklist entry (``shown``: how staff see a value kept as a digest, when the caller
    knows better than the value itself, e.g. a payout account's method and masked number)."""
    try:
        normalised = block_value_normalise(kind, value)
    except ValueError:
        raise ServiceError(_("This is not a valid value for that kind of entry."), code="block_value") from None
    if not (reason or "").strip():
        raise ServiceError(_("Give a reason."), code="block_reason")
    return BlockEntry.objects.create(
        kind=kind,
        value=normalised,
        shown=(shown or block_value_shown(kind, value))[:60],
        reason=reason.strip()[:300],
        scope=scope,
        expires_at=expires_at,
        created_by=by,
        alert=alert,
    )


def block_lift(*, entry_id: int, by, request=None) -> bool:
    """End an entry now (kept, with its end, as the record)."""
    now = timezone.now()
    lifted = BlockEntry.objects.filter(Q(pk=entry_id), active_entries(now)).update(expires_at=now)
    if lifted:
        audit_record(
            action="risk_block_lifted", outcome="allowed", actor=by, request=request, target=f"blacklist #{entry_id}"
        )
    return bool(lifted)


# --- rules ------------------------------------------------------------------------------------


def _rule(name: str) -> dict:
    return settings.RISK_RULES[name]


def _run_rules(
    hits: Sequence[tuple[str, str, str, str]],
    *,
    scope: str,
    user=None,
    email: str = "",
    ip=None,
    device: str = "",
    captcha: str = "",
) -> None:
    """Count ``hits`` ((rule, kind, value, label): the subject a hold or block would bar) in one
    round-trip; raise the alerts and take the actions of those past their thresholds. A rule
    whose action is "captcha" needs ``captcha``, the form's solved challenge (risk/captcha.py)."""
    counters = [Counter(rule, f"{kind}:{value}", _rule(rule)["window"]) for rule, kind, value, _label in hits]
    counts = counters_hit(counters)
    refused: list[tuple[str, str]] = []
    wants_captcha = False
    for (rule, kind, value, label), count, counter in zip(hits, counts, counters, strict=True):
        spec = _rule(rule)
        if count is None or count <= spec["limit"]:
            continue
        action = spec["action"]
        if count == spec["limit"] + 1:  # one alert per window: the hit that passes the threshold
            evidence = {
                "count": count,
                "limit": spec["limit"],
                "window_seconds": spec["window"],
                kind: value,
                "counter": counter.key,
            }
            alert_raise(
                rule=rule,
                action=action,
                user=user,
                email=email,
                ip=ip,
                device=device,
                evidence=evidence,
                bar=(kind, value, scope),
            )
        if action == Action.CAPTCHA:
            wants_captcha = True
        elif action != Action.LOG:
            refused.append((rule, label))
    if wants_captcha and not refused:  # or CaptchaRequired: the page shows the challenge
        captcha_check(payload=captcha, audit=lambda code: audit_denied(action=f"risk_{code}", actor=user, target=email))
    if refused:
        rule, label = refused[0]
        window = _rule(rule)["window"]
        audit_denied(action=f"risk_{rule}", actor=user, target=label, detail=f"ip={ip} device={device}")
        raise RiskRefused(
            _(
                "Too many attempts from your %(what)s in a short time. "
                "Please try again later, or contact customer service."
            )
            % {"what": label},
            code="too_many",
            status=429,
            retry_after=window,
        )


def alert_raise(
    *, rule: str, action: str, user=None, email: str = "", ip=None, device: str = "", evidence: dict, bar=None
) -> Alert:
    """An alert in the risk queue; for a hold or block, the blacklist entry that enforces it
    (``bar``: kind, value, scope)."""
    with transaction.atomic():
        alert = Alert.objects.create(
            rule=rule,
            action=action,
            user=user if getattr(user, "pk", None) else None,
            email=email or "",
            ip=ip or None,
            device=device or "",
            evidence=evidence,
        )
        if bar is not None and action in (Action.HOLD, Action.BLOCK):
            kind, value, scope = bar
            expires = (
                timezone.now() + timedelta(minutes=settings.RISK_BLOCK_MINUTES) if action == Action.BLOCK else None
            )
            block_add(
                kind=kind,
                value=value,
                scope=scope,
                expires_at=expires,
                alert=alert,
                shown=str(evidence.get("payout", "")) if kind == Kind.PAYOUT else "",
                reason=f"{Rule(rule).label}: {evidence.get('count')} > {evidence.get('limit')} (alert #{alert.pk})",
            )
        if rule in settings.RISK_CREDIT_ON_ALERT:
            alert_credit_record(alert=alert)
    log.warning("risk alert #%s %s %s %s", alert.pk, rule, action, evidence)
    return alert


def signup_check(*, email: str, ip: str | None, device: str) -> None:
    """Before an account is made (the sign-up form's email check): the blacklist, and
    disposable-mail domains (RISK_REFUSE_DISPOSABLE_EMAIL)."""
    entry = blacklist_match(scope=Scope.SIGNUP, ip=ip, email=email, device=device)
    if entry is not None:
        _refuse_entry(entry, action="risk_signup_blacklisted", what=_subject_word(entry.kind))
    if settings.RISK_REFUSE_DISPOSABLE_EMAIL and email_disposable(email):
        audit_denied(action="risk_signup_disposable_email", target=email.rsplit("@", 1)[-1])
        raise RiskRefused(
            _(
                "Addresses of disposable-mail services cannot be used here: your orders and codes are sent to your "
                "email. Use an address you keep."
            ),
            code="disposable_email",
            status=400,
        )


def signup_count(*, email: str, ip: str | None, device: str, captcha: str = "") -> None:
    """A sign-up about to be saved: counted per IP, per network and per device (``captcha``:
    the form's solved challenge, for a rule that asks for one)."""
    hits = []
    if ip:
        net = client_network(ip)
        prefix = 64 if ":" in ip else 24
        network = str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False)) if net != "unknown" else ""
        hits.append((Rule.SIGNUP_IP, Kind.NETWORK, str(ipaddress.ip_network(ip)), _("network")))
        if network:
            hits.append((Rule.SIGNUP_NETWORK, Kind.NETWORK, network, _("network")))
    if device:
        hits.append((Rule.SIGNUP_DEVICE, Kind.DEVICE, device, _("device")))
    _run_rules(hits, scope=Scope.SIGNUP, email=email, ip=ip, device=device, captcha=captcha)


class _NotRead(enum.Enum):
    NOT_READ = 0


NOT_READ = _NotRead.NOT_READ


def checkout_screen(
    *,
    user=None,
    email: str,
    ip: str | None,
    device: str,
    count: bool = True,
    captcha: str = "",
    blacklisted: int | _NotRead | None = NOT_READ,
) -> None:
    """An order about to be placed: the blacklist, and (``count``) the order-burst rules
    (``captcha``: the form's solved challenge, for a rule that asks for one). ``blacklisted``:
    the id ``blacklist_sql`` (scope checkout, the same subjects) found, or None, when the
    caller has read it already; otherwise the blacklist is read here."""
    if blacklisted is NOT_READ:
        entry = blacklist_match(scope=Scope.CHECKOUT, ip=ip, email=email, device=device)
    else:
        entry = _entry(blacklisted)
    if entry is not None:
        _refuse_entry(entry, action="risk_checkout_blacklisted", what=_subject_word(entry.kind))
    if not count:
        return
    hits = []
    if email:
        hits.append((Rule.ORDER_BURST_BUYER, Kind.EMAIL, email, _("account")))
    if ip:
        hits.append((Rule.ORDER_BURST_IP, Kind.NETWORK, str(ipaddress.ip_network(ip)), _("network")))
    if device:
        hits.append((Rule.ORDER_BURST_DEVICE, Kind.DEVICE, device, _("device")))
    _run_rules(hits, scope=Scope.CHECKOUT, user=user, email=email, ip=ip, device=device, captcha=captcha)


def withdrawal_screen(*, user, ip: str | None = None, payout_account: str) -> None:
    """A withdrawal about to be requested: the blacklist (the payout account, the agent's email, the IP)."""
    entry = blacklist_match(scope=Scope.WITHDRAWAL, ip=ip, email=getattr(user, "email", ""), payout=payout_account)
    if entry is not None:
        _refuse_entry(entry, action="risk_withdrawal_blacklisted", what=_subject_word(entry.kind))


def hogging_alert(*, user=None, email: str, ip: str | None, device: str, evidence: dict) -> None:
    """A client refused for holding too much unpaid stock: one alert (log only: the cap itself
    is the action) per client and hour."""
    from django.core.cache import cache

    subject = email or device or str(ip)
    if cache.add(f"risk:hogging-alerted:{subject}", 1, timeout=3600):
        alert_raise(
            rule=Rule.STOCK_HOGGING,
            action=Action.REFUSE,
            user=user,
            email=email,
            ip=ip,
            device=device,
            evidence=evidence,
        )
    audit_denied(action="risk_stock_hogging", actor=user, target=subject, detail=str(evidence)[:500])


# --- staff decisions --------------------------------------------------------------------------


def _lock(alert_id: int) -> Alert:
    return Alert.objects.select_for_update(of=("self",)).get(pk=alert_id)


def alert_dismiss(*, alert_id: int, by, note: str = "", request=None) -> bool:
    """A false alarm: closed, and what its rule did automatically (a hold, a block) lifted."""
    with transaction.atomic():
        alert = _lock(alert_id)
        moved = ALERT_FLOW.apply(alert, AlertStatus.DISMISSED, actor=by, note=note or "dismissed")
        if moved:
            BlockEntry.objects.filter(active_entries(), alert=alert).update(expires_at=timezone.now())
            credit_events_cancel(
                kind=CreditEvent.Kind.ANOMALY, reference=_credit_reference(alert), by=by, reason="alert dismissed"
            )
            audit_record(
                action="risk_alert_dismissed", outcome="allowed", actor=by, request=request, target=f"alert #{alert.pk}"
            )
    if moved and (counter := (alert.evidence or {}).get("counter")):
        counter_reset(counter)  # the subject starts afresh
    return moved


def alert_block(*, alert_id: int, by, days: int, request=None) -> bool:
    """Block the alert's subjects (email, IP, device) from everything for ``days``."""
    if days < 1:
        raise ServiceError(_("Block for at least one day."), code="block_days")
    with transaction.atomic():
        alert = _lock(alert_id)
        moved = ALERT_FLOW.apply(alert, AlertStatus.ACTIONED, actor=by, note=f"blocked for {days} day(s)")
        if moved:
            until = timezone.now() + timedelta(days=days)
            reason = f"{alert.get_rule_display()} (alert #{alert.pk})"
            subjects = [(Kind.EMAIL, alert.email), (Kind.NETWORK, alert.ip or ""), (Kind.DEVICE, alert.device)]
            if alert.user is not None and not alert.email:
                subjects.append((Kind.EMAIL, alert.user.email))
            subjects += [(Kind.EMAIL, email) for email in _cluster_emails(alert)]  # a cluster's accounts
            for kind, value in dict.fromkeys(subjects):
                if value:
                    block_add(kind=kind, value=value, reason=reason, expires_at=until, by=by, alert=alert)
            alert_credit_record(alert=alert)  # staff confirmed it: it counts in the credit rating
            audit_record(
                action="risk_alert_blocked",
                outcome="allowed",
                actor=by,
                request=request,
                target=f"alert #{alert.pk}",
                detail=f"{days} day(s)",
            )
    return moved


# --- the credit rating: alerts that count ----------------------------------------------------
# An alert records a credit event (kind "anomaly", the alert's rule as detail) when staff block
# its subjects, or at once for the rules in settings.RISK_CREDIT_ON_ALERT. Unreviewed alerts of
# the other rules count for nothing: an automatic suspicion must not lower a rating (and so
# restrict purchases) without a person having looked; dismissing an alert cancels its events
# (weight 0, kept and audited: compliance.services.credit_events_cancel).


def _credit_reference(alert: Alert) -> str:
    return f"risk-alert:{alert.pk}"


def _cluster_members(alert: Alert) -> tuple[list[int], list[str]]:
    evidence = alert.evidence or {}
    return [int(pk) for pk in evidence.get("members", [])], [str(e) for e in evidence.get("guests", [])]


def _cluster_emails(alert: Alert) -> list[str]:
    from django.contrib.auth import get_user_model

    members, guests = _cluster_members(alert)
    users = get_user_model().objects.filter(pk__in=members).order_by("pk")
    return [u.email.lower() for u in users if u.email] + guests


def alert_credit_record(*, alert: Alert) -> int:
    """The alert's owners (its member or guest email; a cluster's accounts) each get one
    "anomaly" credit event under the alert's reference; none twice. How many were recorded."""
    from django.contrib.auth import get_user_model

    reference = _credit_reference(alert)
    members, guests = _cluster_members(alert)
    owners: list[tuple[object, str]] = []
    if alert.user_id is not None:
        owners.append((alert.user, ""))
    elif alert.email:
        owners.append((None, alert.email))
    owners += [(u, "") for u in get_user_model().objects.filter(pk__in=members).order_by("pk")]
    owners += [(None, email) for email in guests]
    done: set[tuple[int | None, str]] = set(
        CreditEvent.objects.filter(kind=CreditEvent.Kind.ANOMALY, reference=reference).values_list("user_id", "email")
    )
    recorded = 0
    for user, email in owners:
        if (getattr(user, "pk", None), email.strip().lower()) in done:
            continue
        credit_event_record(
            user=user, email=email, kind=CreditEvent.Kind.ANOMALY, reference=reference, detail=alert.get_rule_display()
        )
        done.add((getattr(user, "pk", None), email.strip().lower()))
        recorded += 1
    return recorded


# --- velocity: payments that ended unpaid, refund requests ----------------------------------

VELOCITY = {
    "payment_failed": (Rule.PAYMENT_FAILED_BUYER, Rule.PAYMENT_FAILED_IP, Rule.PAYMENT_FAILED_DEVICE),
    "refund_request": (Rule.REFUND_VELOCITY_BUYER, Rule.REFUND_VELOCITY_IP, Rule.REFUND_VELOCITY_DEVICE),
}


def velocity_count(
    *, event: str, user=None, email: str = "", ip: str | None = None, device: str = "", reference: str = ""
) -> list[str]:
    """One ``event`` ("payment_failed": a trade closed unpaid; "refund_request") of a buyer
    (member ``user`` or guest ``email``), from ``ip`` and ``device``: counted per buyer, IP and
    device in one Redis round-trip. A rule past its threshold raises one alert per window (with
    the count, the limit, the window and ``reference``, the order's number) and, for hold or
    block, bars the subject's checkout (until review / for RISK_BLOCK_MINUTES). Never refuses
    the event itself: returns the rules past their threshold whose action is not "log", so the
    caller can send the case to staff (a refund request goes to review)."""
    buyer_rule, ip_rule, device_rule = VELOCITY[event]
    email = ((getattr(user, "email", "") if user is not None else email) or "").strip().lower()
    hits: list[tuple[str, str, str]] = []
    if email:
        hits.append((buyer_rule, Kind.EMAIL, email))
    try:
        if ip:
            hits.append((ip_rule, Kind.NETWORK, str(ipaddress.ip_network(ip))))
    except ValueError:
        ip = None
    if device:
        hits.append((device_rule, Kind.DEVICE, device))
    counters = [Counter(rule, f"{kind}:{value}", _rule(rule)["window"]) for rule, kind, value in hits]
    passed = []
    for (rule, kind, value), count, counter in zip(hits, counters_hit(counters), counters, strict=True):
        spec = _rule(rule)
        if count is None or count <= spec["limit"]:
            continue
        if count == spec["limit"] + 1:  # one alert per window: the event that passes the threshold
            evidence = {
                "event": event,
                "count": count,
                "limit": spec["limit"],
                "window_seconds": spec["window"],
                kind: value,
                "reference": reference,
                "counter": counter.key,
            }
            alert_raise(
                rule=rule,
                action=spec["action"],
                user=user,
                email=email,
                ip=ip,
                device=device,
                evidence=evidence,
                bar=(kind, value, Scope.CHECKOUT),
            )
        if spec["action"] != Action.LOG:
            passed.append(rule)
    return passed


# --- clusters: many accounts on one device, IP or payout account ----------------------------


def signup_record(*, user, ip: str | None, device: str) -> None:
    """Where an account was made, for the shared-device and shared-IP rules."""
    if getattr(user, "pk", None) is None:
        return
    try:
        ip = str(ipaddress.ip_address(ip)) if ip else None
    except ValueError:
        ip = None
    Signup.objects.get_or_create(user=user, defaults={"ip": ip, "device": device or ""})


def signups_since(since) -> list[tuple[str, str | None, int]]:
    """(device, ip, user id) of the sign-ups since ``since``: the clusters' scan reads them."""
    rows = Signup.objects.filter(created_at__gte=since).values_list("device", "ip", "user_id")
    return [(d, ip, pk) for d, ip, pk in rows]


def account_key(*, user_id: int | None, email: str = "") -> str:
    """One account in a cluster: a member ("u:<id>") or a guest email ("g:<email>")."""
    return f"u:{user_id}" if user_id is not None else f"g:{(email or '').strip().lower()}"


def cluster_alert(
    *, rule: str, subject: str, accounts: set[str], ip=None, device: str = "", payout: str = "", extra=None
) -> Alert | None:
    """An alert for a cluster (``subject``: the device id, the IP, a payout account's hash)
    shared by ``accounts`` (``account_key``), when they are more than the rule's limit. Not
    again while an alert of this cluster is open, nor after staff decided one that already
    named all of these accounts (a dismissed cluster alerts again only when it grows)."""
    spec = _rule(rule)
    if len(accounts) <= spec["limit"]:
        return None
    earlier = Alert.objects.filter(rule=rule, evidence__subject=subject).order_by("-pk")
    if earlier.filter(status=AlertStatus.OPEN).exists():
        return None
    last = earlier.first()
    if last is not None and accounts <= set((last.evidence or {}).get("accounts", [])):
        return None
    ordered = sorted(accounts)
    members = [int(a[2:]) for a in ordered if a.startswith("u:")]
    guests = [a[2:] for a in ordered if a.startswith("g:")]
    evidence = {
        "subject": subject,
        "count": len(accounts),
        "limit": spec["limit"],
        "window_seconds": spec["window"],
        "accounts": ordered[:200],
        "members": members[:200],
        "guests": guests[:200],
        **(extra or {}),
    }
    bar = None
    if device:
        bar = (Kind.DEVICE, device, Scope.ALL)
    elif ip:
        bar = (Kind.NETWORK, str(ip), Scope.ALL)
    elif payout:  # the shared payout account (its digest): no withdrawal to it while held
        bar = (Kind.PAYOUT, payout, Scope.WITHDRAWAL)
    return alert_raise(rule=rule, action=spec["action"], ip=ip, device=device, evidence=evidence, bar=bar)
