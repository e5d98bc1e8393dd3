"""The credit rating: a score from a user's credit events, the level it maps to, and the one
call every service asks before letting a member or a guest buy, pay, withdraw or get a
no-reason refund at once.

- Score: the sum over the owner's credit events of ``weight * 0.5 ** (age / half_life)``, with
  the weight and half-life of each kind in ``settings.CREDIT_RULES`` (a staff adjustment carries
  its own weight). A dispute lost before staff that arbitration later overturned (an
  ``arbitration_won`` with the same reference) does not count, as in ``credit_summary``.
- Level: the ``CreditLevel`` with the highest ``min_score`` at or below the score, unless staff
  forced one (``CreditOverride``, until its expiry, audited).
- Cost: one indexed query (the owner's events of the horizon, UNION ALL the owner's live
  override), plus the levels table from the cache (forgotten when staff change it). A clean
  user costs exactly that one query; ``order_place`` measured +1 statement (tests assert it).
  No per-user cache: the score decays with time and an event must count at once (a refund
  recorded, then the next purchase), so the query, which reads a handful of rows through the
  (user, kind, at) index, is both cheaper to get right and cheap enough.
- Refusals: ``CreditRestricted`` (code ``risk_restricted``, 403) with a message naming the
  level, what it limits and the events behind it, in the user's language.

Guests are rated by their normalised email address, exactly as their credit events are kept.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any, cast

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import BooleanField
from django.db.models.expressions import RawSQL
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from marketplace.errors import ServiceError
from marketplace.text import email_normalise

from .models import AuditEvent, CreditEvent, CreditLevel, CreditOverride
from .selectors import credit_owner
from .services import audit_record, credit_event_record

LEVELS_CACHE_KEY = "compliance:credit_levels:v1"
LEVELS_CACHE_SECONDS = 600  # staff saving a level forget it at once; this bounds a missed forget
OVERRIDE = "override"  # the union's tag for an override row


class CreditRestricted(ServiceError):
    """The user's credit level does not allow this. 403: known, but not allowed (not a
    ``Forbidden``: pages show this message instead of the bare 403 page)."""

    code = "risk_restricted"
    status = 403


# --- levels -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Level:
    """A ``CreditLevel`` as the checks read it (cached)."""

    pk: int | None
    name: str
    min_score: Decimal
    may_purchase: bool = True
    max_codes_per_order: int | None = None
    max_codes_per_day: int | None = None
    may_buy_high_risk: bool = True
    balance_only: bool = False
    refunds_reviewed: bool = False
    may_withdraw: bool = True

    @property
    def label(self) -> str:
        """The name in the user's language: the seeded names are translated, a name staff
        typed themselves is shown as typed."""
        return _(self.name) if self.name else ""

    @property
    def limits(self) -> list[str]:
        """What this level limits, one phrase each (empty: nothing)."""
        out = []
        if not self.may_purchase:
            out.append(_("no purchases"))
        if self.max_codes_per_order is not None:
            out.append(
                ngettext("at most %(n)d code per order", "at most %(n)d codes per order", self.max_codes_per_order)
                % {"n": self.max_codes_per_order}
            )
        if self.max_codes_per_day is not None:
            out.append(
                ngettext("at most %(n)d code per day", "at most %(n)d codes per day", self.max_codes_per_day)
                % {"n": self.max_codes_per_day}
            )
        if not self.may_buy_high_risk:
            out.append(_("no high-risk goods"))
        if self.balance_only:
            out.append(_("pay with the account balance only"))
        if self.refunds_reviewed:
            out.append(_("no-reason refunds are reviewed by staff"))
        if not self.may_withdraw:
            out.append(_("no commission withdrawals"))
        return out


UNRESTRICTED = Level(pk=None, name="", min_score=Decimal(0))
LEVEL_FIELDS = (
    "pk",
    "name",
    "min_score",
    "may_purchase",
    "max_codes_per_order",
    "max_codes_per_day",
    "may_buy_high_risk",
    "balance_only",
    "refunds_reviewed",
    "may_withdraw",
)


def _levels_load() -> list[Level]:
    return [
        Level(**dict(zip(LEVEL_FIELDS, row, strict=True))) for row in CreditLevel.objects.values_list(*LEVEL_FIELDS)
    ]


# The table is read on every checkout: kept in this process for a few seconds too, so that a
# checkout costs no Redis round-trip for it (issue 13: the risk hook adds at most one). A change
# by staff applies at once in the process that saved it, within LEVELS_LOCAL_SECONDS elsewhere.
LEVELS_LOCAL_SECONDS = 10.0
_local: dict[str, object] = {}


def credit_levels() -> list[Level]:
    """The levels by score, lowest first (cached; ``credit_levels_forget`` after a change)."""
    now = time.monotonic()
    if _local and now - cast(float, _local["at"]) < LEVELS_LOCAL_SECONDS:
        return cast(list[Level], _local["levels"])
    levels = cast(list[Level], cache.get_or_set(LEVELS_CACHE_KEY, _levels_load, LEVELS_CACHE_SECONDS))
    _local.update(levels=levels, at=now)
    return levels


def credit_levels_forget_local() -> None:
    """Drop this process's copy (``credit_levels_forget`` does; tests do between tests)."""
    _local.clear()


