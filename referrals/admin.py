"""Referrals in admin: read-only records with their history; staff cancel a referral (a paid
reward is reversed from the inviter's wallet) with a reason, audited (services.referral_cancel)."""

from django import forms
from django.contrib import admin
from django.contrib.admin import helpers
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _

from marketplace.admin import ReadOnlyAdmin, ReadOnlyInline
from marketplace.errors import admin_action_run

from . import services
from .models import InviteCode, Referral, ReferralStatusChange
from .selectors import email_masked


class CancelForm(forms.Form):
    reason = forms.CharField(label=_("Reason"), max_length=300, widget=forms.Textarea(attrs={"rows": 3}))


class HistoryInline(ReadOnlyInline):
    model = ReferralStatusChange
    fields = ("at", "from_status", "to_status", "actor", "note")


@admin.register(Referral)
class ReferralAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "inviter",
        "invitee_masked",
        "status",
        "order",
        "window_closes_at",
        "reward",
        "reason",
    )
    list_filter = ("status", "reason")
    search_fields = ("inviter__email", "invitee__email")
    list_select_related = ("inviter", "invitee", "order")
    inlines = (HistoryInline,)
    actions = ("cancel_selected",)
    acted_on = True

    @admin.display(description=_("invitee"))
    def invitee_masked(self, obj):
        return email_masked(obj.invitee.email)

    @admin.action(description=_("Cancel the reward (with a reason)"), permissions=["change"])
    def cancel_selected(self, request, queryset):
        form = CancelForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            for referral in queryset.order_by("pk"):
                admin_action_run(
                    self,
                    request,
                    lambda r=referral: services.referral_cancel(
                        referral_id=r.pk, by=request.user, reason=form.cleaned_data["reason"], request=request
                    ),
                    label=f"#{referral.pk}",
                    done=_("Referral #%(n)s cancelled.") % {"n": referral.pk},
                )
            return None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Cancel referral rewards"),
            "items": list(queryset.select_related("inviter", "invitee")),
            "form": form,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/referrals/referral/cancel.html", context)


@admin.register(InviteCode)
class InviteCodeAdmin(ReadOnlyAdmin):
    list_display = ("user", "code", "created_at")
    search_fields = ("user__email", "code")
