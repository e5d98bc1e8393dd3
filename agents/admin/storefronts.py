"""Admin for storefronts (imported by agents.admin): staff see every shop and its retail prices,
and can close a shop (its pages then answer 404 and it sells nothing)."""

from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from ..models import RetailPrice, Storefront
from ..services import storefronts


class RetailPriceInline(admin.TabularInline):
    model = RetailPrice
    extra = 0
    fields = ("product", "price", "is_listed", "updated_at")
    readonly_fields = ("product", "price", "is_listed", "updated_at")
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None):
        # Retail prices are the agent's: set in its dashboard, checked against its cost.
        return False


@admin.register(Storefront)
class StorefrontAdmin(admin.ModelAdmin):
    list_display = ("name", "public_link", "agent", "is_open", "default_markup", "has_logo", "created_at")
    list_filter = ("is_open", "default_markup_kind")
    list_select_related = ("agent__user", "agent__level")
    search_fields = ("name", "slug", "agent__user__username", "agent__user__email")
    readonly_fields = (
        "agent",
        "slug",
        "public_link",
        "default_markup_kind",
        "default_markup_value",
        "logo_preview",
        "created_at",
        "updated_at",
    )
    fields = (
        "agent",
        "slug",
        "public_link",
        "name",
        "notice",
        "contact",
        "logo_preview",
        "default_markup_kind",
        "default_markup_value",
        "is_open",
        "created_at",
        "updated_at",
    )
    inlines = (RetailPriceInline,)
    actions = ("close_storefronts",)

    def get_queryset(self, request):
        return super().get_queryset(request).defer("logo")

    def has_add_permission(self, request):
        return False  # agents open their own storefront from the dashboard

    @admin.display(description=_("address"), ordering="slug")
    def public_link(self, obj):
        url = reverse("storefront:home", args=[obj.slug])
        return format_html('<a href="{}" target="_blank" rel="noopener">{}</a>', url, url)

    @admin.display(description=_("default markup"))
    def default_markup(self, obj):
        value = obj.default_markup_value.normalize()
        return f"+{value}%" if obj.default_markup_kind == "percent" else f"+¥{obj.default_markup_value:.2f}"

    @admin.display(description=_("logo"), boolean=True)
    def has_logo(self, obj):
        return obj.logo_updated_at is not None

    @admin.display(description=_("logo"))
    def logo_preview(self, obj):
        if obj.logo_updated_at is None:
            return "—"
        url = reverse("storefront:logo", args=[obj.slug])
        return format_html(
            '<img src="{}?v={}" alt="" style="max-width:96px;max-height:96px;border:1px solid #ddd;border-radius:8px">',
            url,
            int(obj.logo_updated_at.timestamp()),
        )

    @admin.action(description=_("Close the selected storefronts"))
    def close_storefronts(self, request, queryset):
        closed = sum(storefronts.storefront_close(storefront=sf) for sf in queryset)
        self.message_user(
            request,
            ngettext("%(n)d storefront closed.", "%(n)d storefronts closed.", closed) % {"n": closed},
            messages.SUCCESS,
        )

    def save_model(self, request, obj, form, change):
        # Staff may correct the shop's texts or close/reopen it; prices and address stay the agent's.
        fields = [f for f in ("name", "notice", "contact", "is_open") if f in form.changed_data]
        if fields:
            obj.save(update_fields=[*fields, "updated_at"])
