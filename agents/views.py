"""The agent's dashboard: overview, prices and markups, downline, invitations, reports.

Everything is keyed on ``request.user.agent``; an id of anything outside the agent's own data
or direct downline is a 404, logged with ``audit_denied``. Views parse input, call one service
or selector and render.
"""

import csv
import functools
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import Http404, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from catalog.models import Category, Product
from compliance.audit import audit_denied

from . import reports, selectors, services
from .models import Agent, AgentLevel, Invitation, Markup, PriceKind

PRICING_PAGE_SIZE = 50
DOWNLINE_PAGE_SIZE = 50
INVITATION_VALIDITY_DAYS = (1, 7, 30, 90)


# --- helpers -----------------------------------------------------------------------------


def _agent_of(user) -> Agent | None:
    try:
        return user.agent
    except Agent.DoesNotExist:
        return None


def agent_required(view):
    """Login required; a user who is not an agent gets the "become an agent" page."""

    @functools.wraps(view)
    @login_required
    def wrapper(request, *args, **kwargs):
        agent = _agent_of(request.user)
        if agent is None:
            return render(request, "agents/become_agent.html", {"code": request.GET.get("code", "")})
        request.agent = agent
        return view(request, *args, **kwargs)

    return wrapper


def _deny(request, *, action: str, target: str, detail: str = ""):
    """Log a refused look at something outside the agent's own data, then 404."""
    audit_denied(action=action, request=request, target=target, detail=detail)
    raise Http404("not found")


def _int(value) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def mask_email(email: str) -> str:
    local, _at, domain = (email or "").partition("@")
    if not domain:
        return (local[:2] + "***") if local else "***"
    return f"{local[:2]}***@{domain}"


def agent_public_name(agent: Agent | None) -> str:
    """How an upline is shown to the agents below it: its shop's name, else a masked email."""
    if agent is None:
        return _("The platform")
    try:
        storefront = agent.storefront
    except ObjectDoesNotExist:
        storefront = None
    if storefront is not None and storefront.name:
        return storefront.name
    return mask_email(agent.user.email or agent.user.username)


def _first_error(exc: ValidationError) -> str:
    if hasattr(exc, "message_dict"):
        return " ".join(m for msgs in exc.message_dict.values() for m in msgs)
    return " ".join(exc.messages)


