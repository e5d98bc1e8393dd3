"""Staff verify storefront operators' identities (网络交易监督管理办法 第二十四条).

The identity is written only by ``agents.services.operators``: the change page is read-only and
carries the decisions (verify; reject with a reason, also a list action for several). The ID
number shows masked; staff holding ``agents.reveal_operator_id_number`` may reveal it on its own
page, and every reveal (or refused attempt) is in the audit log. The licence image is served
by this admin only, to staff who may view identities, never cached.
"""

from django import forms
from django.contrib import admin
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from marketplace.admin import ReadOnlyInline, ReadOnlyMixin
from marketplace.errors import admin_action_run

from ..models import OperatorIdentity, OperatorIdentityStatusChange
from ..selectors import id_number_masked
from ..services import operators

CHANGE_PERMISSION = "agents.change_operatoridentity"
VIEW_PERMISSION = "agents.view_operatoridentity"
Status = OperatorIdentity.Status


class HistoryInline(ReadOnlyInline):
    model = OperatorIdentityStatusChange
    fields = readonly_fields = ("at", "from_status", "to_status", "actor", "note")
    ordering = ("at", "id")


def _identities():
    return OperatorIdentity.objects.defer("licence_image")


class RejectForm(forms.Form):
    reason = forms.CharField(
        label=_("Reason (the agent sees it)"), max_length=300, widget=forms.Textarea(attrs={"rows": 3, "cols": 60})
    )


