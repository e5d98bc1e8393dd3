"""Reads for catalogue pages. Stock is always counted from codes really available."""

from django.db import models
from django.db.models import Count, Q, QuerySet, Sum

from .models import CardCode, Category, Product


def stock_counts(product_ids) -> dict[int, int]:
    rows = (
        CardCode.objects.filter(product_id__in=list(product_ids), status=CardCode.Status.AVAILABLE)
        .values("product_id")
        .annotate(n=Count("id"))
    )
    return {row["product_id"]: row["n"] for row in rows}


def stock_count(product_id: int) -> int:
    return CardCode.objects.filter(product_id=product_id, status=CardCode.Status.AVAILABLE).count()


def with_stock(products) -> list[Product]:
    products = list(products)
    counts = stock_counts(p.pk for p in products)
    for product in products:
        product.stock = counts.get(product.pk, 0)
    return products


def products_on_sale() -> QuerySet[Product]:
    return Product.objects.filter(is_active=True, category__is_active=True).select_related("category", "supplier")


def product_search(*, query: str = "", category: Category | None = None) -> list[Product]:
    qs = products_on_sale()
    if category is not None:
        qs = qs.filter(Q(category=category) | Q(category__parent=category))
    query = (query or "").strip()[:100]
    if query:
        qs = qs.filter(Q(name__icontains=query) | Q(description__icontains=query) | Q(category__name__icontains=query))
    return with_stock(qs)


def category_tree() -> list[Category]:
    tops = list(
        Category.objects.filter(parent__isnull=True, is_active=True)
        .prefetch_related("children")
        .order_by("sort_order", "id")
    )
    for top in tops:
        top.active_children = [c for c in top.children.all() if c.is_active]
    return tops


def batch_code_counts(batch) -> dict[str, int]:
    rows = (
        CardCode.objects.filter(product_id=batch.product_id, batch_id=batch.pk).values("status").annotate(n=Count("id"))
    )
    return {row["status"]: row["n"] for row in rows}


def cost_by_supplier(code_ids) -> list[dict]:
    """What these codes cost us, per supplier: [{"supplier_id", "supplier_name", "cost"}]."""
    return list(
        CardCode.objects.filter(id__in=code_ids)
        .values(supplier_id=models.F("batch__supplier_id"), supplier_name=models.F("batch__supplier__name"))
        .annotate(cost=Sum("batch__cost_price"))
        .order_by("supplier_id")
    )
