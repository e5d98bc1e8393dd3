"""The platform's catalogue pages: home, search, a category, a product.

Each product is shown with what this viewer pays, its stock and whether it can be bought
(``orders.selectors.orders.purchase_infos``: the public price, or an agent's own cost). That answer
needs the agents' prices, so these pages live here, above agents and catalog; catalog keeps
the reads they start from (``catalog.selectors``).
"""

from django.shortcuts import get_object_or_404, render

from catalog import selectors as catalog
from catalog.models import Category
from marketplace.http import found_or_404
from marketplace.pagecache import anonymous_page

from ..selectors import orders as selectors


@anonymous_page  # a few seconds per process for anonymous visitors (stock included)
def home(request):
    infos = selectors.home_infos(request.user)  # a few seconds per process for members too
    return render(request, "catalog/home.html", {"categories": catalog.category_tree(), "infos": infos})


def search(request):
    query = request.GET.get("q", "")
    infos = selectors.purchase_infos(catalog.product_search(query=query), viewer=request.user)
    return render(
        request,
        "catalog/search.html",
        {"categories": catalog.category_tree(), "infos": infos, "query": query},
    )


@anonymous_page  # a few seconds per process for anonymous visitors (stock included)
def category(request, slug):
    cat = get_object_or_404(Category.objects.select_related("parent"), slug=slug, is_active=True)
    infos = selectors.purchase_infos(catalog.product_search(category=cat), viewer=request.user)
    return render(
        request,
        "catalog/category.html",
        {"categories": catalog.category_tree(), "category": cat, "infos": infos},
    )


@anonymous_page  # a few seconds per process for anonymous visitors (stock included)
def product(request, slug):
    item = found_or_404(catalog.product_on_sale(slug, counted=True))  # the product and its stock: one statement
    info = selectors.purchase_info(product=item, viewer=request.user)
    subscribed = not info.stock and catalog.restock_member_subscribed(product_id=item.pk, user=request.user)
    return render(request, "catalog/product.html", {"product": item, "info": info, "restock_subscribed": subscribed})
