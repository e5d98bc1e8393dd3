"""Writes for agents: the tree and downline pricing. Keyword-only, ``<entity>_<verb>``."""

from datetime import datetime
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Max, Q, Value
from django.db.models.functions import Concat, Length, Substr
from django.utils import timezone
from django.utils.translation import gettext as _

from catalog.models import Category, Product
from marketplace.errors import Forbidden, ServiceError
from marketplace.money import quantize
from marketplace.permissions import staff_has_perm
from marketplace.randomness import random_chars

from ..models import Agent, AgentLevel, AgentMove, Invitation, LevelPrice, Markup, PriceKind


class AgentError(ServiceError):
    """A request about agents refused as asked (a price, a markup, an invitation, a move, a
    storefront, an API key); the message is shown as it is. ``field`` names the form field it
    belongs to, when there is one, so a page can show it next to that field."""

    code = "agent_refused"

    def __init__(self, message=None, *, field: str | None = None, **kwargs):
        super().__init__(message, **kwargs)
        self.field = field


def max_depth() -> int:
    return int(getattr(settings, "AGENTS_MAX_DEPTH", 5))


def _amount(value, *, kind: str, field: str = "value") -> Decimal:
    """A non-negative Decimal; fixed amounts to the fen, percentages to four places."""
    if isinstance(value, float):
        raise AgentError(_("Give the value as a decimal, not a float."), field=field)
    if kind not in PriceKind.values:
        raise AgentError(_("Unknown kind %(kind)s.") % {"kind": kind}, field="kind")
    try:
        amount = Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise AgentError(_("%(value)r is not a number.") % {"value": value}, field=field) from None
    if not amount.is_finite():
        raise AgentError(_("%(value)r is not a number.") % {"value": value}, field=field)
    if amount < 0:
        raise AgentError(_("Cannot be negative: no agent may buy below its upline's cost."), field=field)
    if kind == PriceKind.FIXED:
        if amount != quantize(amount):
            raise AgentError(_("A fixed amount has at most two decimal places (fen)."), field=field)
        return quantize(amount)
    if amount != amount.quantize(Decimal("0.0001")):
        raise AgentError(_("A percentage has at most four decimal places."), field=field)
    return amount


@transaction.atomic
def agent_create(
    *,
    user,
    level: AgentLevel,
    upline: Agent | None = None,
    actor=None,
    invitation: Invitation | None = None,
    reason: str = "",
) -> Agent:
    """Make ``user`` an agent of ``level`` under ``upline`` (None: directly under the platform).

    The joining is the first row of the agent's tree history (``AgentMove``): by whom
    (``actor``: staff in admin, or the user accepting an invitation) and through which invitation.
    """
    if Agent.objects.filter(user=user).exists():
        raise AgentError(_("This user is already an agent."), field="user")
    depth = 1 if upline is None else upline.depth + 1
    limit = max_depth()
    if depth > limit:
        raise AgentError(
            _("The agent tree is at most %(max)d levels deep; this agent would be at level %(depth)d.")
            % {"max": limit, "depth": depth},
            field="upline",
        )
    agent = Agent.objects.create(user=user, level=level, upline=upline, depth=depth, path="")
    agent.path = f"{upline.path if upline else '/'}{agent.pk}/"
    agent.save(update_fields=["path"])
    AgentMove.objects.create(
        agent=agent,
        from_upline=None,
        to_upline=upline,
        from_path="",
        to_path=agent.path,
        subtree_size=0,
        actor=actor if actor is not None and getattr(actor, "pk", None) else None,
        invitation=invitation,
        reason=(reason or ("joined by invitation" if invitation else "joined"))[:300],
    )
    return agent


@transaction.atomic
def markup_set(
    *,
    agent: Agent,
    kind: str,
    value: Decimal | int | str,
    product: Product | None = None,
    category: Category | None = None,
    downline_level: AgentLevel | None = None,
) -> Markup:
    """Set what ``agent``'s direct downline pays over ``agent``'s own cost.

    Scope follows from the target: a product, a category, or (neither) everything.
    Affects prices resolved from now on; placed orders keep their snapshot.
    """
    if product is not None and category is not None:
        raise AgentError(_("A markup is for one product, one category or everything, not both."))
    amount = _amount(value, kind=kind)
    if product is not None:
        scope = Markup.Scope.PRODUCT
    elif category is not None:
        scope = Markup.Scope.CATEGORY
    else:
        scope = Markup.Scope.ALL
    markup, _created = Markup.objects.select_for_update().update_or_create(
        agent=agent,
        scope=scope,
        downline_level=downline_level,
        product=product,  # at most one of the two is set (checked above)
        category=category,
        defaults={"kind": kind, "value": amount},
    )
    return markup


