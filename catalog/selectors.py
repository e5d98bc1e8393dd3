"""Reads for catalogue pages. Stock is always counted from codes really available."""

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import cast

from django.conf import settings
from django.core import signing
from django.db import models
from django.db.models import Count, OuterRef, Prefetch, Q, QuerySet, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from marketplace.localcache import local_forget, local_only
from marketplace.prepared import Prepared

from .models import CardCode, Category, Product, RestockSubscription, StockBatch, Supplier


def stock_counts(product_ids) -> dict[int, int]:
    rows = (
        CardCode.objects.filter(product_id__in=list(product_ids), status=CardCode.Status.AVAILABLE)
        .values("product_id")
        .annotate(n=Count("id"))
    )
    return {row["product_id"]: row["n"] for row in rows}


def stock_count(product_id: int) -> int:
    return CardCode.objects.filter(product_id=product_id, status=CardCode.Status.AVAILABLE).count()


def sale_allowed_q(today: date | None = None) -> Q:
    """Products not held off sale by a rights holder's notice and whose sale authorisation (the
    review ledger, ``rights``) has not lapsed. An empty ``sale_authorised_until`` is a product from
    before the ledger: not enforced here (activating one needs an approved review: rights.admin)."""
    today = today or timezone.localdate()
    return Q(sale_hold="") & (Q(sale_authorised_until__isnull=True) | Q(sale_authorised_until__gte=today))


def products_on_sale(today: date | None = None) -> QuerySet[Product]:
    return (
        Product.objects.filter(is_active=True, category__is_active=True)
        .filter(sale_allowed_q(today))
        .select_related("category", "supplier")
    )


def _available_count() -> Coalesce:
    """The product's codes available now, as an annotation (the partial "available" index)."""
    return _count(CardCode.objects.filter(product_id=OuterRef("pk"), status=CardCode.Status.AVAILABLE))


# The product page's and the checkout's read (issue 17): the product on sale by its slug, and
# for the pages that show it, its stock counted in the same statement; compiled once per process.
_ON_SALE = Prepared(
    lambda slug, today: products_on_sale(today).filter(slug=slug), slug="k-sample-slug", today=date(1901, 1, 2)
)
_ON_SALE_COUNTED = Prepared(
    lambda slug, today: products_on_sale(today).filter(slug=slug).annotate(codes_available=_available_count()),
    slug="k-sample-slug",
    today=date(1901, 1, 2),
)


def product_on_sale(slug: str, *, counted: bool = False) -> Product | None:
    """The product on sale with this slug (its category and supplier loaded), or None. With
    ``counted`` it carries ``codes_available``: its codes available at the moment of this read
    (``stock_count``'s figure, read in the same statement)."""
    prepared = _ON_SALE_COUNTED if counted else _ON_SALE
    return prepared.first(slug=slug, today=timezone.localdate())


def product_search(*, query: str = "", category: Category | None = None) -> list[Product]:
    qs = products_on_sale()
    if category is not None:
        qs = qs.filter(Q(category=category) | Q(category__parent=category))
    query = (query or "").strip()[:100]
    if query:
        qs = qs.filter(Q(name__icontains=query) | Q(description__icontains=query) | Q(category__name__icontains=query))
    return list(qs)


CATEGORY_TREE_KEY = "catalog:category_tree"


def category_tree() -> list[Category]:
    """Active top-level categories, each with ``active_children`` (a list, in order). Every
    catalogue page shows it: kept per process for a few seconds (marketplace.localcache; a
    category's save or delete forgets it here at once, catalog.apps); treat it as read-only."""

    def load() -> list[Category]:
        return list(
            Category.objects.filter(parent__isnull=True, is_active=True)
            .prefetch_related(Prefetch("children", Category.objects.filter(is_active=True), to_attr="active_children"))
            .order_by("sort_order", "id")
        )

    return cast(list[Category], local_only(CATEGORY_TREE_KEY, load))


def category_tree_forget(**_kwargs) -> None:
    """Signal receiver: a category was saved or deleted."""
    local_forget(CATEGORY_TREE_KEY)


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


# --- Defect rates (reissues): which batches and suppliers deliver bad codes ---------------------

# Codes that went to buyers: sold ones, and defective ones (sold first, then found invalid).
DELIVERED_STATUSES = (CardCode.Status.SOLD, CardCode.Status.DEFECTIVE)


def defect_rate(defective: int, delivered: int) -> Decimal | None:
    """Defective codes per 100 delivered (one decimal), None when nothing was delivered."""
    if not delivered:
        return None
    return (Decimal(100) * defective / delivered).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


def _count(codes: QuerySet) -> Coalesce:
    """A correlated count of ``codes`` as an annotation (one query for a whole list)."""
    grouped = codes.order_by().annotate(_one=models.Value(1)).values("_one").annotate(n=Count("id")).values("n")
    return Coalesce(models.Subquery(grouped, output_field=models.IntegerField()), 0)