def credit_levels_forget() -> None:
    """After staff change a level: now, and again when the change commits (a reader between
    the two would cache the old table)."""
    _local.clear()
    cache.delete(LEVELS_CACHE_KEY)
    transaction.on_commit(lambda: (_local.clear(), cache.delete(LEVELS_CACHE_KEY)))


def level_for_score(score: float, levels: list[Level] | None = None) -> Level:
    """The level with the highest threshold at or below ``score`` (none: unrestricted)."""
    chosen = UNRESTRICTED
    for level in levels if levels is not None else credit_levels():
        if Decimal(str(round(score, 4))) >= level.min_score:
            chosen = level
    return chosen


# --- the score --------------------------------------------------------------------------------


def credit_rule(kind: str) -> tuple[float, float]:
    """(weight, half-life in days) of a kind of event."""
    rule = settings.CREDIT_RULES.get(kind) or {}
    return float(rule.get("weight", 0.0)), float(rule.get("half_life_days", 90) or 90)


def decayed(weight: float, half_life_days: float, age: timedelta) -> float:
    """``weight`` after ``age``: halved every ``half_life_days`` (never grows for a future time)."""
    days = max(age.total_seconds(), 0.0) / 86400
    return weight * math.pow(0.5, days / half_life_days)


@dataclass(frozen=True)
class ScoredEvent:
    kind: str
    at: datetime
    reference: str
    weight: float  # at the time
    now_weight: float  # decayed to now
    cancelled: bool = False  # a lost dispute overturned at arbitration

    @property
    def label(self) -> str:
        return str(CreditEvent.Kind(self.kind).label) if self.kind in CreditEvent.Kind.values else self.kind


@dataclass(frozen=True)
class Override:
    level_pk: int
    expires_at: datetime
    reason: str


@dataclass
class Rating:
    """Whose rating, its score, the level that applies and why."""

    score: float
    level: Level
    computed_level: Level
    override: Override | None = None
    events: list[ScoredEvent] = field(default_factory=list)

    @property
    def is_overridden(self) -> bool:
        return self.override is not None

    @property
    def score_display(self) -> str:
        return f"{self.score:.2f}"

    def reasons(self) -> str:
        """The events behind the score, in words: "No-reason refund ×3, ..." (or the override's reason)."""
        if self.override is not None:
            return _("set by staff: %(reason)s") % {"reason": self.override.reason}
        counts = Counter(e.label for e in self.events if not e.cancelled and e.now_weight > 0.005)
        if not counts:
            return _("none")
        return _(", ").join(f"{label} ×{n}" for label, n in counts.most_common())


@lru_cache(maxsize=2)
def _rows_sql(member: bool) -> str:
    """``_rows``' statement for a member (or a guest email), composed once from the models' names
    instead of a union of querysets compiled on every call (the order page reads it each view)."""
    q = connection.ops.quote_name

    def col(model, name: str) -> str:
        return f"{q(model._meta.db_table)}.{q(model._meta.get_field(name).column)}"

    def owner(model) -> str:
        user = col(model, "user")
        return f"{user} = %s" if member else f"{user} IS NULL AND {col(model, 'email')} = %s"

    ev, ov = CreditEvent, CreditOverride
    events = ", ".join(col(ev, name) for name in ("kind", "at", "reference", "weight"))
    # Portable SQL (PostgreSQL and the SQLite development default): CAST rather than ``::``, and
    # no parentheses around the UNION's members (SQLite refuses them).
    return (
        f"SELECT {events}, CAST(NULL AS bigint) FROM {q(ev._meta.db_table)}"  # noqa: S608 (names from the models, values bound)
        f" WHERE {owner(ev)} AND {col(ev, 'at')} >= %s"
        f" UNION ALL SELECT %s, {col(ov, 'expires_at')}, {col(ov, 'reason')}, CAST(NULL AS numeric), {col(ov, 'level')}"
        f" FROM {q(ov._meta.db_table)} WHERE {owner(ov)} AND {col(ov, 'expires_at')} > %s"
        f" AND {col(ov, 'revoked_at')} IS NULL"
    )


