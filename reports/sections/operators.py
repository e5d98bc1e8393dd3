"""The half-yearly operator report (网络交易监督管理办法 第二十五条: the platform reports to the
market regulator, every half year, the identity information of the operators selling on it):
one row per storefront operator (agent with a storefront), with its sales in the period."""

from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import pgettext

from agents.models import OperatorIdentity
from marketplace.money import quantize
from orders.selectors.operators import operators_report

from ..periods import Period
from .table import Column, Table, Unit


def _day(value):
    return timezone.localdate(value) if value is not None else None


def operators(period: Period) -> Table:
    """Every storefront that existed by the period's end, open or closed, with its operator's
    verified identity (``orders.selectors.operators.operators_report``) and its sales."""
    lines = operators_report(start=period.start_at, end=period.end_at)
    rows = []
    for line in lines:
        who = line.identity
        business = who.operator_type == OperatorIdentity.Kind.BUSINESS
        if not who.operator_type:
            kind = _("Not submitted")
        elif business:
            kind = _("Registered business")
        elif who.small_sales_declared:  # 电子商务法 第十条: no registration for sporadic small sales
            kind = _("Individual (sporadic small sales)")
        else:
            kind = _("Individual")
        shop_status = pgettext("storefront", "Open") if who.is_open else pgettext("storefront", "Closed")
        rows.append(
            [
                kind,
                who.name,
                # The FULL ID number or unified social credit code, as the regulator needs it: this
                # report is generated for, and downloaded only by, staff holding the dedicated
                # permission, each download audited (reports.admin); never shown on a page.
                who.number,
                who.legal_name if business else "",
                who.address,
                who.phone,
                who.status_label or _("Not submitted"),
                _day(who.verified_at),
                f"{who.storefront_name} ({shop_status})",
                settings.SITE_URL + who.storefront_path,
                _day(who.opened_at),
                line.sales.orders,
                quantize(line.sales.amount),
                _("Yes") if line.over_small_sales_limit else "",
            ]
        )
    orders = sum(line.sales.orders for line in lines)
    gross = quantize(sum((line.sales.amount for line in lines), quantize(0)))
    flagged = sum(1 for line in lines if line.over_small_sales_limit)
    return Table(
        title=_("Storefront operators"),
        columns=[
            # Widths as millimetres of the landscape A4 page: an 18-character number fits one line.
            Column(_("Operator type"), width=17),
            Column(_("Name or company"), width=26),
            Column(_("ID number or unified social credit code"), width=31),
            Column(_("Legal representative"), width=15),
            Column(_("Address"), width=22),
            Column(_("Phone"), width=19),
            Column(_("Verification"), width=15),
            Column(_("Verified on"), Unit.DATE, 16),
            Column(_("Storefront"), width=19),
            Column(_("Storefront address"), width=24),
            Column(_("Opened on"), Unit.DATE, 16),
            Column(_("Orders paid in the period"), Unit.COUNT, 12),
            Column(_("Sales in the period (CNY)"), Unit.MONEY, 16),
            Column(_("Individual over 100,000 yuan this year"), width=13),
        ],
        rows=rows,
        totals=[_("Total"), *[""] * 10, orders, gross, str(flagged) if flagged else ""],
        note=_(
            "Storefronts opened by the period's last day, open or since closed, with their operator's identity "
            "as verified by staff (Measures for the Supervision and Administration of Online Transactions, "
            "article 25). Sales are the storefront's orders paid in the period. The last column marks the "
            "individuals whose storefront sales this calendar year, up to the period's end, exceed 100,000 "
            "yuan, the limit of sporadic small-value sales (article 8, paragraph 3)."
        ),
        summary={"operators": str(len(rows)), "orders": str(orders), "gross": str(gross), "over_limit": str(flagged)},
    )
