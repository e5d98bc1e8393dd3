from allauth.mfa.models import Authenticator
from django import forms
from django.contrib import admin, messages
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from marketplace.admin import ReadOnlyAdmin, ReadOnlyInline

from . import services
from .models import AuditEvent, CreditEvent, Qualification, QualificationChange, QualificationWarning
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
class AuthenticatorAdmin(admin.ModelAdmin):
    list_display = ("user", "type", "created_at", "last_used_at")
    list_filter = ("type",)
    search_fields = ("user__email",)
    fields = ("user", "type", "created_at", "last_used_at")
    readonly_fields = fields
    actions = ("reset_two_factor",)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

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
