from allauth.mfa.models import Authenticator
from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from accounts.admin import UserAdmin
from marketplace.admin import ReadOnlyAdmin, ReadOnlyInline, ReadOnlyMixin
from marketplace.errors import admin_action_run

from . import rating, realname, services
from .models import (
    AuditEvent,
    CreditEvent,
    CreditLevel,
    CreditOverride,
    MinorLimit,
    Qualification,
    QualificationChange,
    QualificationWarning,
    RealNameVerification,
)
from .services import mfa_reset_by_staff


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("at", "action", "outcome", "actor", "target", "ip", "path")
    list_filter = ("outcome", "action")
    search_fields = ("target", "path", "actor__email", "ip")
    date_hierarchy = "at"


@admin.register(CreditEvent)
class CreditEventAdmin(ReadOnlyAdmin):
    list_display = ("at", "owner", "kind", "reference", "detail")
    list_filter = ("kind",)
    search_fields = ("user__email", "email", "reference")
    date_hierarchy = "at"

    @admin.display(description=_("user"), ordering="user__email")
    def owner(self, obj):
        """The member, or "guest <email>" for a guest's event."""
        return obj.user if obj.user_id else _("guest %(email)s") % {"email": obj.email}


# Two-factor authenticators (allauth.mfa): staff see who has which and when it was last used,
# never the secrets; the one change is a reset of an account's two-factor (audited), for a
# colleague who lost their phone and recovery codes. Needs the "delete authenticator" permission.
admin.site.unregister(Authenticator)


@admin.register(Authenticator)
class AuthenticatorAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("user", "type", "created_at", "last_used_at")
    list_filter = ("type",)
    search_fields = ("user__email",)
    fields = ("user", "type", "created_at", "last_used_at")
    readonly_fields = fields
    actions = ("reset_two_factor",)

    def has_reset_permission(self, request) -> bool:
        return request.user.has_perm("mfa.delete_authenticator")

    @admin.action(description=_("Reset two-factor authentication of these accounts"), permissions=["reset"])
    def reset_two_factor(self, request, queryset):
        users = {a.user for a in queryset.select_related("user")}
        for user in sorted(users, key=lambda u: u.pk):
            mfa_reset_by_staff(user=user, by=request.user, request=request)
        self.message_user(
            request,
            ngettext(
                "Two-factor authentication reset for %(count)d account: it must set it up again.",
                "Two-factor authentication reset for %(count)d accounts: each must set it up again.",
                len(users),
            )
            % {"count": len(users)},
            messages.SUCCESS,
        )


class QualificationForm(forms.ModelForm):
    """The fields staff type; the image is uploaded here and re-encoded by the service
    (``qualification_image_encode``); each kind's rules are the service's (``qualification_clean``)."""

    image_upload = forms.FileField(
        label=_("Image"),
        required=False,
        help_text=_("A scan or photo of the licence: PNG, JPEG or WebP, at most 5 MB. Shown on the public page."),
        widget=forms.ClearableFileInput(attrs={"accept": "image/png,image/jpeg,image/webp"}),
    )
    image_remove = forms.BooleanField(label=_("Remove the image"), required=False)

    class Meta:
        model = Qualification
        fields = services.QUALIFICATION_FIELDS

    def clean_image_upload(self):
        upload = self.cleaned_data.get("image_upload")
        if upload is None:
            return None
        data = upload.read(services.IMAGE_MAX_BYTES + 1)
        try:
            return services.qualification_image_encode(data=data)
        except services.QualificationError as error:
            raise forms.ValidationError(str(error)) from None

    def image_change(self):
        """What the save does to the image: new bytes, None (removed) or KEEP."""
        if self.cleaned_data.get("image_upload"):
            return self.cleaned_data["image_upload"]
        if self.cleaned_data.get("image_remove"):
            return None
        return services.KEEP

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        image = self.image_change()
        has_image = bool(self.instance.pk and self.instance.image_updated_at) if image is services.KEEP else bool(image)
        try:
            values = services.qualification_clean(
                {name: cleaned.get(name) for name in services.QUALIFICATION_FIELDS}, has_image=has_image
            )
        except services.QualificationError as error:
            field = error.field if error.field in self.fields else None
            self.add_error(field, str(error))
            return cleaned
        cleaned.update(values)
        return cleaned