@transaction.atomic
def level_price_set(
    *,
    level: AgentLevel,
    kind: str,
    value: Decimal | int | str,
    product: Product | None = None,
    category: Category | None = None,
) -> LevelPrice:
    """The platform price for agents of ``level``: per product, or a rule per category."""
    if (product is None) == (category is None):
        raise AgentError(_("A level price is for exactly one product or one category."))
    amount = _amount(value, kind=kind)
    price, _created = LevelPrice.objects.select_for_update().update_or_create(
        level=level, product=product, category=category, defaults={"kind": kind, "value": amount}
    )
    return price


@transaction.atomic
def markup_delete(*, agent: Agent, markup_id: int) -> bool:
    """Remove one of ``agent``'s markups (the next less specific one applies from now on).

    Only the agent's own: another agent's markup id is ``Markup.DoesNotExist``.
    """
    markup = Markup.objects.select_for_update().get(pk=markup_id, agent=agent)
    markup.delete()
    return True


# --- invitations and the tree ----------------------------------------------------------

# No 0/O, 1/I/L: codes are read aloud and typed on phones. 12 of 31 symbols: about 59 bits.
INVITATION_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
INVITATION_CODE_LENGTH = 12
INVITATION_MAX_USES = 1000


def invitation_code_normalise(code: str) -> str:
    """What a person typed (spaces, dashes, lower case) as the stored code."""
    return "".join(ch for ch in str(code or "").upper() if ch.isalnum())[:16]


def invitation_levels(*, upline: Agent):
    """The levels ``upline`` may invite at: its own rank or below.

    An agent cannot hand out a level better than its own: levels are the platform's grading
    of agents, and a downline of a higher level than its upline would turn the grading upside
    down (staff can still set any level in admin).
    """
    return AgentLevel.objects.filter(rank__lte=upline.level.rank).order_by("-rank")


def invitation_check(*, upline: Agent, level: AgentLevel, max_uses, expires_at: datetime | None) -> int:
    """Refuse an invitation ``upline`` may not send; returns the number of uses as an int."""
    try:
        max_uses = int(max_uses)
    except (TypeError, ValueError):
        raise AgentError(_("Enter a whole number of uses."), field="max_uses") from None
    if not 1 <= max_uses <= INVITATION_MAX_USES:
        raise AgentError(
            _("An invitation can be used 1 to %(max)d times.") % {"max": INVITATION_MAX_USES}, field="max_uses"
        )
    if expires_at is not None and expires_at <= timezone.now():
        raise AgentError(_("The expiry must be in the future."), field="expires_at")
    if level.rank > upline.level.rank:
        raise AgentError(_("You can invite agents at your own level or below."), field="level")
    if upline.depth + 1 > max_depth():
        raise AgentError(
            _("Your tier is the deepest the agent tree allows: you cannot invite a downline."), field="upline"
        )
    return max_uses


@transaction.atomic
def invitation_create(
    *, upline: Agent, level: AgentLevel, max_uses: int = 1, expires_at: datetime | None = None
) -> Invitation:
    """A new invitation of ``upline`` for ``level``: a random, unguessable code (and link)."""
    max_uses = invitation_check(upline=upline, level=level, max_uses=max_uses, expires_at=expires_at)
    for _attempt in range(5):
        code = random_chars(INVITATION_CODE_LENGTH, INVITATION_ALPHABET)
        try:
            with transaction.atomic():
                return Invitation.objects.create(
                    code=code, upline=upline, level=level, max_uses=max_uses, expires_at=expires_at
                )
        except IntegrityError:  # a collision of 59 random bits: practically never
            continue
    raise RuntimeError("could not find a free invitation code")


@transaction.atomic
def invitation_revoke(*, invitation: Invitation) -> Invitation:
    """Stop ``invitation`` from being used again (agents who joined with it stay). Idempotent."""
    invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
    if invitation.revoked_at is None:
        invitation.revoked_at = timezone.now()
        invitation.save(update_fields=["revoked_at"])
    return invitation


def invitation_problem(invitation: Invitation, *, now=None) -> str:
    """Why ``invitation`` cannot be used now (a message for the person), or ``""``."""
    now = now or timezone.now()
    if invitation.revoked_at is not None:
        return _("This invitation was withdrawn by the agent who sent it.")
    if invitation.expires_at is not None and invitation.expires_at <= now:
        return _("This invitation has expired. Ask the agent who invited you for a new one.")
    if invitation.uses >= invitation.max_uses:
        return _("This invitation has already been used. Ask the agent who invited you for a new one.")
    if invitation.upline.depth + 1 > max_depth():
        return _("This agent cannot take on a downline any more. Ask them for another way to join.")
    return ""


