"""Writes for agents: the tree and downline pricing. Keyword-only, ``<entity>_<verb>``."""

from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from catalog.models import Category, Product
from marketplace.money import quantize

from .models import Agent, AgentLevel, LevelPrice, Markup, PriceKind


def max_depth() -> int:
    return int(getattr(settings, "AGENTS_MAX_DEPTH", 5))


def _amount(value, *, kind: str, field: str = "value") -> Decimal:
    """A non-negative Decimal; fixed amounts to the fen, percentages to four places."""
    if isinstance(value, float):
        raise ValidationError({field: _("Give the value as a decimal, not a float.")})
    if kind not in PriceKind.values:
        raise ValidationError({"kind": _("Unknown kind %(kind)s.") % {"kind": kind}})
    try:
        amount = Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise ValidationError({field: _("%(value)r is not a number.") % {"value": value}}) from None
    if not amount.is_finite():
        raise ValidationError({field: _("%(value)r is not a number.") % {"value": value}})
    if amount < 0:
        raise ValidationError({field: _("Cannot be negative: no agent may buy below its upline's cost.")})
    if kind == PriceKind.FIXED:
        if amount != quantize(amount):
            raise ValidationError({field: _("A fixed amount has at most two decimal places (fen).")})
        return quantize(amount)
    if amount != amount.quantize(Decimal("0.0001")):
        raise ValidationError({field: _("A percentage has at most four decimal places.")})
    return amount


@transaction.atomic
def agent_create(*, user, level: AgentLevel, upline: Agent | None = None) -> Agent:
    """Make ``user`` an agent of ``level`` under ``upline`` (None: directly under the platform)."""
    if Agent.objects.filter(user=user).exists():
        raise ValidationError({"user": _("This user is already an agent.")})
    depth = 1 if upline is None else upline.depth + 1
    limit = max_depth()
    if depth > limit:
        raise ValidationError(
            {
                "upline": _("The agent tree is at most %(max)d levels deep; this agent would be at level %(depth)d.")
                % {"max": limit, "depth": depth}
            }
        )
    agent = Agent.objects.create(user=user, level=level, upline=upline, depth=depth, path="")
    agent.path = f"{upline.path if upline else '/'}{agent.pk}/"
    agent.save(update_fields=["path"])
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
        raise ValidationError(_("A markup is for one product, one category or everything, not both."))
    amount = _amount(value, kind=kind)
    if product is not None:
        scope, target = Markup.Scope.PRODUCT, {"product": product, "category": None}
    elif category is not None:
        scope, target = Markup.Scope.CATEGORY, {"product": None, "category": category}
    else:
        scope, target = Markup.Scope.ALL, {"product": None, "category": None}
    markup, _created = Markup.objects.select_for_update().update_or_create(
        agent=agent, scope=scope, downline_level=downline_level, **target, defaults={"kind": kind, "value": amount}
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
        raise ValidationError(_("A level price is for exactly one product or one category."))
    amount = _amount(value, kind=kind)
    price, _created = LevelPrice.objects.select_for_update().update_or_create(
        level=level, product=product, category=category, defaults={"kind": kind, "value": amount}
    )
    return price
