"""The half-yearly operator report (网络交易监督管理办法 第二十五条: the platform reports to the
market regulator, every half year, the identity information of the operators selling on it):
one row per storefront operator (agent with a storefront), with its sales in the period."""

from decimal import Decimal

from django.db.models import Count, Sum
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import pgettext

from accounts.models import user_display
from agents.models import Storefront
from marketplace.money import quantize
from payments.models import Payment

from ..periods import Period
from .table import Column, Table, Unit


def operators(period: Period) -> Table:
    """Every storefront that existed by the period's end, open or closed, with its operator."""
    sales = {
        row["order__agent"]: row
        for row in Payment.objects.filter(
            order__agent__isnull=False,
            status=Payment.Status.SUCCEEDED,
            created_at__gte=period.start_at,
            created_at__lt=period.end_at,
        )
        .values("order__agent")
        .annotate(n=Count("order", distinct=True), gross=Sum("amount"))
    }
    storefronts = (
        Storefront.objects.filter(created_at__lt=period.end_at)
        .select_related("agent__user", "agent__level")
        .order_by("created_at", "pk")
    )
    rows = []
    for shop in storefronts:
        agent = shop.agent
        sold = sales.get(agent.pk, {"n": 0, "gross": Decimal(0)})
        rows.append(
            [
                # The verified operator identity (name or company, ID or unified social credit code
                # masked, address, contact, the date it was verified) is collected when a storefront
                # opens (issue 14, another branch); its columns are added here once it exists.
                user_display(agent.user),
                agent.level.name,
                shop.name,
                f"/s/{shop.slug}/",
                timezone.localdate(shop.created_at),
                pgettext("storefront", "Open") if shop.is_open else pgettext("storefront", "Closed"),
                sold["n"],
                quantize(sold["gross"] or 0),
            ]
        )
    gross = quantize(sum((r[7] for r in rows), Decimal(0)))
    return Table(
        title=_("Storefront operators"),
        columns=[
            Column(_("Operator account"), width=28),
            Column(_("Agent level"), width=12),
            Column(_("Storefront name"), width=22),
            Column(_("Address"), width=16),
            Column(_("Opened on"), Unit.DATE, 15),
            Column(_("Status"), width=10),
            Column(_("Orders paid in the period"), Unit.COUNT, 13),
            Column(_("Sales in the period (CNY)"), Unit.MONEY, 15),
        ],
        rows=rows,
        totals=[_("Total"), "", "", "", "", "", sum(r[6] for r in rows), gross],
        note=_(
            "Storefronts opened by the period's last day, open or since closed; sales are orders paid in the period."
        ),
        summary={"operators": str(len(rows)), "gross": str(gross)},
    )
