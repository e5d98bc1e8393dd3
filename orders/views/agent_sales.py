"""The agent centre's pages that read orders: overview, downline, reports and their CSV export,
and "send again" for a callback (orders.services.callbacks).

They read orders (the sales reports in ``orders.selectors.reports``), so they live here, above
``agents``; ``marketplace/urls.py`` mounts them under the ``agents`` namespace beside the
agent centre's own pages (same URLs and names as before).
"""

import csv

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import Http404, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from agents import selectors
from agents.models import Agent
from agents.services import agents as services
from agents.views.dashboard import agent_public_name, agent_required
from compliance.services import audit_denied

from ..models import ApiCallback
from ..selectors import reports
from ..services import callbacks

DOWNLINE_PAGE_SIZE = 50


# --- overview ------------------------------------------------------------------------------


@agent_required
@require_GET
def home(request):
    agent = Agent.objects.select_related("user", "level", "upline__user", "upline__storefront").get(pk=request.agent.pk)
    week = reports.period_last(7)
    daily = reports.report_daily(root=agent, earner=agent, period=week)
    week_total = reports.Row()
    for row in daily:
        week_total.add(row)
    context = {
        "section": "home",
        "agent": agent,
        "upline_name": agent_public_name(agent.upline),
        "balances": reports.balances(user=agent.user),
        "today": daily[-1],
        "week": week_total,
        "direct_count": Agent.objects.filter(upline=agent).count(),
        "team_count": selectors.agent_subtree(agent=agent).count(),
        "commissions": reports.latest_commissions(agent=agent),
        "max_depth": services.max_depth(),
        "refund_window_days": _refund_window_days(),
    }
    return render(request, "agents/home.html", context)


def _refund_window_days() -> int:
    return int(settings.REFUND_WINDOW_DAYS)


# --- downline ------------------------------------------------------------------------------


@agent_required
@require_GET
def downline(request):
    agent = request.agent
    query = (request.GET.get("q") or "").strip()[:60]
    qs = reports.downline_page(agent=agent)
    if query:
        qs = qs.filter(Q(user__email__icontains=query) | Q(user__username__icontains=query))
    page = Paginator(qs, DOWNLINE_PAGE_SIZE).get_page(request.GET.get("page"))
    sales = reports.downline_sales(agent=agent, since_days=30)
    rows = [{"agent": d, "sales": sales.get(d.pk) or reports.DownlineRow(agent=d)} for d in page.object_list]
    context = {"section": "downline", "agent": agent, "page": page, "rows": rows, "search": query}
    return render(request, "agents/downline.html", context)


@agent_required
@require_GET
def downline_detail(request, pk: int):
    agent = request.agent
    member = (
        Agent.objects.filter(pk=pk, upline=agent).select_related("user", "level").first()
        if isinstance(pk, int)
        else None
    )
    if member is None:  # someone else's agent: logged like agents.views' other refusals, then 404
        audit_denied(
            action="agents.downline_detail", request=request, target=f"agent:{pk}", detail="not a direct downline"
        )
        raise Http404("not found")
    period = reports.period_last(30)
    daily = reports.report_daily(root=member, earner=agent, period=period)
    totals = reports.Row()
    for row in daily:
        totals.add(row)
    context = {
        "section": "downline",
        "agent": agent,
        "member": member,
        "team_count": selectors.agent_subtree(agent=member).count(),
        "direct_count": Agent.objects.filter(upline=member).count(),
        "totals": totals,
        "daily": daily,
        "products": reports.report_products(root=member, earner=agent, period=period)[:10],
        "commissions": agent.commissions.filter(order__agent__path__startswith=member.path)
        .select_related("order")
        .order_by("-created_at", "-pk")[:10],
        "chart": {
            "labels": [r.day.strftime("%m-%d") for r in daily],
            "revenue": [str(r.revenue) for r in daily],
            "earnings": [str(r.earnings) for r in daily],
        },
    }
    return render(request, "agents/downline_detail.html", context)


# --- reports -------------------------------------------------------------------------------


