"""Staff's coupons (营销 › 优惠券): create through ``coupon_create`` (the add form's extra fields:
a public code, how many single-use codes to generate), bulk-generate codes and export them as
CSV (admin actions), and each coupon's figures (``marketing.selectors.coupon_figures``): uses,
distinct buyers, sales, revenue, cost and returned uses. The model permissions of ``Coupon``
are the marketing permissions: view (the list, the CSV), add (create, generate codes), change
(rename, end early, pause)."""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.db import transaction
from django.http import HttpResponse
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from marketplace.admin import ReadOnlyAdmin
from marketplace.errors import admin_action_run

from . import selectors
from .models import Coupon, CouponUse
from .services import coupons


class CouponAddForm(forms.ModelForm):
    """The add form: the coupon's rules, then its codes. Saving goes through ``coupon_create``
    (checked in ``clean``: a refusal is the form's error, and nothing is kept)."""

    public_code = forms.CharField(
        label=_("public code"),
        required=False,
        max_length=40,
        help_text=_("One code anyone may type (4 to 32 letters and digits), or leave empty."),
    )
    generate = forms.IntegerField(
        label=_("single-use codes to generate"),
        required=False,
        min_value=0,
        max_value=coupons.MAX_GENERATE,
        initial=0,
    )

    class Meta:
        model = Coupon
        fields = (
            "name",
            "agent",
            "kind",
            "amount",
            "percent",
            "cap",
            "min_spend",
            "scope",
            "products",
            "categories",
            "storefront",
            "starts_at",
            "ends_at",
            "total_limit",
            "per_user_limit",
            "new_buyers_only",
        )

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        try:
            with transaction.atomic():
                self.instance = coupons.coupon_create(
                    name=data["name"],
                    kind=data["kind"],
                    starts_at=data.get("starts_at"),
                    ends_at=data["ends_at"],
                    amount=data.get("amount") or 0,
                    percent=data.get("percent") or 0,
                    cap=data.get("cap"),
                    min_spend=data.get("min_spend") or 0,
                    scope=data["scope"],
                    products=list(data.get("products") or []),
                    categories=list(data.get("categories") or []),
                    storefront=data.get("storefront"),
                    total_limit=data.get("total_limit"),
                    per_user_limit=data.get("per_user_limit"),
                    new_buyers_only=data.get("new_buyers_only", False),
                    agent=data.get("agent"),
                    public_code=data.get("public_code") or "",
                    generate=data.get("generate") or 0,
                    created_by=self.user,
                )
        except coupons.CouponError as exc:
            raise forms.ValidationError(str(exc)) from None
        return data

    def _post_clean(self):
        # The coupon was made by coupon_create in clean(): nothing of the form is written on it.
        if self.instance.pk is None:
            super()._post_clean()

    def save(self, commit=True):
        self.save_m2m = lambda: None
        return self.instance


class GenerateForm(ActionForm):
    count = forms.IntegerField(
        label=_("codes"), required=False, min_value=1, max_value=coupons.MAX_GENERATE, initial=100
    )


def _discount_text(coupon: Coupon) -> str:
    if coupon.kind == Coupon.Kind.FIXED:
        return f"¥{coupon.amount}"
    cap = gettext(", at most ¥%(cap)s") % {"cap": coupon.cap} if coupon.cap is not None else ""
    return f"{coupon.percent.normalize():f}%{cap}"