def _safe_next(request, fallback: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return target
    return fallback


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


# --- prices and markups ---------------------------------------------------------------------


def _pricing_products(query: str):
    qs = Product.objects.filter(is_active=True, category__is_active=True).select_related("category")
    if query:
        qs = qs.filter(
            Q(name__icontains=query) | Q(category__name__icontains=query) | Q(category__parent__name__icontains=query)
        )
    return qs.order_by("category__sort_order", "category__name", "sort_order", "name", "pk")


@agent_required
@require_GET
def pricing(request):
    agent = request.agent
    query = (request.GET.get("q") or "").strip()[:60]
    page = Paginator(_pricing_products(query), PRICING_PAGE_SIZE).get_page(request.GET.get("page"))
    products = list(page.object_list)
    levels = list(AgentLevel.objects.order_by("rank"))
    own, by_level = selectors.downline_costs(agent=agent, products=products, level_ids=[lv.pk for lv in levels])
    rows = []
    for p in products:
        cost = own[p.pk]
        cells = [{"level": lv, "pays": by_level[lv.pk][p.pk], "margin": by_level[lv.pk][p.pk] - cost} for lv in levels]
        rows.append({"product": p, "cost": cost, "cells": cells})

    markups = list(
        agent.markups.select_related("product", "category__parent", "downline_level").order_by(
            "scope", "product__name", "category__name", "downline_level__rank", "pk"
        )
    )
    form = {"scope": "all", "kind": PriceKind.PERCENT, "value": "", "level": "", "product": "", "category": ""}
    edit_id = _int(request.GET.get("edit"))
    if request.GET.get("edit") is not None:
        mine = {m.pk: m for m in markups}
        if edit_id not in mine:
            _deny(request, action="agents.markup_edit", target=f"markup:{request.GET.get('edit')}"[:120])
        m = mine[edit_id]
        form = {
            "scope": m.scope,
            "kind": m.kind,
            "value": m.value.normalize() if m.kind == PriceKind.PERCENT else m.value.quantize(Decimal("0.01")),
            "level": m.downline_level_id or "",
            "product": m.product_id or "",
            "category": m.category_id or "",
        }
    elif _int(request.GET.get("product")):
        form.update(scope="product", product=_int(request.GET.get("product")))
    product_choices = {p.pk: p for p in products}
    if form["product"] and form["product"] not in product_choices:
        extra = Product.objects.filter(pk=form["product"]).first()
        if extra is not None:
            product_choices[extra.pk] = extra
    context = {
        "section": "pricing",
        "agent": agent,
        "page": page,
        "rows": rows,
        "levels": levels,
        "search": query,
        "markups": markups,
        "form": form,
        "editing": edit_id if request.GET.get("edit") is not None else None,
        "product_choices": list(product_choices.values()),
        "categories": Category.objects.filter(is_active=True)
        .select_related("parent")
        .order_by("parent__sort_order", "sort_order", "name"),
        "kinds": PriceKind.choices,
        "scopes": Markup.Scope.choices,
    }
    return render(request, "agents/pricing.html", context)


@agent_required
@require_POST
def markups(request):
    """Set (add or edit) or delete one of the agent's markups, then back to the prices page."""
    agent = request.agent
    back = _safe_next(request, reverse("agents:pricing"))
    action = request.POST.get("action", "set")
    if action == "delete":
        markup_id = _int(request.POST.get("markup"))
        try:
            services.markup_delete(agent=agent, markup_id=markup_id or 0)
        except Markup.DoesNotExist:
            _deny(request, action="agents.markup_delete", target=f"markup:{request.POST.get('markup')}"[:120])
        messages.success(request, _("Markup deleted. Orders placed from now on use the next rule that applies."))
        return redirect(back)
    if action != "set":
        return HttpResponseBadRequest("unknown action")

    scope = request.POST.get("scope") or Markup.Scope.ALL
    kind = request.POST.get("kind") or ""
    value = (request.POST.get("value") or "").strip().replace("¥", "").replace("%", "").strip()
    target: dict = {}
    error = ""
    if scope == Markup.Scope.PRODUCT:
        product = Product.objects.filter(pk=_int(request.POST.get("product")) or 0).first()
        if product is None:
            error = _("Choose the product this markup is for.")
        target["product"] = product
    elif scope == Markup.Scope.CATEGORY:
        category = Category.objects.filter(pk=_int(request.POST.get("category")) or 0).first()
        if category is None:
            error = _("Choose the category this markup is for.")
        target["category"] = category
    elif scope != Markup.Scope.ALL:
        error = _("Choose what the markup applies to.")
    level = None
    if request.POST.get("level"):
        level = AgentLevel.objects.filter(pk=_int(request.POST.get("level")) or 0).first()
        if level is None:
            error = error or _("Choose a downline level, or any level.")
    if kind not in PriceKind.values:
        error = error or _("Choose a fixed amount or a percentage.")
    if not value:
        error = error or _("Enter the markup: an amount in yuan or a percentage.")
    if not error:
        try:
            services.markup_set(agent=agent, kind=kind, value=value, downline_level=level, **target)
        except ValidationError as exc:
            error = _first_error(exc)
    if error:
        messages.error(request, error)
        return redirect(back + "#markups")
    messages.success(
        request, _("Markup saved. It applies to orders placed from now on; placed orders keep their prices.")
    )
    return redirect(back)


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
    if member is None:
        _deny(request, action="agents.downline_detail", target=f"agent:{pk}", detail="not a direct downline")
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


# --- invitations ---------------------------------------------------------------------------


def _invitation_status(inv: Invitation, now) -> tuple[str, str]:
    if inv.revoked_at:
        return "revoked", _("Revoked")
    if inv.expires_at and inv.expires_at <= now:
        return "expired", _("Expired")
    if inv.uses >= inv.max_uses:
        return "used", _("Used up")
    return "active", _("Active")


@agent_required
@require_http_methods(["GET", "POST"])
def invitations(request):
    agent = Agent.objects.select_related("level").get(pk=request.agent.pk)
    levels = list(services.invitation_levels(upline=agent))
    can_invite = agent.depth < services.max_depth()
    form = {"level": levels[-1].pk if levels else "", "max_uses": 1, "valid_days": 7}
    if request.method == "POST":
        form = {
            "level": _int(request.POST.get("level")),
            "max_uses": (request.POST.get("max_uses") or "").strip(),
            "valid_days": _int(request.POST.get("valid_days")) or 0,
        }
        level = next((lv for lv in levels if lv.pk == form["level"]), None)
        error = ""
        if level is None:
            error = _("Choose a level at or below your own.")
        elif form["valid_days"] not in (0, *INVITATION_VALIDITY_DAYS):
            error = _("Choose how long the invitation stays valid.")
        if not error:
            expires = timezone.now() + timedelta(days=form["valid_days"]) if form["valid_days"] else None
            try:
                inv = services.invitation_create(
                    upline=agent, level=level, max_uses=form["max_uses"], expires_at=expires
                )
            except ValidationError as exc:
                error = _first_error(exc)
            else:
                messages.success(
                    request, _("Invitation %(code)s created: share its link or code.") % {"code": inv.code}
                )
                return redirect(reverse("agents:invitations") + f"#inv-{inv.pk}")
        messages.error(request, error)
    now = timezone.now()
    page = Paginator(agent.invitations.select_related("level").order_by("-id"), 30).get_page(request.GET.get("page"))
    rows = []
    for inv in page.object_list:
        status, label = _invitation_status(inv, now)
        link = request.build_absolute_uri(reverse("agents:join", args=[inv.code]))
        rows.append({"inv": inv, "status": status, "label": label, "link": link})
    context = {
        "section": "invitations",
        "agent": agent,
        "levels": levels,
        "form": form,
        "rows": rows,
        "page": page,
        "can_invite": can_invite,
        "max_depth": services.max_depth(),
        "validity_days": INVITATION_VALIDITY_DAYS,
    }
    return render(request, "agents/invitations.html", context)


@agent_required
@require_POST
def invitation_revoke(request, pk: int):
    invitation = Invitation.objects.filter(pk=pk, upline=request.agent).first()
    if invitation is None:
        _deny(request, action="agents.invitation_revoke", target=f"invitation:{pk}")
    services.invitation_revoke(invitation=invitation)
    messages.success(request, _("Invitation %(code)s revoked: it can no longer be used.") % {"code": invitation.code})
    return redirect("agents:invitations")


# --- joining -------------------------------------------------------------------------------


@require_GET
def join_code(request):
    """The "enter an invitation code" form's target: on to the invitation's page."""
    code = services.invitation_code_normalise(request.GET.get("code", ""))
    if not code:
        messages.error(request, _("Enter an invitation code."))
        return redirect("agents:home")
    return redirect("agents:join", code=code)


@require_http_methods(["GET", "POST"])
def join(request, code: str):
    """An invitation's page: who invites, at which level; accepting needs an account."""
    normalised = services.invitation_code_normalise(code)
    invitation = (
        Invitation.objects.select_related("level", "upline__user", "upline__level", "upline__storefront")
        .filter(code=normalised)
        .first()
    )
    if invitation is None:
        return render(request, "agents/join.html", {"invitation": None, "code": code[:16]}, status=404)
    login_url = reverse("account_login") + "?" + urlencode({"next": request.path})
    signup_url = reverse("account_signup") + "?" + urlencode({"next": request.path})
    if request.method == "POST":
        if not request.user.is_authenticated:
            return redirect(login_url)
        try:
            services.invitation_accept(code=normalised, user=request.user)
        except ValidationError as exc:
            messages.error(request, _first_error(exc))
            return redirect("agents:join", code=normalised)
        messages.success(request, _("Welcome! You are now an agent. Here is your agent centre."))
        return redirect("agents:home")
    is_agent = request.user.is_authenticated and _agent_of(request.user) is not None
    context = {
        "invitation": invitation,
        "inviter": agent_public_name(invitation.upline),
        "problem": services.invitation_problem(invitation),
        "is_agent": is_agent,
        "login_url": login_url,
        "signup_url": signup_url,
    }
    return render(request, "agents/join.html", context)


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


CSV_KINDS = ("daily", "products", "downline")


@agent_required
@require_GET
@never_cache  # the agent's figures: no shared or browser cache keeps a copy
def reports_csv(request):
    agent = request.agent
    kind = request.GET.get("kind", "daily")
    if kind not in CSV_KINDS:
        return HttpResponseBadRequest(_("Unknown export: choose daily, products or downline."))
    period, error = reports.period_parse(request.GET)
    if error:
        return HttpResponseBadRequest(error)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    filename = f"agent-{kind}-{period.start:%Y%m%d}-{period.end:%Y%m%d}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.write("\ufeff")  # so Excel reads UTF-8 (Chinese product names)
    writer = csv.writer(response)
    tail = [_("Orders"), _("Codes"), _("Revenue (CNY)"), _("My earnings (CNY)"), _("Margin (%)")]

    def numbers(row):
        return [row.orders, row.codes, row.revenue, row.earnings, "" if row.margin is None else row.margin]

    if kind == "daily":
        writer.writerow([_("Date"), *tail])
        for row in reports.report_daily(root=agent, earner=agent, period=period):
            writer.writerow([row.day.isoformat(), *numbers(row)])
    elif kind == "products":
        writer.writerow([_("Product"), *tail])
        for row in reports.report_products(root=agent, earner=agent, period=period):
            writer.writerow([_csv_text(row.name), *numbers(row)])
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