def _rows(*, user, email: str, now: datetime) -> list[tuple]:
    """One query: the owner's events of the horizon (kind, at, reference, weight, None), and
    their live overrides (OVERRIDE, expires_at, reason, None, level id)."""
    who = user.pk if user is not None else email_normalise(email)
    if user is None and not who:
        raise ValueError("a credit event belongs to a user or to a guest email")
    adapt = connection.ops.adapt_datetimefield_value
    since = adapt(now - timedelta(days=settings.CREDIT_HORIZON_DAYS))
    with connection.cursor() as cursor:
        cursor.execute(_rows_sql(user is not None), [who, since, OVERRIDE, who, adapt(now)])
        rows = [tuple(row) for row in cursor.fetchall()]
    if connection.vendor != "postgresql":  # SQLite hands its datetimes back naive (UTC) or as text
        rows = [(row[0], _aware(row[1]), *row[2:]) for row in rows]
    return rows


def _aware(value) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if timezone.is_aware(value) else value.replace(tzinfo=UTC)


def credit_rating(*, user=None, email: str = "", now: datetime | None = None) -> Rating:
    """The rating of a member (``user``), or of the guest ``email``: one query (see above),
    with each event and its decayed weight (the reasons, the profile page, staff panels)."""
    if user is not None and not getattr(user, "is_authenticated", True):
        user = None
    if user is None:
        email = email_normalise(email)
        if not email:
            return Rating(score=0.0, level=level_for_score(0.0), computed_level=level_for_score(0.0))
    now = now or timezone.now()
    return _rating_of(_rows(user=user, email=email, now=now), now=now)


def credit_probe_since(now: datetime) -> datetime:
    """The first moment of the horizon ``credit_probe_sql`` looks at for ``now`` (its second
    parameter: a caller that compiles the probe once passes it as a value of its own)."""
    return now - timedelta(days=settings.CREDIT_HORIZON_DAYS)


def credit_probe_values(now: datetime) -> dict[str, Any]:
    """The probe's two moments as named values (``since``, ``now``), for a read compiled once
    (``marketplace.prepared``) whose query annotates ``credit_probe_annotation``."""
    return {"since": credit_probe_since(now), "now": now}


# Samples of those values for such a compiled read: moments no real read carries.
CREDIT_PROBE_SAMPLES = credit_probe_values(datetime(2001, 2, 3, 4, 5, 6, 789012, tzinfo=UTC))


def credit_probe_sql(*, user=None, email: str = "", now: datetime, user_id: int | None = None) -> tuple[str, list]:
    """A boolean SQL expression (constant text, with its parameters) true when the member
    ``user`` (or ``user_id``; or the guest ``email``) has anything ``credit_rating`` would read:
    an event of the horizon or a live override. A caller that reads it within one of its own
    statements (``orders.services.risk``, the order page, the payment's start) knows a clean
    owner's rating without a query of its own: false means ``credit_rating_unrated``, exactly
    what ``credit_rating`` would find. Parameters: owner, ``credit_probe_since(now)``, owner,
    ``now``."""
    events, overrides = CreditEvent._meta.db_table, CreditOverride._meta.db_table
    if user_id is not None:
        owner, params = "user_id = %s", [user_id]
    elif user is not None and getattr(user, "is_authenticated", True):
        owner, params = "user_id = %s", [user.pk]
    else:
        owner, params = "user_id IS NULL AND email = %s", [email_normalise(email)]
    adapt = connection.ops.adapt_datetimefield_value
    since = adapt(credit_probe_since(now))
    sql = (
        f"(EXISTS (SELECT 1 FROM {events} WHERE {owner} AND at >= %s)"  # noqa: S608 (no user input)
        f" OR EXISTS (SELECT 1 FROM {overrides} WHERE {owner} AND expires_at > %s AND revoked_at IS NULL))"
    )
    return sql, [*params, since, *params, adapt(now)]