def invitation_accept(*, code: str, user) -> Agent:
    """Make ``user`` an agent under the invitation's upline, at the invitation's level.

    The invitation row is locked while its use is counted, so concurrent accepts of a
    one-use invitation make exactly one agent (the others are told it was used).
    """
    normalised = invitation_code_normalise(code)
    if not normalised:
        raise AgentError(_("Enter an invitation code."), field="code")
    try:
        with transaction.atomic():
            try:
                invitation = (
                    Invitation.objects.select_for_update(of=("self",))
                    .select_related("upline", "level")
                    .get(code=normalised)
                )
            except Invitation.DoesNotExist:
                message = _("There is no invitation with this code. Check it and try again.")
                raise AgentError(message, field="code") from None
            if Agent.objects.filter(user=user).exists():
                raise AgentError(_("You are already an agent."), field="user")
            problem = invitation_problem(invitation)
            if problem:
                raise AgentError(problem, field="code")
            agent = agent_create(
                user=user, level=invitation.level, upline=invitation.upline, actor=user, invitation=invitation
            )
            Invitation.objects.filter(pk=invitation.pk).update(uses=F("uses") + 1)
            return agent
    except IntegrityError:
        # The same user accepting twice at once: the one-agent-per-user constraint decided.
        if Agent.objects.filter(user=user).exists():
            raise AgentError(_("You are already an agent."), field="user") from None
        raise


@transaction.atomic
def agent_move(*, agent: Agent, new_upline: Agent | None, actor, reason: str) -> AgentMove:
    """Staff: put ``agent`` (and its whole subtree with it) under ``new_upline`` (None: the platform).

    One transaction rewrites the path and depth of every agent of the subtree and records the
    move. Refused: moving an agent under itself or its own subtree (a cycle), and a move that
    would push any agent of the subtree below ``AGENTS_MAX_DEPTH``. Prices follow the new
    chain for future orders; placed orders keep their snapshot and commissions.
    """
    if not staff_has_perm(actor, "agents.change_agent"):  # what the agent admin's move page requires
        raise Forbidden(_("Only staff can move agents in the tree."))
    reason = (reason or "").strip()
    if not reason:
        raise AgentError(_("Give a reason for the move: it is kept in the tree history."), field="reason")
    # Lock the subtree and the new upline's chain, in id order (no deadlock with another move).
    lock_q = Q(path__startswith=agent.path)
    if new_upline is not None:
        lock_q |= Q(pk__in=new_upline.chain_ids)
    list(Agent.objects.filter(lock_q).order_by("pk").select_for_update().values_list("pk", flat=True))
    agent = Agent.objects.get(pk=agent.pk)
    if new_upline is not None:
        new_upline = Agent.objects.get(pk=new_upline.pk)
        if new_upline.pk == agent.pk or new_upline.path.startswith(agent.path):
            raise AgentError(_("An agent cannot be moved under itself or its own downline."), field="new_upline")
    if (new_upline.pk if new_upline else None) == agent.upline_id:
        raise AgentError(_("The agent is already under this upline."), field="new_upline")

    old_prefix = agent.path
    new_prefix = f"{new_upline.path if new_upline else '/'}{agent.pk}/"
    new_depth = 1 if new_upline is None else new_upline.depth + 1
    delta = new_depth - agent.depth
    subtree = Agent.objects.filter(path__startswith=old_prefix)
    stats = subtree.aggregate(deepest=Max("depth"), longest=Max(Length("path")))
    limit = max_depth()
    if stats["deepest"] + delta > limit:
        raise AgentError(
            _(
                "The agent tree is at most %(max)d levels deep; this move would put part of this agent's "
                "downline at level %(depth)d."
            )
            % {"max": limit, "depth": stats["deepest"] + delta},
            field="new_upline",
        )
    if stats["longest"] - len(old_prefix) + len(new_prefix) > Agent._meta.get_field("path").max_length:
        raise AgentError(_("This move would make the tree path too long."), field="new_upline")
    descendants = subtree.exclude(pk=agent.pk)
    size = descendants.count()
    # The agent first (its upline, depth and path change together: the depth CHECK holds),
    # then every agent below it, by replacing the old path prefix.
    Agent.objects.filter(pk=agent.pk).update(upline=new_upline, depth=new_depth, path=new_prefix)
    descendants.filter(path__startswith=old_prefix).update(
        path=Concat(Value(new_prefix), Substr("path", len(old_prefix) + 1)), depth=F("depth") + delta
    )
    return AgentMove.objects.create(
        agent=agent,
        from_upline_id=agent.upline_id,
        to_upline=new_upline,
        from_path=old_prefix,
        to_path=new_prefix,
        subtree_size=size,
        actor=actor,
        reason=reason[:300],
    )