@admin.register(Coupon)
class CouponAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "issuer",
        "discount",
        "min_spend",
        "ends_at",
        "limit",
        "uses_live",
        "buyers",
        "sales",
        "revenue",
        "cost",
        "uses_released",
        "is_active",
    )
    list_filter = ("is_active", "kind", "scope", ("agent", admin.EmptyFieldListFilter))
    search_fields = ("name", "codes__code", "agent__user__username")
    autocomplete_fields = ()
    raw_id_fields = ("agent", "storefront")
    filter_horizontal = ("products", "categories")
    action_form = GenerateForm
    actions = ("generate_codes", "export_codes")
    # After creation only what cannot move money already given may change: the name, an
    # earlier end, a pause (the limits and the discount stay as the uses were taken under).
    change_fields = ("name", "ends_at", "is_active")

    def get_queryset(self, request):
        return selectors.coupon_figures(super().get_queryset(request).select_related("agent__user"))

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            form = super().get_form(request, obj, form=CouponAddForm, **kwargs)

            class WithUser(form):  # type: ignore[misc, valid-type]
                def __init__(self, *args, **kw):
                    super().__init__(*args, user=request.user, **kw)

            return WithUser
        return super().get_form(request, obj, change=change, fields=self.change_fields, **kwargs)

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return super().get_fieldsets(request, obj)
        return [
            (None, {"fields": self.change_fields}),
            (_("Rules"), {"fields": self.get_readonly_fields(request, obj)}),
        ]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return (
            "agent",
            "kind",
            "amount",
            "percent",
            "cap",
            "min_spend",
            "scope",
            "storefront",
            "starts_at",
            "total_limit",
            "per_user_limit",
            "new_buyers_only",
            "used",
            "codes_count",
        )

    def save_model(self, request, obj, form, change):
        if change:
            obj.save(update_fields=[f for f in self.change_fields if f in form.changed_data] or ["name"])

    def save_related(self, request, form, formsets, change):
        if change:
            super().save_related(request, form, formsets, change)

    def has_delete_permission(self, request, obj=None):
        return False  # uses and orders point at it: end it or pause it instead

    @admin.display(description=_("issuer"), ordering="agent")
    def issuer(self, obj):
        return obj.agent.user.username if obj.agent_id else gettext("Platform")

    @admin.display(description=_("discount"))
    def discount(self, obj):
        return _discount_text(obj)

    @admin.display(description=_("used / limit"))
    def limit(self, obj):
        return f"{obj.used} / {obj.total_limit}" if obj.total_limit is not None else f"{obj.used} / ∞"

    @admin.display(description=_("uses"), ordering="uses_live")
    def uses_live(self, obj):
        return obj.uses_live

    @admin.display(description=_("buyers"))
    def buyers(self, obj):
        return obj.members + obj.guests

    @admin.display(description=_("sales"), ordering="sales")
    def sales(self, obj):
        return obj.sales

    @admin.display(description=_("revenue"), ordering="revenue")
    def revenue(self, obj):
        return f"¥{obj.revenue}"

    @admin.display(description=_("cost"), ordering="cost")
    def cost(self, obj):
        return f"¥{obj.cost}"

    @admin.display(description=_("returned uses"), ordering="uses_released")
    def uses_released(self, obj):
        return obj.uses_released

    @admin.display(description=_("codes"))
    def codes_count(self, obj):
        return obj.codes.count()

    @admin.action(description=_("Generate single-use codes for the selected coupons"), permissions=["add"])
    def generate_codes(self, request, queryset):
        count = GenerateForm(request.POST).data.get("count") or ""
        if not str(count).isdigit() or not 1 <= int(count) <= coupons.MAX_GENERATE:
            self.message_user(
                request,
                gettext("Give the number of codes to generate (1 to %(n)d).") % {"n": coupons.MAX_GENERATE},
                messages.ERROR,
            )
            return
        for coupon in queryset.filter(ends_at__gt=timezone.now()):
            admin_action_run(
                self,
                request,
                lambda c=coupon: coupons.coupon_codes_generate(coupon=c, count=int(count)),
                label=coupon.name,
                done=lambda made, c=coupon: gettext("%(name)s: %(n)d codes generated.") % {"name": c.name, "n": made},
            )

    @admin.action(description=_("Export the selected coupons' codes (CSV)"), permissions=["view"])
    def export_codes(self, request, queryset):
        text = coupons.coupons_codes_csv(coupons=queryset.order_by("pk"))
        response = HttpResponse(text, content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = 'attachment; filename="coupon-codes.csv"'
        return response


@admin.register(CouponUse)
class CouponUseAdmin(ReadOnlyAdmin):
    list_display = ("coupon", "code", "order", "buyer", "email", "discount", "created_at", "released_at")
    list_filter = ("released_at",)
    search_fields = ("code__code", "order__number", "email")
    raw_id_fields = ("coupon", "code", "order", "buyer")
