"""The agent's storefront pages in the dashboard: open it, its settings and logo, retail prices.

Only agents reach these pages (anyone else: 404, logged). Every form carries the id of the
storefront it was drawn for; a post naming any other storefront (a tampered form, or a page
left open under another account) is refused with 404 and logged.
"""

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count, Q, Sum
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from catalog import selectors as catalog
from catalog.models import Category
from compliance.services import audit_denied

from ..models import Agent, PriceKind, RetailPrice, Storefront
from ..selectors import operator_identity_of
from ..services import storefronts
from ..services.agents import AgentError

PAGE_SIZE = 30


def _agent(request, action: str) -> Agent:
    agent = getattr(request.user, "agent", None)
    if agent is None:
        audit_denied(action=action, request=request, target="agent dashboard", detail="not an agent")
        raise Http404
    return agent


def _own_storefront(agent: Agent) -> Storefront | None:
    return Storefront.objects.filter(agent=agent).select_related("agent").defer("logo").first()


def _check_posted_storefront(request, storefront: Storefront, action: str) -> None:
    """The form's storefront id must be the agent's own."""
    posted = (request.POST.get("storefront") or "").strip()
    if posted != str(storefront.pk):
        audit_denied(
            action=action,
            request=request,
            target=f"storefront:{posted[:40] or '?'}",
            detail=f"agent {storefront.agent_id} posted a storefront that is not its own",
        )
        raise Http404


def _errors(exc: AgentError) -> dict[str, list[str]]:
    return {exc.field or "form": [str(exc)]}


def _public_url(request, storefront: Storefront) -> str:
    return request.build_absolute_uri(reverse("storefront:home", args=[storefront.slug]))


@login_required
def storefront(request):
    """Open the storefront (if none yet), else its settings."""
    agent = _agent(request, "storefront.settings")
    sf = _own_storefront(agent)
    errors: dict[str, list[str]] = {}
    values = request.POST if request.method == "POST" else None
    identity = operator_identity_of(agent)
    operator_status = identity.status if identity is not None else ""
    if request.method == "POST":
        try:
            if sf is None:
                sf = storefronts.storefront_open(
                    agent=agent,
                    slug=request.POST.get("slug", ""),
                    name=request.POST.get("name", ""),
                    notice=request.POST.get("notice", ""),
                    contact=request.POST.get("contact", ""),
                    default_markup_kind=request.POST.get("default_markup_kind", PriceKind.PERCENT),
                    default_markup_value=request.POST.get("default_markup_value", "10"),
                )
                messages.success(request, _("Your storefront is open. Set your retail prices next."))
            else:
                _check_posted_storefront(request, sf, "storefront.settings")
                storefronts.storefront_update(
                    storefront=sf,
                    name=request.POST.get("name", ""),
                    notice=request.POST.get("notice", ""),
                    contact=request.POST.get("contact", ""),
                    default_markup_kind=request.POST.get("default_markup_kind", ""),
                    default_markup_value=request.POST.get("default_markup_value", ""),
                    is_open=request.POST.get("is_open") == "on",
                )
                messages.success(request, _("Storefront settings saved."))
            return redirect("agents:storefront")
        except AgentError as exc:
            errors = _errors(exc)
    if sf is None:
        return render(
            request,
            "agents/storefront_open.html",
            {
                "section": "storefront",
                "errors": errors,
                "values": values or {"default_markup_kind": PriceKind.PERCENT, "default_markup_value": "10"},
                "kinds": PriceKind.choices,
                "slug_example": f"shop{agent.pk}",
                "public_base": request.build_absolute_uri("/").rstrip("/"),
                "operator_status": operator_status,
            },
            status=400 if errors else 200,
        )
    if values is None:
        values = {
            "name": sf.name,
            "notice": sf.notice,
            "contact": sf.contact,
            "default_markup_kind": sf.default_markup_kind,
            "default_markup_value": sf.default_markup_value.normalize(),
            "is_open": "on" if sf.is_open else "",
        }
    since = timezone.now() - timedelta(days=30)
    sales = agent.sales.filter(channel="storefront", created_at__gte=since, status="delivered").aggregate(
        orders=Count("id"), revenue=Sum("total")
    )
    own_prices = RetailPrice.objects.filter(storefront=sf).aggregate(
        priced=Count("id", filter=Q(is_listed=True)), unlisted=Count("id", filter=Q(is_listed=False))
    )
    return render(
        request,
        "agents/storefront_settings.html",
        {
            "section": "storefront",
            "storefront": sf,
            "errors": errors,
            "values": values,
            "kinds": PriceKind.choices,
            "public_url": _public_url(request, sf),
            "sales": sales,
            "own_prices": own_prices,
            "operator_status": operator_status,
        },
        status=400 if errors else 200,
    )


