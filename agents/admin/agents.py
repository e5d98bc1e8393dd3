from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from marketplace.admin import ReadOnlyAdmin, ReadOnlyInline
from marketplace.errors import admin_action_run

from ..models import Agent, AgentLevel, AgentMove, Commission, CommissionStatusChange, Invitation, LevelPrice, Markup
from ..services import agents as services


class LevelPriceInline(admin.TabularInline):
    model = LevelPrice
    extra = 0
    autocomplete_fields = ("product", "category")


@admin.register(AgentLevel)
class AgentLevelAdmin(admin.ModelAdmin):
    list_display = ("name", "rank", "sort")
    list_editable = ("sort",)
    inlines = (LevelPriceInline,)


class AgentMoveForm(forms.Form):
    new_upline = forms.IntegerField(
        label=_("New upline (agent ID)"),
        required=False,
        min_value=1,
        help_text=_("Leave empty to put the agent directly under the platform."),
    )
    reason = forms.CharField(label=_("Reason"), max_length=300, widget=forms.Textarea(attrs={"rows": 3, "cols": 60}))


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ("user", "level", "upline", "depth", "created_at")
    list_filter = ("level", "depth")
    list_select_related = ("user", "level", "upline__user")
    search_fields = ("user__username", "user__email", "path")
    readonly_fields = ("path", "depth", "created_at", "chain", "downline_count", "tree_actions")
    raw_id_fields = ("user", "upline")
    actions = ("move_selected",)

    def get_readonly_fields(self, request, obj=None):
        # The tree is kept by agents.services: the upline changes only through "Move agent".
        if obj:
            return (*self.readonly_fields, "user", "upline")
        return ("path", "depth", "created_at")

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("user", "level", "upline")
        return ("user", "level", "upline", "chain", "downline_count", "depth", "path", "created_at", "tree_actions")

    @admin.display(description=_("chain (top → agent)"))
    def chain(self, obj):
        if obj is None or not obj.pk:
            return "-"
        ids = obj.chain_ids
        agents = {a.pk: a for a in Agent.objects.filter(pk__in=ids).select_related("user", "level")}
        links = format_html_join(
            " → ",
            '<a href="{}">{}</a> <span style="color:#666">({})</span>',
            (
                (reverse("admin:agents_agent_change", args=[pk]), agents[pk].user, agents[pk].level)
                for pk in ids
                if pk in agents
            ),
        )
        return format_html('<span data-testid="agent-chain">{} → {}</span>', _("Platform"), links)

    @admin.display(description=_("direct downline"))
    def downline_count(self, obj):
        if obj is None or not obj.pk:
            return "-"
        direct = Agent.objects.filter(upline=obj).count()
        team = Agent.objects.filter(path__startswith=obj.path).exclude(pk=obj.pk).count()
        url = reverse("admin:agents_agent_changelist") + f"?upline__id__exact={obj.pk}"
        return format_html(
            '<a href="{}" data-testid="downline-count">{}</a> <span style="color:#666">({}: {})</span>',
            url,
            direct,
            _("whole subtree"),
            team,
        )

    @admin.display(description=_("tree"))
    def tree_actions(self, obj):
        if obj is None or not obj.pk:
            return "-"
        history = reverse("admin:agents_agentmove_changelist") + f"?agent__id__exact={obj.pk}"
        return format_html(
            '<a class="button" href="{}">{}</a> &nbsp; <a href="{}">{}</a>',
            reverse("admin:agents_agent_move", args=[obj.pk]),
            _("Move agent"),
            history,
            _("Tree history"),
        )

    def get_urls(self):
        return [
            path("<int:pk>/move/", self.admin_site.admin_view(self.move_view), name="agents_agent_move"),
            *super().get_urls(),
        ]

    @admin.action(description=_("Move the selected agent to another upline"))
    def move_selected(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True)[:2])
        if len(ids) != 1:
            self.message_user(
                request, _("Select exactly one agent to move (its downline moves with it)."), messages.WARNING
            )
            return None
        return redirect("admin:agents_agent_move", pk=ids[0])

    def move_view(self, request, pk):
        agent = get_object_or_404(Agent.objects.select_related("user", "level", "upline__user"), pk=pk)
        if not self.has_change_permission(request, agent):
            raise PermissionDenied
        form = AgentMoveForm(request.POST or None, initial={"new_upline": agent.upline_id})
        if request.method == "POST" and form.is_valid():
            new_upline = None
            upline_id = form.cleaned_data["new_upline"]
            if upline_id:
                new_upline = Agent.objects.filter(pk=upline_id).first()
                if new_upline is None:
                    form.add_error("new_upline", _("There is no agent with this ID."))
            if not form.errors:
                moved, _move = admin_action_run(  # a refusal: its message on this page, the form kept
                    self,
                    request,
                    lambda: services.agent_move(
                        agent=agent, new_upline=new_upline, actor=request.user, reason=form.cleaned_data["reason"]
                    ),
                    done=lambda move: (
                        _("%(agent)s moved: %(old)s → %(new)s, with %(n)d agent(s) of its downline.")
                        % {"agent": agent.user, "old": move.from_path, "new": move.to_path, "n": move.subtree_size}
                    ),
                )
                if moved:
                    return redirect("admin:agents_agent_change", agent.pk)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": agent,
            "form": form,
            "title": _("Move agent %(agent)s") % {"agent": agent.user},
            "subtree_size": Agent.objects.filter(path__startswith=agent.path).exclude(pk=agent.pk).count(),
            "max_depth": services.max_depth(),
        }
        return TemplateResponse(request, "admin/agents/agent/move.html", context)

    def save_model(self, request, obj, form, change):
        if change:
            if "level" in form.changed_data:
                obj.save(update_fields=["level"])
            return
        created = services.agent_create(
            user=obj.user, level=obj.level, upline=obj.upline, actor=request.user, reason="created by staff"
        )
        obj.pk, obj.path, obj.depth, obj.created_at = created.pk, created.path, created.depth, created.created_at


