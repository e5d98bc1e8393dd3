from django.contrib import admin

from . import services
from .models import Agent, AgentLevel, LevelPrice, Markup


class LevelPriceInline(admin.TabularInline):
    model = LevelPrice
    extra = 0
    autocomplete_fields = ("product", "category")


@admin.register(AgentLevel)
class AgentLevelAdmin(admin.ModelAdmin):
    list_display = ("name", "rank", "sort")
    list_editable = ("sort",)
    inlines = (LevelPriceInline,)


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ("user", "level", "upline", "depth", "created_at")
    list_filter = ("level", "depth")
    list_select_related = ("user", "level", "upline__user")
    search_fields = ("user__username", "user__email", "path")
    readonly_fields = ("path", "depth", "created_at")
    raw_id_fields = ("user", "upline")

    def get_readonly_fields(self, request, obj=None):
        # The tree is kept by agents.services.agent_create: the upline is fixed once set.
        return (*self.readonly_fields, "user", "upline") if obj else self.readonly_fields

    def save_model(self, request, obj, form, change):
        if change:
            if "level" in form.changed_data:
                obj.save(update_fields=["level"])
            return
        created = services.agent_create(user=obj.user, level=obj.level, upline=obj.upline)
        obj.pk, obj.path, obj.depth, obj.created_at = created.pk, created.path, created.depth, created.created_at


@admin.register(Markup)
class MarkupAdmin(admin.ModelAdmin):
    list_display = ("agent", "scope", "product", "category", "downline_level", "kind", "value", "updated_at")
    list_filter = ("scope", "kind", "downline_level")
    list_select_related = ("agent__user", "agent__level", "product", "category__parent", "downline_level")
    raw_id_fields = ("agent", "product", "category")
    search_fields = ("agent__user__username",)

# Each area registers its own admin classes.
from . import admin_api, admin_storefronts  # noqa: E402, F401