def credit_probe_annotation(*, user_id: int, now: datetime) -> RawSQL:
    """``credit_probe_sql`` of the member ``user_id`` as a boolean expression to annotate a row
    read anyway (``.annotate(credit_rated=...)``): the order page, the payment's start."""
    probe, params = credit_probe_sql(user_id=user_id, now=now)
    return RawSQL(probe, params, output_field=BooleanField())  # noqa: S611 (constant text, values bound)


def credit_rating_unrated(now: datetime | None = None) -> Rating:
    """The rating of an owner with nothing on record (``credit_probe_sql`` false): no query."""
    return _rating_of([], now=now or timezone.now())


def _rating_of(rows: list, *, now: datetime) -> Rating:
    """The rating from ``_rows``' rows (events and live overrides)."""
    overrides = [r for r in rows if r[0] == OVERRIDE]
    events = sorted((r for r in rows if r[0] != OVERRIDE), key=lambda r: r[1], reverse=True)
    overturned = {ref for kind, _at, ref, _w, _l in events if kind == CreditEvent.Kind.ARBITRATION_WON and ref}
    score = 0.0
    scored = []
    for kind, at, reference, own_weight, _level in events:
        weight, half_life = credit_rule(kind)
        if own_weight is not None:
            weight = float(own_weight)
        cancelled = kind == CreditEvent.Kind.DISPUTE_LOST and bool(reference) and reference in overturned
        now_weight = 0.0 if cancelled else decayed(weight, half_life, now - at)
        score += now_weight
        scored.append(ScoredEvent(kind, at, reference, weight, now_weight, cancelled))
    score = max(score, 0.0)
    levels = credit_levels()
    computed = level_for_score(score, levels)
    override = None
    level = computed
    if overrides:
        _tag, expires_at, reason, _w, level_pk = max(overrides, key=lambda r: r[1])
        forced = next((lv for lv in levels if lv.pk == level_pk), None)
        if forced is not None:
            override = Override(level_pk=level_pk, expires_at=expires_at, reason=reason)
            level = forced
    return Rating(score=score, level=level, computed_level=computed, override=override, events=scored)


# --- the checks (the "one call" of each service) ----------------------------------------------


def _refuse(rating: Rating, limit: str, *, user, email: str, action: str) -> None:
    message = _(
        "Your account's credit level is “%(level)s”: %(limit)s. Reason: %(reasons)s. "
        "You may appeal from your profile page (guests: through customer service)."
    ) % {"level": rating.level.label, "limit": limit, "reasons": rating.reasons()}
    audit_record(
        action=f"credit_{action}",
        outcome=AuditEvent.Outcome.DENIED,
        actor=user,
        target=getattr(user, "email", "") or email,
        detail=f"level={rating.level.name} score={rating.score:.2f}: {limit}",
    )
    raise CreditRestricted(message, level=rating.level.name)


def purchase_check(
    *,
    user=None,
    email: str = "",
    product,
    quantity: int,
    codes_today: Callable[[], int] | None = None,
    rating: Rating | None = None,
) -> Rating:
    """May this member (or guest ``email``) buy ``quantity`` codes of ``product``? Returns the
    rating, or raises ``CreditRestricted`` saying why not. ``codes_today`` counts the codes the
    owner ordered today (called only when the level has a daily cap). ``rating``: the owner's
    rating when the caller already knows it (``credit_rating_unrated`` after a false
    ``credit_probe_sql``), else it is read here (one query)."""
    if rating is None:
        rating = credit_rating(user=user, email=email)
    level = rating.level
    unlimited = level.max_codes_per_order is None and level.max_codes_per_day is None and level.may_buy_high_risk
    if unlimited and level.may_purchase and not (level.balance_only and user is None):
        return rating  # the common case: nothing to check
    if not level.may_purchase:
        _refuse(rating, _("no purchases"), user=user, email=email, action="purchase")
    if not level.may_buy_high_risk and getattr(product, "is_high_risk", False):
        _refuse(rating, _("no high-risk goods"), user=user, email=email, action="purchase")
    cap = level.max_codes_per_order
    if cap is not None and quantity > cap:
        limit = ngettext("at most %(n)d code per order", "at most %(n)d codes per order", cap) % {"n": cap}
        _refuse(rating, limit, user=user, email=email, action="purchase")
    daily = level.max_codes_per_day
    if daily is not None and codes_today is not None:
        used = codes_today()
        if used + quantity > daily:
            limit = ngettext(
                "at most %(n)d code per day (%(used)d today)", "at most %(n)d codes per day (%(used)d today)", daily
            ) % {"n": daily, "used": used}
            _refuse(rating, limit, user=user, email=email, action="purchase")
    if level.balance_only and user is None:
        # A guest has no balance: a balance-only level leaves a guest no way to pay.
        _refuse(rating, _("pay with the account balance only"), user=user, email=email, action="purchase")
    return rating