@admin.register(Markup)
class MarkupAdmin(admin.ModelAdmin):
    list_display = ("agent", "scope", "product", "category", "downline_level", "kind", "value", "updated_at")
    list_filter = ("scope", "kind", "downline_level")
    list_select_related = ("agent__user", "agent__level", "product", "category__parent", "downline_level")
    raw_id_fields = ("agent", "product", "category")
    search_fields = ("agent__user__username",)


class InvitationForm(forms.ModelForm):
    class Meta:
        model = Invitation
        fields = ("upline", "level", "max_uses", "expires_at")

    def clean(self):
        data = super().clean()
        if self.instance.pk is None and data.get("upline") and data.get("level"):
            try:
                services.invitation_check(
                    upline=data["upline"],
                    level=data["level"],
                    max_uses=data.get("max_uses") or 1,
                    expires_at=data.get("expires_at"),
                )
            except services.AgentError as exc:  # the form shows it at its field
                raise ValidationError({exc.field: exc.message} if exc.field in self.fields else exc.message) from None
        return data


@admin.register(Invitation)
class InvitationAdmin(admin.ModelAdmin):
    form = InvitationForm
    list_display = ("code", "upline", "level", "uses", "max_uses", "expires_at", "revoked_at", "created_at")
    list_filter = ("level", ("revoked_at", admin.EmptyFieldListFilter), "created_at")
    list_select_related = ("upline__user", "upline__level", "level")
    search_fields = ("code", "upline__user__email", "upline__user__username")
    raw_id_fields = ("upline",)
    actions = ("revoke",)

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return ("code", "upline", "level", "max_uses", "uses", "expires_at", "revoked_at", "created_at")

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("upline", "level", "max_uses", "expires_at")
        return ("code", "upline", "level", "max_uses", "uses", "expires_at", "revoked_at", "created_at")

    def save_model(self, request, obj, form, change):
        if change:
            return
        created = services.invitation_create(
            upline=obj.upline, level=obj.level, max_uses=obj.max_uses, expires_at=obj.expires_at
        )
        obj.pk, obj.code, obj.created_at = created.pk, created.code, created.created_at

    def has_delete_permission(self, request, obj=None):
        return False  # the tree history points at invitations: revoke instead

    @admin.action(description=_("Revoke the selected invitations"))
    def revoke(self, request, queryset):
        n = 0
        for invitation in queryset.filter(revoked_at__isnull=True).order_by("pk"):
            services.invitation_revoke(invitation=invitation)
            n += 1
        self.message_user(request, _("%(n)d invitation(s) revoked.") % {"n": n}, messages.SUCCESS)


@admin.register(AgentMove)
class AgentMoveAdmin(ReadOnlyAdmin):
    list_display = (
        "at",
        "agent",
        "from_upline",
        "to_upline",
        "from_path",
        "to_path",
        "subtree_size",
        "actor",
        "reason",
    )
    list_filter = ("at",)
    list_select_related = (
        "agent__user",
        "agent__level",
        "from_upline__user",
        "from_upline__level",
        "to_upline__user",
        "to_upline__level",
        "actor",
    )
    search_fields = ("agent__user__email", "reason", "to_path", "from_path")
    date_hierarchy = "at"


class CommissionHistoryInline(ReadOnlyInline):
    model = CommissionStatusChange
    fields = readonly_fields = ("at", "from_status", "to_status", "actor", "note")
    verbose_name_plural = _("status history")


@admin.register(Commission)
class CommissionAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "agent",
        "order",
        "depth",
        "unit_amount",
        "quantity",
        "reversed_quantity",
        "amount",
        "status",
        "available_at",
    )
    list_filter = ("status", "depth", "agent__level", "created_at", "available_at")
    list_select_related = ("agent__user", "agent__level", "order")
    search_fields = ("order__number", "agent__user__email", "agent__user__username")
    date_hierarchy = "created_at"
    inlines = (CommissionHistoryInline,)
