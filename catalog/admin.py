from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import Count, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables

from marketplace.admin import ReadOnlyAdmin
from marketplace.errors import PASS_THROUGH, ServiceError
from marketplace.http import client_ip

from . import selectors, services
from .forms import ProductAdminForm, RevealForm, StockImportForm
from .models import CardCode, Category, Product, RestockSubscription, StaffReveal, StockBatch, Supplier


def _defect_rate_html(obj):
    """Shown as "2 / 40 (5.0%)": defective of delivered codes, red from 2%: bad suppliers show."""
    delivered, defective = obj.codes_delivered, obj.codes_defective
    rate = selectors.defect_rate(defective, delivered)
    if rate is None:
        return "—"
    text = f"{defective} / {delivered} ({rate}%)"
    if rate >= 2:
        return format_html('<strong style="color:#b02a37" data-defect-rate="{}">{}</strong>', rate, text)
    return format_html('<span data-defect-rate="{}">{}</span>', rate, text)


class DefectiveFilter(admin.SimpleListFilter):
    title = _("defective")
    parameter_name = "defective"

    def lookups(self, request, model_admin):
        return (("yes", _("Defective (the supplier owes it)")), ("no", _("Not defective")))

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(status=CardCode.Status.DEFECTIVE)
        if self.value() == "no":
            return queryset.exclude(status=CardCode.Status.DEFECTIVE)
        return queryset


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ("__str__", "slug", "sort_order", "is_active")
    list_filter = ("is_active", "parent")
    list_editable = ("sort_order", "is_active")
    prepopulated_fields = {"slug": ("name",)}
    search_fields = ("name", "slug")


@admin.register(Supplier)
class SupplierAdmin(admin.ModelAdmin):
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_display = ("name", "is_authorised", "authorisation_cert_no", "authorised_until", "defect_rate")
    list_filter = ("is_authorised",)
    search_fields = ("name", "authorisation_cert_no")

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(**selectors.supplier_defect_annotations())

    @admin.display(description=_("defective / sold"), ordering="codes_defective")
    def defect_rate(self, obj):
        return _defect_rate_html(obj)


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    form = ProductAdminForm
    list_display = ("name", "category", "kind", "price", "face_value", "available_stock", "is_active")
    list_filter = ("is_active", "is_high_risk", "kind", "category", "supplier")
    list_editable = ("is_active",)
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    autocomplete_fields = ("category", "supplier")

    def get_queryset(self, request):
        # One correlated count per row, served by the partial index of available codes.
        available = (
            CardCode.objects.filter(product=OuterRef("pk"), status=CardCode.Status.AVAILABLE)
            .order_by()
            .values("product")
            .annotate(n=Count("id"))
            .values("n")
        )
        return super().get_queryset(request).annotate(available=Coalesce(Subquery(available), 0))

    @admin.display(description=_("available"), ordering="available")
    def available_stock(self, obj):
        return obj.available