@agent_required
@require_GET
def reports_view(request):
    agent = request.agent
    period, error = reports.period_parse(request.GET)
    if error:
        messages.error(request, error)
    report = reports.sales_report(agent=agent, period=period)
    chart = {
        "days": {
            "labels": [r.day.strftime("%m-%d") for r in report.daily],
            "revenue": [str(r.revenue) for r in report.daily],
            "earnings": [str(r.earnings) for r in report.daily],
            "orders": [r.orders for r in report.daily],
        },
        "products": {
            "labels": [r.name for r in report.top_products],
            "revenue": [str(r.revenue) for r in report.top_products],
            "earnings": [str(r.earnings) for r in report.top_products],
        },
    }
    context = {
        "section": "reports",
        "agent": agent,
        "report": report,
        "period": period,
        "presets": reports.PRESETS,
        "chart": chart,
        "period_query": period.query(),
    }
    return render(request, "agents/reports.html", context)


@agent_required
@require_GET
def reports_sources(request):
    """推广效果: the agent's own sales by share source (posters now, coupons as they come), over a
    chosen period, with the CSV export (``kind=sources``)."""
    agent = request.agent
    period, error = reports.period_parse(request.GET)
    if error:
        messages.error(request, error)
    rows = reports.report_sources(agent=agent, period=period)
    totals, shared = reports.Row(), reports.Row()
    for row in rows:
        totals.add(row)
        if row.source:
            shared.add(row)
    context = {
        "section": "reports",
        "agent": agent,
        "rows": rows,
        "totals": totals,
        "shared": shared,
        "period": period,
        "presets": reports.PRESETS,
        "period_query": period.query(),
    }
    return render(request, "agents/reports_sources.html", context)


CSV_KINDS = ("daily", "products", "downline", "sources")


@agent_required
@require_GET
@never_cache  # the agent's figures: no shared or browser cache keeps a copy
def reports_csv(request):
    agent = request.agent
    kind = request.GET.get("kind", "daily")
    if kind not in CSV_KINDS:
        return HttpResponseBadRequest(_("Unknown export: choose daily, products, downline or sources."))
    period, error = reports.period_parse(request.GET)
    if error:
        return HttpResponseBadRequest(error)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    filename = f"agent-{kind}-{period.start:%Y%m%d}-{period.end:%Y%m%d}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.write("\ufeff")  # so Excel reads UTF-8 (Chinese product names)
    writer = csv.writer(response)
    tail = [
        _("Orders"),
        _("Codes"),
        _("Gross (CNY)"),
        _("Coupon discount (CNY)"),
        _("Revenue (CNY)"),
        _("My earnings (CNY)"),
        _("Margin (%)"),
    ]

    def numbers(row):
        margin = "" if row.margin is None else row.margin
        return [row.orders, row.codes, row.gross, row.discount, row.revenue, row.earnings, margin]

    if kind == "daily":
        writer.writerow([_("Date"), *tail])
        for row in reports.report_daily(root=agent, earner=agent, period=period):
            writer.writerow([row.day.isoformat(), *numbers(row)])
    elif kind == "products":
        writer.writerow([_("Product"), *tail])
        for row in reports.report_products(root=agent, earner=agent, period=period):
            writer.writerow([_csv_text(row.name), *numbers(row)])
    elif kind == "sources":
        writer.writerow([_("Source"), _("Source code"), *tail])
        for row in reports.report_sources(agent=agent, period=period):
            writer.writerow([_csv_text(row.label), _csv_text(row.source), *numbers(row)])
    else:
        writer.writerow([_("Downline agent"), _("Level"), _("Agents in their team"), *tail])
        for row in reports.report_downline(agent=agent, period=period):
            if row.agent is None:
                writer.writerow([_("My own sales"), "", "", *numbers(row)])
            else:
                writer.writerow(
                    [_csv_text(row.agent.user.email), _csv_text(row.agent.level.name), row.team_size, *numbers(row)]
                )
    return response


def _csv_text(value: str) -> str:
    """Text cells that a spreadsheet would run as a formula are prefixed with a quote."""
    value = str(value)
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


# --- callbacks -----------------------------------------------------------------------------


@agent_required
@require_POST
def api_callback_resend(request, callback_id: int):
    try:
        callbacks.callback_resend(callback_id=callback_id, agent=request.agent)
    except ApiCallback.DoesNotExist:
        audit_denied(
            action="agents.api_callback_resend",
            request=request,
            target=f"apicallback:{callback_id}",
            detail=f"agent {request.agent.pk}: not its own API key/callback",
        )
        raise Http404("not found") from None
    messages.success(request, _("The callback is being sent again."))
    return redirect("agents:api_keys")