class QualificationChangeInline(ReadOnlyInline):
    model = QualificationChange
    fields = ("at", "actor", "action", "changes_shown")
    readonly_fields = fields
    verbose_name_plural = _("history")

    @admin.display(description=_("changes"))
    def changes_shown(self, obj):
        return format_html_join(
            "", "<div><b>{}</b>: {} → {}</div>", ((name, old, new) for name, (old, new) in obj.changes.items())
        )


class QualificationWarningInline(ReadOnlyInline):
    model = QualificationWarning
    fields = ("sent_at", "stage", "valid_until", "recipients")
    readonly_fields = fields
    verbose_name_plural = _("expiry warnings sent")


@admin.register(Qualification)
class QualificationAdmin(admin.ModelAdmin):
    """Staff record the platform's qualifications; each save goes through ``qualification_save``
    (history row, cache forgotten). No deletion: a retired qualification is hidden instead."""

    form = QualificationForm
    list_display = ("kind", "number", "company_name", "valid_until", "validity", "is_shown", "updated_at")
    list_filter = ("kind", "is_shown")
    search_fields = ("number", "company_name")
    readonly_fields = ("image_preview",)
    fields = (*services.QUALIFICATION_FIELDS, "image_preview", "image_upload", "image_remove")
    inlines = (QualificationChangeInline, QualificationWarningInline)

    def get_queryset(self, request):
        return super().get_queryset(request).defer("image")

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description=_("validity"))
    def validity(self, obj):
        if obj.valid_until is None:
            return _("Without end")
        if obj.valid_until < timezone.localdate():
            return format_html('<b style="color:#b00">{}</b>', _("Expired"))
        return _("%(days)d days left") % {"days": (obj.valid_until - timezone.localdate()).days}

    @admin.display(description=_("current image"))
    def image_preview(self, obj):
        if obj is None or not obj.pk or not obj.image_updated_at:
            return _("No image")
        url = reverse("compliance:qualification_image", args=[obj.pk])
        version = int(obj.image_updated_at.timestamp())
        return format_html(
            '<a href="{0}?v={1}" target="_blank" rel="noopener">'
            '<img src="{0}?v={1}" alt="" style="max-width:320px;max-height:240px"></a>',
            url,
            version,
        )

    def save_model(self, request, obj, form, change):
        saved = services.qualification_save(
            actor=request.user,
            qualification_id=obj.pk if change else None,
            values={name: form.cleaned_data.get(name) for name in services.QUALIFICATION_FIELDS},
            image=form.image_change(),
        )
        obj.pk = saved.pk
        obj._state.adding = False


# --- the credit rating (compliance.rating) ----------------------------------------------------


def credit_panel(*, user=None, email: str = ""):
    """A read-only panel for staff: the level (forced or computed), the score and each event
    behind it with its weight then and now. Shown on the user, order and ticket pages."""
    if user is None and not email:
        return "—"
    r = rating.credit_rating(user=user, email=email)
    head = format_html(
        "<div><b>{}</b> · {} {}</div>",
        r.level.label or _("Good"),
        _("score"),
        r.score_display,
    )
    if r.override is not None:
        head += format_html(
            "<div>{}</div>",
            _("Forced by staff until %(until)s (computed: %(level)s): %(reason)s")
            % {
                "until": timezone.localtime(r.override.expires_at).strftime("%Y-%m-%d %H:%M"),
                "level": r.computed_level.label or _("Good"),
                "reason": r.override.reason,
            },
        )
    if r.level.limits:
        head += format_html("<div>{}</div>", _(", ").join(r.level.limits))
    rows = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (
                timezone.localtime(e.at).strftime("%Y-%m-%d %H:%M"),
                e.label + (f" ({_('overturned at arbitration')})" if e.cancelled else ""),
                e.reference,
                f"{e.weight:.2f}",
                f"{e.now_weight:.2f}",
            )
            for e in r.events[:50]
        ),
    )
    table = format_html(
        '<table style="margin-top:.5em"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>'
        "</thead><tbody>{}</tbody></table>",
        _("time"),
        _("event"),
        _("reference"),
        _("weight"),
        _("weight now"),
        rows,
    )
    return head + (table if r.events else format_html("<div>{}</div>", _("No credit events.")))


