from django.shortcuts import get_object_or_404, render

from . import selectors
from .models import Category


def home(request):
    return render(
        request,
        "catalog/home.html",
        {"categories": selectors.category_tree(), "products": selectors.product_search()},
    )


def search(request):
    query = request.GET.get("q", "")
    return render(
        request,
        "catalog/search.html",
        {"categories": selectors.category_tree(), "products": selectors.product_search(query=query), "query": query},
    )


def category(request, slug):
    cat = get_object_or_404(Category.objects.select_related("parent"), slug=slug, is_active=True)
    return render(
        request,
        "catalog/category.html",
        {"categories": selectors.category_tree(), "category": cat, "products": selectors.product_search(category=cat)},
    )


def product(request, slug):
    item = get_object_or_404(selectors.products_on_sale(), slug=slug)
    item.stock = selectors.stock_count(item.pk)
    return render(request, "catalog/product.html", {"product": item})