def batch_defect_annotations() -> dict:
    """Annotations for a StockBatch queryset: ``codes_delivered`` and ``codes_defective``.
    Filtered on the product first, so the per-product index narrows each count."""
    of_batch = CardCode.objects.filter(product_id=OuterRef("product_id"), batch_id=OuterRef("pk"))
    return {
        "codes_delivered": _count(of_batch.filter(status__in=DELIVERED_STATUSES)),
        "codes_defective": _count(of_batch.filter(status=CardCode.Status.DEFECTIVE)),
    }


def supplier_defect_annotations() -> dict:
    """Annotations for a Supplier queryset: ``codes_delivered`` and ``codes_defective``."""
    of_supplier = CardCode.objects.filter(batch__supplier_id=OuterRef("pk"))
    return {
        "codes_delivered": _count(of_supplier.filter(status__in=DELIVERED_STATUSES)),
        "codes_defective": _count(of_supplier.filter(status=CardCode.Status.DEFECTIVE)),
    }


@dataclass(frozen=True)
class DefectRate:
    id: int
    name: str
    delivered: int  # codes sold to buyers (including those later found defective)
    defective: int

    @property
    def rate(self) -> Decimal | None:
        return defect_rate(self.defective, self.delivered)


def batch_defect_rates(batch_ids=None) -> list[DefectRate]:
    """Per batch: codes delivered, codes defective, rate (worst first)."""
    counts = batch_defect_annotations()
    batches = StockBatch.objects.select_related("product").annotate(
        codes_delivered=counts["codes_delivered"], codes_defective=counts["codes_defective"]
    )
    if batch_ids is not None:
        batches = batches.filter(pk__in=list(batch_ids))
    rows = [DefectRate(b.pk, f"#{b.pk} {b.product.name}", b.codes_delivered, b.codes_defective) for b in batches]
    return sorted(rows, key=lambda r: (-(r.rate or 0), r.id))


def supplier_defect_rates(supplier_ids=None) -> list[DefectRate]:
    """Per supplier: codes delivered, codes defective, rate (worst first)."""
    counts = supplier_defect_annotations()
    suppliers = Supplier.objects.annotate(
        codes_delivered=counts["codes_delivered"], codes_defective=counts["codes_defective"]
    )
    if supplier_ids is not None:
        suppliers = suppliers.filter(pk__in=list(supplier_ids))
    rows = [DefectRate(s.pk, s.name, s.codes_delivered, s.codes_defective) for s in suppliers]
    return sorted(rows, key=lambda r: (-(r.rate or 0), r.id))


# --- Restock alerts -----------------------------------------------------------------------------

RESTOCK_CONFIRM_SALT = "catalog.restock.confirm"


def restock_due(product_id: int) -> QuerySet[RestockSubscription]:
    """Live, confirmed subscriptions of a product not yet alerted (claimed by a run or not)."""
    return RestockSubscription.objects.filter(
        product_id=product_id, notified_at__isnull=True, unsubscribed_at__isnull=True, confirmed_at__isnull=False
    )


def restock_products_due() -> list[int]:
    """Products on sale, in stock, with confirmed subscribers still waiting for their alert."""
    waiting = RestockSubscription.objects.filter(
        notified_at__isnull=True, unsubscribed_at__isnull=True, confirmed_at__isnull=False
    ).values("product_id")
    in_stock = CardCode.objects.filter(status=CardCode.Status.AVAILABLE).values("product_id")
    return list(
        products_on_sale().filter(pk__in=waiting).filter(pk__in=in_stock).order_by("pk").values_list("pk", flat=True)
    )


def restock_subscription_for_token(token: str) -> RestockSubscription | None:
    """The subscription an unsubscribe link names (its unguessable token)."""
    if not token or len(token) > 64:
        return None
    return RestockSubscription.objects.select_related("product").filter(token=token).first()


def restock_subscription_from_confirm_link(signed: str) -> RestockSubscription | None:
    """The subscription a guest's confirmation link names, while the link is valid
    (RESTOCK_CONFIRM_DAYS; signed by catalog.services.restock_confirm_token)."""
    try:
        token = signing.TimestampSigner(salt=RESTOCK_CONFIRM_SALT).unsign(
            signed[:200], max_age=timedelta(days=settings.RESTOCK_CONFIRM_DAYS)
        )
    except signing.BadSignature:
        return None
    return restock_subscription_for_token(token)


def restock_member_subscribed(*, product_id: int, user) -> bool:
    """Whether a signed-in member already waits for this product's restock."""
    if user is None or not user.is_authenticated:
        return False
    return RestockSubscription.objects.filter(
        product_id=product_id, user=user, notified_at__isnull=True, unsubscribed_at__isnull=True
    ).exists()
