"""The agent's dashboard: overview, prices and markups, downline, invitations, reports.

Everything is keyed on ``request.user.agent``; an id of anything outside the agent's own data
or direct downline is a 404, logged with ``audit_denied``. Views parse input, call one service
or selector and render.
"""

import functools
from datetime import timedelta
from decimal import Decimal

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ObjectDoesNotExist
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import Http404, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from catalog.models import Category, Product
from compliance.services import audit_denied

from .. import selectors
from ..models import Agent, AgentLevel, Invitation, Markup, PriceKind
from ..services import agents as services

PRICING_PAGE_SIZE = 50
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


def _safe_next(request, fallback: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return target
    return fallback


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
        except services.AgentError as exc:
            error = str(exc)
    if error:
        messages.error(request, error)
        return redirect(back + "#markups")
    messages.success(
        request, _("Markup saved. It applies to orders placed from now on; placed orders keep their prices.")
    )
    return redirect(back)


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
            except services.AgentError as exc:
                error = str(exc)
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
        # A refusal (AgentError): ServiceErrorMiddleware shows it back on this page.
        services.invitation_accept(code=normalised, user=request.user)
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