@login_required
@require_POST
def storefront_logo(request):
    agent = _agent(request, "storefront.logo")
    sf = _own_storefront(agent)
    if sf is None:
        return redirect("agents:storefront")
    _check_posted_storefront(request, sf, "storefront.logo")
    if request.POST.get("action") == "remove":
        storefronts.storefront_logo_clear(storefront=sf)
        messages.success(request, _("Logo removed."))
        return redirect("agents:storefront")
    try:
        storefronts.storefront_logo_set(storefront=sf, uploaded_file=request.FILES.get("logo"))
    except AgentError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("Logo updated."))
    return redirect("agents:storefront")


def _price_products(request):
    qs = (
        catalog.products_on_sale()
        .select_related("category__parent")
        .order_by("category__sort_order", "sort_order", "id")
    )
    query = (request.GET.get("q") or "").strip()[:100]
    if query:
        qs = qs.filter(Q(name__icontains=query) | Q(category__name__icontains=query))
    category = None
    cat_id = request.GET.get("category") or ""
    if cat_id.isdigit():
        category = Category.objects.filter(pk=int(cat_id), is_active=True).first()
        if category is not None:
            qs = qs.filter(Q(category=category) | Q(category__parent=category))
    return qs, query, category


@login_required
def storefront_prices(request):
    """Every product on sale: stock, the agent's cost, the retail price, the margin, listing."""
    agent = _agent(request, "storefront.prices")
    sf = _own_storefront(agent)
    if sf is None:
        messages.info(request, _("Open your storefront first."))
        return redirect("agents:storefront")
    qs, query, category = _price_products(request)
    page = Paginator(qs, PAGE_SIZE).get_page(request.GET.get("page"))
    products = list(page.object_list)
    rows = storefronts.storefront_price_rows(
        storefront=sf, products=products, stock=catalog.stock_counts(p.pk for p in products)
    )
    return render(
        request,
        "agents/storefront_prices.html",
        {
            "section": "storefront",
            "storefront": sf,
            "rows": rows,
            "page": page,
            "query": query,
            "category": category,
            "categories": catalog.category_tree(),
            "next_url": request.get_full_path(),
        },
    )


@login_required
@require_POST
def storefront_price(request, product_id: int):
    """One product's row: set or clear its own price, list or unlist it."""
    agent = _agent(request, "storefront.price")
    sf = _own_storefront(agent)
    if sf is None:
        audit_denied(action="storefront.price", request=request, target=f"product:{product_id}", detail="no storefront")
        raise Http404
    _check_posted_storefront(request, sf, "storefront.price")
    product = get_object_or_404(catalog.products_on_sale().select_related("category__parent"), pk=product_id)
    action = request.POST.get("action", "set")
    error = None
    try:
        if action == "set":
            storefronts.retail_price_set(storefront=sf, product=product, price=request.POST.get("price"))
            done = _("Retail price of %(product)s saved.")
        elif action == "clear":
            storefronts.retail_price_clear(storefront=sf, product=product)
            done = _("%(product)s now follows your default markup.")
        elif action == "unlist":
            storefronts.product_unlist(storefront=sf, product=product)
            done = _("%(product)s is no longer sold in your storefront.")
        elif action == "relist":
            storefronts.product_relist(storefront=sf, product=product)
            done = _("%(product)s is sold in your storefront again.")
        else:
            raise AgentError(_("Unknown action."))
    except AgentError as exc:
        error = str(exc)
        done = None
    if request.headers.get("HX-Request"):
        (row,) = storefronts.storefront_price_rows(
            storefront=sf, products=[product], stock={product.pk: catalog.stock_count(product.pk)}
        )
        return render(
            request,
            "agents/storefront_price_row.html",
            {
                "row": row,
                "storefront": sf,
                "error": error,
                "saved": bool(done),
                "next_url": request.POST.get("next", ""),
            },
        )
    if error:
        messages.error(request, f"{product.name}: {error}")
    else:
        messages.success(request, done % {"product": product.name})
    next_url = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
        next_url = reverse("agents:storefront_prices")
    return redirect(next_url)