@admin.register(CreditLevel)
class CreditLevelAdmin(admin.ModelAdmin):
    """The levels staff edit: a change applies to the next check (the cached table is forgotten)."""

    list_display = rating.LEVEL_FIELDS[1:]  # the level's fields, as the rating reads them (not pk)

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        rating.credit_levels_forget()
        services.audit_record(
            action="credit_level_save",
            outcome=AuditEvent.Outcome.ALLOWED,
            actor=request.user,
            target=obj.name,
            request=request,
            detail=", ".join(f"{name}={form.cleaned_data.get(name)}" for name in form.changed_data)[:500],
        )

    def delete_model(self, request, obj):
        super().delete_model(request, obj)
        rating.credit_levels_forget()

    def delete_queryset(self, request, queryset):
        super().delete_queryset(request, queryset)
        rating.credit_levels_forget()


@admin.register(CreditOverride)
class CreditOverrideAdmin(ReadOnlyAdmin):
    """Overrides are set from the user's page (audited); here they are listed and revoked."""

    list_display = ("created_at", "user", "email", "level", "expires_at", "revoked_at", "created_by", "reason")
    list_filter = ("level",)
    search_fields = ("user__email", "email", "reason")
    actions = ("revoke",)

    def has_revoke_permission(self, request) -> bool:
        return request.user.has_perm("compliance.add_creditoverride")

    @admin.action(description=_("Revoke these overrides"), permissions=["revoke"])
    def revoke(self, request, queryset):
        for override in queryset.select_related("user", "level").order_by("pk"):
            rating.credit_override_revoke(by=request.user, override=override, request=request)
        self.message_user(request, _("Revoked."), messages.SUCCESS)


class CreditOverrideForm(forms.Form):
    level = forms.ModelChoiceField(label=_("level"), queryset=CreditLevel.objects.all())
    expires_at = forms.DateTimeField(
        label=_("until"), help_text=_("e.g. 2026-12-31 23:59"), widget=forms.DateTimeInput(attrs={"size": 20})
    )
    reason = forms.CharField(label=_("reason"), max_length=300, widget=forms.TextInput(attrs={"size": 60}))


class CreditAdjustForm(forms.Form):
    weight = forms.DecimalField(
        label=_("points"), max_digits=6, decimal_places=2, help_text=_("Positive lowers the credit, negative lifts it.")
    )
    reason = forms.CharField(label=_("reason"), max_length=300, widget=forms.TextInput(attrs={"size": 60}))