@admin.register(OperatorIdentity)
class OperatorIdentityAdmin(ReadOnlyMixin, admin.ModelAdmin):
    change_form_template = "admin/agents/operatoridentity/change_form.html"
    list_display = ("__str__", "kind", "number_shown", "agent_user", "storefront", "status", "submitted_at")
    list_filter = ("status", "kind")
    list_select_related = ("agent__user", "agent__storefront")
    search_fields = (
        "legal_name",
        "company_name",
        "credit_code",
        "phone",
        "agent__user__username",
        "agent__user__email",
    )
    date_hierarchy = "submitted_at"
    readonly_fields = (
        "agent",
        "storefront",
        "kind",
        "legal_name",
        "number_shown",
        "company_name",
        "credit_code",
        "address",
        "phone",
        "small_sales_declared",
        "licence",
        "status",
        "submitted_at",
        "verified_at",
        "reviewed_by",
        "reviewed_at",
        "reject_reason",
    )
    fields = readonly_fields
    inlines = (HistoryInline,)
    actions = ("verify_selected", "reject_selected")
    acted_on = True

    def get_queryset(self, request):
        return super().get_queryset(request).defer("licence_image")

    @admin.display(description=_("agent"), ordering="agent__user__username")
    def agent_user(self, obj):
        return obj.agent.user

    @admin.display(description=_("storefront"))
    def storefront(self, obj):
        sf = getattr(obj.agent, "storefront", None)
        return f"{sf.name} (/s/{sf.slug}/)" if sf is not None else "—"

    @admin.display(description=_("ID number / credit code"))
    def number_shown(self, obj):
        return obj.credit_code if obj.kind == OperatorIdentity.Kind.BUSINESS else id_number_masked(obj)

    @admin.display(description=_("business licence image"))
    def licence(self, obj):
        if obj.kind != OperatorIdentity.Kind.BUSINESS:
            return "—"
        url = reverse("admin:agents_operatoridentity_licence", args=[obj.pk])
        return format_html('<a href="{}" target="_blank" rel="noopener">{}</a>', url, _("Open the image"))

    def get_urls(self):
        def wrap(view):
            return self.admin_site.admin_view(view)

        return [
            path("<int:pk>/verify/", wrap(self.verify_view), name="agents_operatoridentity_verify"),
            path("<int:pk>/reject/", wrap(self.reject_view), name="agents_operatoridentity_reject"),
            path("<int:pk>/reveal/", wrap(self.reveal_view), name="agents_operatoridentity_reveal"),
            path("<int:pk>/licence/", wrap(self.licence_view), name="agents_operatoridentity_licence"),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra = {
            "can_act": request.user.has_perm(CHANGE_PERMISSION),
            "can_reveal": request.user.has_perm(operators.REVEAL_PERMISSION),
            **(extra_context or {}),
        }
        return super().change_view(request, object_id, form_url, extra_context=extra)

    def _require(self, request, permission):
        if not request.user.has_perm(permission):
            raise PermissionDenied

    def _change_url(self, identity):
        return reverse("admin:agents_operatoridentity_change", args=[identity.pk])

    # --- decisions ------------------------------------------------------------------------------

    @admin.action(description=_("Verify selected operator identities"), permissions=["change"])
    def verify_selected(self, request, queryset):
        for identity in queryset.filter(status=Status.SUBMITTED).order_by("pk"):
            admin_action_run(
                self,
                request,
                lambda i=identity: operators.operator_identity_verify(
                    identity_id=i.pk, by=request.user, request=request
                ),
                label=str(identity),
                done=_("%(name)s verified.") % {"name": identity},
            )
        skipped = queryset.exclude(status=Status.SUBMITTED).count()
        if skipped:
            self.message_user(
                request, _("%(n)d identity(ies) were not awaiting verification: left as they are.") % {"n": skipped}
            )

    @admin.action(description=_("Reject selected operator identities (asks for a reason)…"), permissions=["change"])
    def reject_selected(self, request, queryset):
        form = RejectForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            for identity in queryset.order_by("pk"):
                admin_action_run(
                    self,
                    request,
                    lambda i=identity: operators.operator_identity_reject(
                        identity_id=i.pk, by=request.user, reason=form.cleaned_data["reason"], request=request
                    ),
                    label=str(identity),
                    done=_("%(name)s rejected.") % {"name": identity},
                )
            return None
        return self._reject_page(request, list(queryset.select_related("agent__user")), form, action=True)

    def _reject_page(self, request, items, form, *, action: bool):
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Reject operator identities"),
            "items": items,
            "form": form,
            "action": action,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/agents/operatoridentity/reject.html", context)

    def verify_view(self, request, pk):
        return require_POST(self._verify)(request, pk)

    def _verify(self, request, pk):
        self._require(request, CHANGE_PERMISSION)
        identity = get_object_or_404(OperatorIdentity.objects.defer("licence_image"), pk=pk)
        admin_action_run(
            self,
            request,
            lambda: operators.operator_identity_verify(identity_id=identity.pk, by=request.user, request=request),
            label=str(identity),
            done=_("%(name)s verified.") % {"name": identity},
        )
        return redirect(self._change_url(identity))

    def reject_view(self, request, pk):
        self._require(request, CHANGE_PERMISSION)
        identity = get_object_or_404(_identities().select_related("agent__user"), pk=pk)
        form = RejectForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            ok, _result = admin_action_run(
                self,
                request,
                lambda: operators.operator_identity_reject(
                    identity_id=identity.pk, by=request.user, reason=form.cleaned_data["reason"], request=request
                ),
                label=str(identity),
                done=_("%(name)s rejected.") % {"name": identity},
            )
            if ok:
                return redirect(self._change_url(identity))
        return self._reject_page(request, [identity], form, action=False)

    # --- what only some staff see ------------------------------------------------------------------

    def reveal_view(self, request, pk):
        """The full ID number (POST: a deliberate act, audited; refused ones too)."""
        identity = get_object_or_404(_identities().select_related("agent__user"), pk=pk)
        number = None
        if request.method == "POST":
            number = operators.operator_id_number_reveal(identity=identity, by=request.user, request=request)
        elif not request.user.has_perm(operators.REVEAL_PERMISSION):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Reveal the ID number"),
            "identity": identity,
            "masked": id_number_masked(identity),
            "number": number,
        }
        response = TemplateResponse(request, "admin/agents/operatoridentity/reveal.html", context)
        response["Cache-Control"] = "private, no-store"
        return response

    def licence_view(self, request, pk):
        if not (request.user.has_perm(VIEW_PERMISSION) or request.user.has_perm(CHANGE_PERMISSION)):
            raise PermissionDenied
        data = OperatorIdentity.objects.filter(pk=pk).values_list("licence_image", flat=True).first()
        if not data:
            raise Http404
        response = HttpResponse(bytes(data), content_type="image/jpeg")
        response["Cache-Control"] = "private, no-store"
        response["Content-Security-Policy"] = "default-src 'none'"
        response["X-Content-Type-Options"] = "nosniff"
        return response
