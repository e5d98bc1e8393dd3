"""The monthly compliance report's real-name and minors' sections: the checks made with the
real-name provider in the period, and the game top-ups refused to minors
(国家新闻出版署《关于防止未成年人沉迷网络游戏的通知》, 国新出发〔2019〕34号, 第二条 实名注册 and
第三条 未成年人消费限制).

Counts and amounts only: never a name or an identity number (个人信息保护法 第六条, minimisation);
the rows are read with ``values`` of the columns counted, so nothing else is even loaded."""

import re
from decimal import Decimal, InvalidOperation

from django.db.models import Count
from django.utils.translation import gettext as _

from compliance.models import AuditEvent, RealNameVerification
from marketplace.money import quantize

from ..periods import Period
from .table import Column, Table, Unit

ZERO = Decimal("0.00")
# What orders.services.orders.order_place records when it refuses a minor (an AuditEvent).
MINORS_REFUSED = "minors.refused"
_DETAIL = re.compile(r"^(?P<code>\S+) amount=(?P<amount>[0-9.]+)")


def realname_checks(period: Period) -> Table:
    """The provider's answers in the period, by result and by whose check it was."""
    found = {
        (row["result"], row["source"]): row["n"]
        for row in RealNameVerification.objects.filter(checked_at__gte=period.start_at, checked_at__lt=period.end_at)
        .values("result", "source")
        .annotate(n=Count("id"))
        .order_by()
    }
    sources = RealNameVerification.Source.values
    rows = []
    for result, label in RealNameVerification.Result.choices:
        counts = [found.get((result, source), 0) for source in sources]
        rows.append([str(label), *counts, sum(counts)])
    results = RealNameVerification.Result.values
    by_source = [sum(found.get((result, source), 0) for result in results) for source in sources]
    total = sum(by_source)
    summary = {"checks": str(total)}
    summary.update({result: str(row[-1]) for result, row in zip(results, rows, strict=True)})
    summary.update({f"source_{source}": str(n) for source, n in zip(sources, by_source, strict=True)})
    return Table(
        title=_("Real-name checks"),
        columns=[
            Column(_("Provider's answer"), width=30),
            *(Column(str(label), Unit.COUNT, 14) for label in RealNameVerification.Source.labels),
            Column(_("Checks"), Unit.COUNT),
        ],
        rows=rows,
        totals=[_("Total"), *by_source, total],
        note=_(
            "Name and identity number checks answered by the real-name provider in the period, by whose check "
            "it was. A check the provider could not answer (an error or a time-out) is not recorded and not "
            "counted; an earlier match reused is not a new check. No name or number is printed."
        ),
        summary=summary,
    )


def _refusal(detail: str) -> tuple[str, Decimal] | None:
    match = _DETAIL.match(detail)
    if match is None:
        return None
    try:
        return match["code"], Decimal(match["amount"])
    except InvalidOperation:
        return None


def minors_refused(period: Period) -> Table:
    """Game top-ups refused to verified minors in the period, by the limit that refused them,
    with the amounts refused (the refused order itself is rolled back; its audit row remains)."""
    limits = [
        ("minor_no_purchase", _("Under 8: no game top-ups")),
        ("minor_per_payment", _("Over the limit per payment")),
        ("minor_per_month", _("Over the limit per calendar month")),
    ]
    counts: dict[str, int] = {code: 0 for code, _label in limits}
    amounts: dict[str, Decimal] = {code: ZERO for code, _label in limits}
    details = AuditEvent.objects.filter(
        action=MINORS_REFUSED, at__gte=period.start_at, at__lt=period.end_at
    ).values_list("detail", flat=True)
    unreadable = 0
    for detail in details:
        refusal = _refusal(detail)
        if refusal is None or refusal[0] not in counts:
            unreadable += 1  # counted in the total, never silently dropped
            continue
        code, amount = refusal
        counts[code] += 1
        amounts[code] += amount
    rows = [[str(label), counts[code], quantize(amounts[code])] for code, label in limits]
    if unreadable:
        rows.append([_("Other (limit not recorded)"), unreadable, None])
    total = sum(counts.values()) + unreadable
    total_amount = quantize(sum(amounts.values(), ZERO))
    summary = {"refused": str(total), "amount": str(total_amount)}
    for code, _label in limits:
        summary[code] = str(counts[code])
        summary[f"{code}_amount"] = str(quantize(amounts[code]))
    return Table(
        title=_("Game top-ups refused to minors"),
        columns=[
            Column(_("Limit that refused the order"), width=36),
            Column(_("Orders refused"), Unit.COUNT),
            Column(_("Amount refused (CNY)"), Unit.MONEY, 16),
        ],
        rows=rows,
        totals=[_("Total"), total, total_amount],
        note=_(
            "Orders for game top-ups refused because the verified buyer is a minor (National Press and "
            "Publication Administration notice of 2019, article 3: under 8 no purchase; 8 to under 16 at most "
            "50 yuan a payment and 200 a month; 16 to under 18 at most 100 and 400). The amount is the order's "
            "total that was refused."
        ),
        summary=summary,
    )