def channel_check(*, user=None, email: str = "", balance: bool, rating: Rating | None = None) -> None:
    """May the owner pay this way (``balance``: from the account balance, else a gateway)?
    ``rating``: the owner's, when the caller knows it (``credit_rating_unrated`` after a false
    ``credit_probe_sql``), else it is read here (one query)."""
    if balance:
        return
    if rating is None:
        rating = credit_rating(user=user, email=email)
    if rating.level.balance_only:
        _refuse(rating, _("pay with the account balance only"), user=user, email=email, action="pay")


def withdraw_check(*, user) -> None:
    """May this agent's user withdraw commission?"""
    rating = credit_rating(user=user)
    if not rating.level.may_withdraw:
        _refuse(rating, _("no commission withdrawals"), user=user, email="", action="withdraw")


def refund_review_reason(*, user=None, email: str = "") -> str:
    """Why a no-reason refund of this owner goes to staff review ("" when it need not)."""
    rating = credit_rating(user=user, email=email)
    if not rating.level.refunds_reviewed:
        return ""
    return _("your credit level is “%(level)s” (%(reasons)s)") % {
        "level": rating.level.label,
        "reasons": rating.reasons(),
    }


# --- staff ------------------------------------------------------------------------------------


def credit_override_set(
    *, by, level: CreditLevel, reason: str, expires_at: datetime, user=None, email: str = "", request=None
) -> CreditOverride:
    """Force ``level`` on a member (or the guest ``email``) until ``expires_at``; audited.
    A newer override replaces the live one (it is revoked)."""
    reason = (reason or "").strip()
    if not reason:
        raise ServiceError(_("Give the reason for the override."), code="reason_required")
    if expires_at <= timezone.now():
        raise ServiceError(_("The override must end in the future."), code="expiry_past")
    email = "" if user is not None else email_normalise(email)
    owner = credit_owner(user=user, email=email)
    with transaction.atomic():
        now = timezone.now()
        CreditOverride.objects.filter(owner, expires_at__gt=now, revoked_at__isnull=True).update(revoked_at=now)
        override = CreditOverride.objects.create(
            user=user, email=email, level=level, reason=reason[:300], expires_at=expires_at, created_by=by
        )
        audit_record(
            action="credit_override",
            outcome=AuditEvent.Outcome.ALLOWED,
            actor=by,
            target=getattr(user, "email", "") or email,
            request=request,
            detail=f"level={level.name} until {expires_at:%Y-%m-%d %H:%M}: {reason}",
        )
    return override


def credit_override_revoke(*, by, override: CreditOverride, request=None) -> None:
    if override.revoked_at is None:
        override.revoked_at = timezone.now()
        override.save(update_fields=["revoked_at"])
        audit_record(
            action="credit_override_revoke",
            outcome=AuditEvent.Outcome.ALLOWED,
            actor=by,
            target=getattr(override.user, "email", "") or override.email,
            request=request,
            detail=f"level={override.level.name}",
        )


def credit_adjust(*, by, user=None, email: str = "", weight, reason: str, request=None) -> CreditEvent:
    """A staff adjustment of the score by ``weight`` points (negative lifts it), with a reason; audited."""
    reason = (reason or "").strip()
    if not reason:
        raise ServiceError(_("Give the reason for the adjustment."), code="reason_required")
    try:
        points = Decimal(str(weight)).quantize(Decimal("0.01"))
    except ArithmeticError:
        raise ServiceError(_("Enter the points as a number, e.g. 2 or -1.5."), code="weight_invalid") from None
    if not points.is_finite() or abs(points) >= 1000:
        raise ServiceError(_("Enter the points as a number, e.g. 2 or -1.5."), code="weight_invalid")
    with transaction.atomic():
        event = credit_event_record(
            user=user,
            email=email,
            kind=CreditEvent.Kind.STAFF_ADJUSTMENT,
            detail=reason,
            reference=f"staff:{by.pk}",
            weight=points,
        )
        audit_record(
            action="credit_adjust",
            outcome=AuditEvent.Outcome.ALLOWED,
            actor=by,
            target=getattr(user, "email", "") or email,
            request=request,
            detail=f"{points:+} points: {reason}",
        )
    return event