@admin.register(StockBatch)
class StockBatchAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "product",
        "supplier",
        "cost_price",
        "defect_rate",
        "status",
        "progress",
        "imported_count",
        "duplicate_count",
        "malformed_count",
        "created_by",
        "created_at",
    )
    list_filter = ("status", "supplier", "product")
    search_fields = ("product__name", "source_name")
    # The progress box above the fields shows the status, the error and the line report.
    readonly_fields = [f.name for f in StockBatch._meta.fields if f.name not in ("payload", "report", "error")] + [
        "code_counts"
    ]
    change_form_template = "admin/catalog/stockbatch/change_form.html"
    change_list_template = "admin/catalog/stockbatch/change_list.html"

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(**selectors.batch_defect_annotations())

    @admin.display(description=_("defective / sold"), ordering="codes_defective")
    def defect_rate(self, obj):
        return _defect_rate_html(obj)

    @admin.display(description=_("progress"))
    def progress(self, obj):
        return f"{obj.progress_percent}%"

    @admin.display(description=_("codes now"))
    def code_counts(self, obj):
        counts = selectors.batch_code_counts(obj)
        return ", ".join(f"{CardCode.Status(k).label}: {v}" for k, v in sorted(counts.items())) or "—"

    def get_urls(self):
        return [
            path("import/", self.admin_site.admin_view(self.import_view), name="catalog_stockbatch_import"),
            *super().get_urls(),
        ]

    @method_decorator(sensitive_post_parameters("text"))
    def import_view(self, request):
        if not request.user.has_perm("catalog.import_stock"):
            raise PermissionDenied
        initial = {}
        if request.GET.get("product"):
            product = Product.objects.filter(pk=request.GET["product"]).first()
            if product:
                initial = {"product": product, "supplier": product.supplier}
        form = StockImportForm(request.POST or None, request.FILES or None, initial=initial)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                batch = services.batch_create(
                    request=services.ImportRequest(
                        product=data["product"],
                        supplier=data["supplier"],
                        cost_price=data["cost_price"],
                        text=data["text"],
                        source_name=str(data["source_name"]),
                        csv_format=data["csv_format"],
                    ),
                    user=request.user,
                )
            except PASS_THROUGH:
                raise
            except ServiceError as exc:  # CatalogError
                form.add_error(None, str(exc))
            else:
                messages.success(request, _("Import #%(id)s queued.") % {"id": batch.pk})
                return redirect(reverse("admin:catalog_stockbatch_change", args=[batch.pk]))
        context = {
            **self.admin_site.each_context(request),
            "form": form,
            "title": _("Import card codes"),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/catalog/stockbatch/import.html", context)


@admin.register(CardCode)
class CardCodeAdmin(ReadOnlyAdmin):
    """Secrets never show here: only a masked hint, and an audited reveal for those allowed."""

    list_display = ("id", "product", "batch", "status", "created_at", "reveal_link")
    list_filter = ("status", DefectiveFilter, "product")
    list_select_related = ("product", "batch")
    readonly_fields = (
        "product",
        "batch",
        "status",
        "created_at",
        "updated_at",
        "defective_at",
        "defect_note",
        "reveal_link",
    )
    fields = readonly_fields
    show_full_result_count = False

    @admin.display(description=_("secret"))
    def reveal_link(self, obj):
        if not obj.pk:
            return "—"
        return format_html(
            '•••••••• <a href="{}">{}</a>', reverse("admin:catalog_cardcode_reveal", args=[obj.pk]), _("reveal…")
        )

    def get_urls(self):
        return [
            path("<int:pk>/reveal/", self.admin_site.admin_view(self.reveal_view), name="catalog_cardcode_reveal"),
            *super().get_urls(),
        ]

    @method_decorator(sensitive_variables("plaintext"))
    def reveal_view(self, request, pk):
        if not request.user.has_perm("catalog.reveal_cardcode"):
            raise PermissionDenied
        code = get_object_or_404(CardCode.objects.select_related("product"), pk=pk)
        form = RevealForm(request.POST or None)
        plaintext = None
        if request.method == "POST" and form.is_valid():
            plaintext = services.code_reveal_for_staff(
                code_id=code.pk,
                user=request.user,
                ip=client_ip(request),
                user_agent=request.headers.get("User-Agent", ""),
                reason=form.cleaned_data["reason"],
            )
        context = {
            **self.admin_site.each_context(request),
            "form": form,
            "code": code,
            "plaintext": plaintext,
            "title": _("Reveal a card code"),
            "opts": self.model._meta,
            "reveals": code.staff_reveals.select_related("user")[:20],
        }
        response = TemplateResponse(request, "admin/catalog/cardcode/reveal.html", context)
        response["Cache-Control"] = "no-store"
        return response


@admin.register(StaffReveal)
class StaffRevealAdmin(ReadOnlyAdmin):
    list_display = ("at", "user", "code", "ip", "reason")
    list_filter = ("user",)
    readonly_fields = ("at", "user", "code", "ip", "user_agent", "reason")


@admin.register(RestockSubscription)
class RestockSubscriptionAdmin(ReadOnlyAdmin):
    """Who waits for which product, and what became of it (catalog.services' restock alerts)."""

    list_display = ("id", "product", "email", "user", "created_at", "confirmed_at", "notified_at", "unsubscribed_at")
    list_filter = ("product",)
    list_select_related = ("product", "user")
    search_fields = ("email",)
    readonly_fields = (
        "product",
        "user",
        "email",
        "page_path",
        "created_at",
        "confirmed_at",
        "claimed_at",
        "notified_at",
        "notified_batch",
        "unsubscribed_at",
        "ip",
    )
    fields = readonly_fields