User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class CreditUserAdmin(UserAdmin):
    """accounts' user admin with the credit panel, and a page to override the level or adjust
    the score (compliance sits above accounts, so it extends the admin here)."""

    readonly_fields = (*UserAdmin.readonly_fields, "credit")
    fieldsets = (*UserAdmin.fieldsets, (_("Credit"), {"fields": ("credit",)}))

    @admin.display(description=_("credit rating"))
    def credit(self, obj):
        if obj is None or not obj.pk:
            return "—"
        link = format_html(
            '<p><a class="button" href="{}">{}</a></p>',
            reverse("admin:accounts_user_credit", args=[obj.pk]),
            _("Override the level or adjust the score"),
        )
        return credit_panel(user=obj) + link

    def get_urls(self):
        return [
            path(
                "<int:pk>/credit/",
                self.admin_site.admin_view(self.credit_view),
                name="accounts_user_credit",
            ),
            *super().get_urls(),
        ]

    def credit_view(self, request, pk: int):
        target = get_object_or_404(User, pk=pk)
        if not request.user.has_perm("compliance.add_creditoverride"):
            raise PermissionDenied
        override_form = CreditOverrideForm(request.POST if request.POST.get("do") == "override" else None)
        adjust_form = CreditAdjustForm(request.POST if request.POST.get("do") == "adjust" else None)
        if request.method == "POST":
            if request.POST.get("do") == "override" and override_form.is_valid():
                data = override_form.cleaned_data
                ok, _result = admin_action_run(
                    self,
                    request,
                    lambda: rating.credit_override_set(
                        by=request.user,
                        user=target,
                        level=data["level"],
                        reason=data["reason"],
                        expires_at=data["expires_at"],
                        request=request,
                    ),
                    done=_("Level set."),
                )
                if ok:
                    return redirect(request.path)
            if request.POST.get("do") == "adjust" and adjust_form.is_valid():
                data = adjust_form.cleaned_data
                ok, _result = admin_action_run(
                    self,
                    request,
                    lambda: rating.credit_adjust(
                        by=request.user, user=target, weight=data["weight"], reason=data["reason"], request=request
                    ),
                    done=_("Score adjusted."),
                )
                if ok:
                    return redirect(request.path)
        context = {
            **self.admin_site.each_context(request),
            "title": _("Credit of %(email)s") % {"email": target.email},
            "target": target,
            "panel": credit_panel(user=target),
            "override_form": override_form,
            "adjust_form": adjust_form,
            "opts": self.model._meta,
        }
        return render(request, "admin/compliance/credit.html", context)


@admin.register(RealNameVerification)
class RealNameVerificationAdmin(ReadOnlyAdmin):
    """Every answer of the real-name provider, masked. The full name and number are shown only on
    the reveal page (a POST), to staff holding ``reveal_id_number``, each time audited."""

    list_display = ("checked_at", "owner", "source", "masked_name", "masked_number", "birth_date", "result", "provider")
    list_filter = ("result", "source", "provider")
    search_fields = ("user__email", "email")
    date_hierarchy = "checked_at"
    fields = (
        "user",
        "email",
        "source",
        "masked_name",
        "masked_number",
        "birth_date",
        "result",
        "provider",
        "checked_at",
        "reveal",
    )
    readonly_fields = fields

    @admin.display(description=_("who"))
    def owner(self, obj):
        return obj.user or obj.email or obj.get_source_display()

    @admin.display(description=_("name"))
    def masked_name(self, obj):
        return obj.name_masked

    @admin.display(description=_("identity card number"))
    def masked_number(self, obj):
        return obj.id_number_masked

    @admin.display(description=_("full name and number"))
    def reveal(self, obj):
        if obj is None or not obj.pk:
            return "—"
        return format_html(
            '<a class="button" href="{}">{}</a>',
            reverse("admin:compliance_realnameverification_reveal", args=[obj.pk]),
            _("Reveal (audited)"),
        )

    def get_urls(self):
        return [
            path(
                "<int:pk>/reveal/",
                self.admin_site.admin_view(self.reveal_view),
                name="compliance_realnameverification_reveal",
            ),
            *super().get_urls(),
        ]

    def reveal_view(self, request, pk: int):
        """GET: a confirmation (nothing shown, nothing written); POST: the full values, audited.
        Without the permission: 403, and the refusal is audited too."""
        row = get_object_or_404(RealNameVerification, pk=pk)
        shown = None
        if request.method == "POST":
            shown = realname.realname_reveal(actor=request.user, verification_id=row.pk, request=request)
        elif not request.user.has_perm("compliance.reveal_id_number"):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": _("Real-name verification %(pk)s") % {"pk": row.pk},
            "row": row,
            "shown": shown,
            "opts": self.model._meta,
        }
        return render(request, "admin/compliance/realname_reveal.html", context)


@admin.register(MinorLimit)
class MinorLimitAdmin(admin.ModelAdmin):
    """The minors' limits on game top-ups (国家新闻出版署 2019 通知 第三条), edited by staff."""

    list_display = ("age_from", "age_to", "allowed", "per_payment", "per_month")
    list_editable = ("allowed", "per_payment", "per_month")
    ordering = ("age_from",)
