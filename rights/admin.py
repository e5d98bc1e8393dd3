"""Staff's side of the rights ledger: authorisation reviews (submit with documents, approve with a
validity, reject, revoke, export the 台账 to XLSX) and rights notices (record a counter-notice,
report a complaint or lawsuit, record a withdrawal, forward again). Every decision goes through
``rights.services`` (status change row, audit row).

The product admin is catalog's, extended here (rights sits above catalog): turning a product on
sale is refused without an approved, unexpired review or with a hold (``product_sale_refusal``).
"""

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _

from catalog.admin import ProductAdmin
from catalog.forms import ProductAdminForm
from catalog.models import Product
from compliance.models import AuditEvent
from compliance.services import audit_record
from marketplace.admin import ReadOnlyInline
from marketplace.errors import admin_action_run

from . import selectors, services
from .models import (
    AuthorisationReview,
    AuthorisationReviewStatusChange,
    ReviewWarning,
    RightsDocument,
    RightsNotice,
    RightsNoticeStatusChange,
)
from .views import DocumentsField

Status = AuthorisationReview.Status
NoticeStatus = RightsNotice.Status


def _document_link(document: RightsDocument):
    return format_html(
        '<a href="{}">{}</a> ({} KB)',
        reverse("rights:document", args=[document.pk]),
        document.original_name,
        max(1, document.size // 1024),
    )


class DocumentInline(ReadOnlyInline):
    model = RightsDocument
    fields = ("kind", "file", "content_type", "uploaded_at", "uploaded_by", "sha256")
    readonly_fields = fields
    verbose_name_plural = _("documents (private)")

    @admin.display(description=_("file"))
    def file(self, obj):
        return _document_link(obj)


class ReviewHistoryInline(ReadOnlyInline):
    model = AuthorisationReviewStatusChange
    fields = ("at", "from_status", "to_status", "actor", "note")
    readonly_fields = fields
    verbose_name_plural = _("status history")


class ReviewWarningInline(ReadOnlyInline):
    model = ReviewWarning
    fields = ("sent_at", "stage", "valid_until", "recipients")
    readonly_fields = fields
    verbose_name_plural = _("expiry warnings sent")


class ReviewSubmitForm(forms.ModelForm):
    documents = DocumentsField(
        label=_("Documents"),
        help_text=_("The authorisation letter, the certificate: PDF, PNG, JPEG or WebP, at most 10 MB each."),
    )

    class Meta:
        model = AuthorisationReview
        fields = ("supplier", "products", "certificate_no", "rights_holder", "submission_note")

    def clean(self):
        cleaned = super().clean()
        supplier, products = cleaned.get("supplier"), cleaned.get("products")
        if supplier and products:
            foreign = [p.name for p in products if p.supplier_id != supplier.pk]
            if foreign:
                self.add_error(
                    "products",
                    _("These products come from another supplier: %(names)s.") % {"names": "、".join(foreign)},
                )
        return cleaned


class ApproveForm(forms.Form):
    valid_until = forms.DateField(
        label=_("Valid until"),
        help_text=_("The last day the products may be sold under this authorisation (YYYY-MM-DD)."),
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    note = forms.CharField(
        label=_("Decision note"), required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 3})
    )


class NoteForm(forms.Form):
    note = forms.CharField(label=_("Note"), max_length=2000, widget=forms.Textarea(attrs={"rows": 3}))


class CounterNoticeForm(forms.Form):
    text = forms.CharField(
        label=_("Counter-notice"),
        max_length=5000,
        widget=forms.Textarea(attrs={"rows": 8}),
        help_text=_("The supplier's statement that there is no infringement, with its preliminary evidence."),
    )
    received_at = forms.DateTimeField(
        label=_("Received from the supplier at"),
        required=False,
        help_text=_("Empty: now. It is emailed to the rights holder when you save; the 15 days count from then."),
    )
    files = DocumentsField(label=_("Evidence (optional)"), required=False)


def _decision_view(modeladmin, request, obj, *, title: str, form, intro: str = ""):
    context = {
        **modeladmin.admin_site.each_context(request),
        "opts": modeladmin.model._meta,
        "original": obj,
        "title": title,
        "form": form,
        "intro": intro,
        "change_url": reverse(
            f"admin:{modeladmin.model._meta.app_label}_{modeladmin.model._meta.model_name}_change", args=[obj.pk]
        ),
    }
    return TemplateResponse(request, "admin/rights/decision.html", context)


@admin.register(AuthorisationReview)
class AuthorisationReviewAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "supplier",
        "certificate_no",
        "products_shown",
        "status",
        "valid_until",
        "submitted_at",
        "submitted_by",
        "reviewer",
    )
    list_filter = ("status", "supplier")
    search_fields = ("certificate_no", "supplier__name", "products__name", "rights_holder")
    date_hierarchy = "submitted_at"
    filter_horizontal = ("products",)
    inlines = (DocumentInline, ReviewHistoryInline, ReviewWarningInline)
    actions = ("export_selected",)
    change_form_template = "admin/rights/authorisationreview/change_form.html"
    change_list_template = "admin/rights/authorisationreview/change_list.html"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("supplier", "submitted_by", "reviewer")

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = ReviewSubmitForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("supplier", "products", "certificate_no", "rights_holder", "submission_note", "documents")
        return (
            "supplier",
            "products_shown",
            "certificate_no",
            "rights_holder",
            "submission_note",
            "status",
            "submitted_at",
            "submitted_by",
            "reviewer",
            "decided_at",
            "decision_note",
            "valid_until",
            "expired_at",
            "revoked_at",
        )

    def get_readonly_fields(self, request, obj=None):
        return self.get_fields(request, obj) if obj is not None else ()

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else ()

    def has_delete_permission(self, request, obj=None):
        return False  # the ledger keeps every review

    def has_export_permission(self, request) -> bool:
        return request.user.has_perm("rights.export_ledger")

    @admin.display(description=_("products covered"))
    def products_shown(self, obj):
        return "、".join(p.name for p in obj.products.order_by("pk"))

    def save_model(self, request, obj, form, change):
        """An addition is a submission (``review_submit``: the documents stored, history, audit)."""
        if change:
            return
        data = form.cleaned_data
        review = services.review_submit(
            supplier_id=data["supplier"].pk,
            product_ids=[p.pk for p in data["products"]],
            certificate_no=data["certificate_no"],
            rights_holder=data.get("rights_holder", ""),
            note=data.get("submission_note", ""),
            documents=data["documents"],
            by=request.user,
            request=request,
        )
        obj.pk = review.pk
        obj.__dict__.update({k: v for k, v in review.__dict__.items() if not k.startswith("_")})

    def save_related(self, request, form, formsets, change):
        pass  # the service set the products

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("export/", wrap(self.export_view), name="rights_authorisationreview_export"),
            path("<int:pk>/approve/", wrap(self.approve_view), name="rights_authorisationreview_approve"),
            path("<int:pk>/reject/", wrap(self.reject_view), name="rights_authorisationreview_reject"),
            path("<int:pk>/revoke/", wrap(self.revoke_view), name="rights_authorisationreview_revoke"),
            *super().get_urls(),
        ]

    def _xlsx(self, request, queryset):
        data = selectors.ledger_xlsx(queryset)
        audit_record(
            action="rights.ledger_exported",
            outcome=AuditEvent.Outcome.ALLOWED,
            request=request,
            target="authorisation ledger",
            detail=f"{queryset.count() if queryset is not None else AuthorisationReview.objects.count()} review(s)",
        )
        response = HttpResponse(data, content_type="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
        name = f"authorisation-ledger-{timezone.localdate():%Y%m%d}.xlsx"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response

    @admin.action(description=_("Export the selected reviews (XLSX ledger)"), permissions=["export"])
    def export_selected(self, request, queryset):
        return self._xlsx(request, queryset)

    def export_view(self, request):
        if not self.has_export_permission(request):
            raise PermissionDenied
        return self._xlsx(request, None)

    def _decide(self, request, pk: int, *, form_class, title, intro, run, done):
        if not self.has_change_permission(request):
            raise PermissionDenied
        review = get_object_or_404(AuthorisationReview, pk=pk)
        form = form_class(request.POST or None)
        if request.method == "POST" and form.is_valid():
            ok, _result = admin_action_run(
                self, request, lambda: run(review, form.cleaned_data), label=str(review), done=done
            )
            if ok:
                return redirect("admin:rights_authorisationreview_change", review.pk)
        return _decision_view(self, request, review, title=title, form=form, intro=intro)

    def approve_view(self, request, pk: int):
        return self._decide(
            request,
            pk,
            form_class=ApproveForm,
            title=_("Approve the authorisation"),
            intro=_("The products it covers may be put on sale until the date you set. Check the documents first."),
            run=lambda review, data: services.review_approve(
                review_id=review.pk,
                by=request.user,
                valid_until=data["valid_until"],
                note=data["note"],
                request=request,
            ),
            done=_("Approved."),
        )

    def reject_view(self, request, pk: int):
        return self._decide(
            request,
            pk,
            form_class=NoteForm,
            title=_("Reject the authorisation"),
            intro=_("Say why: the note is kept in the ledger."),
            run=lambda review, data: services.review_reject(
                review_id=review.pk, by=request.user, note=data["note"], request=request
            ),
            done=_("Rejected."),
        )

    def revoke_view(self, request, pk: int):
        return self._decide(
            request,
            pk,
            form_class=NoteForm,
            title=_("Revoke the authorisation"),
            intro=_("Products it alone covers leave sale at once."),
            run=lambda review, data: services.review_revoke(
                review_id=review.pk, by=request.user, note=data["note"], request=request
            ),
            done=_("Revoked: the products it alone covered are off sale."),
        )


class NoticeHistoryInline(ReadOnlyInline):
    model = RightsNoticeStatusChange
    fields = ("at", "from_status", "to_status", "actor", "note")
    readonly_fields = fields
    verbose_name_plural = _("status history")


@admin.register(RightsNotice)
class RightsNoticeAdmin(admin.ModelAdmin):
    list_display = (
        "number",
        "product",
        "notifier_name",
        "right_claimed",
        "status",
        "received_at",
        "forwarded_at",
        "restore_due_at",
    )
    list_filter = ("status", "right_claimed")
    search_fields = ("number", "notifier_name", "notifier_email", "product__name")
    date_hierarchy = "received_at"
    inlines = (DocumentInline, NoticeHistoryInline)
    change_form_template = "admin/rights/rightsnotice/change_form.html"
    fields = (
        "number",
        "status",
        "product",
        "product_reference",
        "notifier_name",
        "notifier_email",
        "right_claimed",
        "right_detail",
        "evidence",
        "declaration_accepted_at",
        "ip",
        "received_at",
        "taken_down_at",
        "forwarded_to",
        "forwarded_at",
        "counter_notice",
        "counter_received_at",
        "counter_recorded_by",
        "counter_delivered_at",
        "restore_due_at",
        "complaint_note",
        "complaint_reported_at",
        "restored_at",
        "withdrawn_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request):
        return False  # notices come from the public form

    def has_delete_permission(self, request, obj=None):
        return False

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("<int:pk>/counter/", wrap(self.counter_view), name="rights_rightsnotice_counter"),
            path("<int:pk>/complaint/", wrap(self.complaint_view), name="rights_rightsnotice_complaint"),
            path("<int:pk>/withdraw/", wrap(self.withdraw_view), name="rights_rightsnotice_withdraw"),
            path("<int:pk>/forward/", wrap(self.forward_view), name="rights_rightsnotice_forward"),
            *super().get_urls(),
        ]

    def _act(self, request, pk: int, *, form_class, title, intro, run, done, files=False):
        if not self.has_change_permission(request):
            raise PermissionDenied
        notice = get_object_or_404(RightsNotice, pk=pk)
        form = form_class(request.POST or None, request.FILES or None) if files else form_class(request.POST or None)
        if request.method == "POST" and form.is_valid():
            ok, _result = admin_action_run(
                self, request, lambda: run(notice, form.cleaned_data), label=notice.number, done=done
            )
            if ok:
                return redirect("admin:rights_rightsnotice_change", notice.pk)
        return _decision_view(self, request, notice, title=title, form=form, intro=intro)

    def counter_view(self, request, pk: int):
        return self._act(
            request,
            pk,
            form_class=CounterNoticeForm,
            files=True,
            title=_("Record the supplier's counter-notice"),
            intro=_(
                "Saving emails it to the rights holder at once (E-Commerce Law Art. 43). The product comes back "
                "15 days later unless a complaint or lawsuit is reported here before then."
            ),
            run=lambda notice, data: services.notice_counter_record(
                notice_id=notice.pk,
                by=request.user,
                text=data["text"],
                received_at=data["received_at"],
                files=data["files"],
                request=request,
            ),
            done=_("Counter-notice recorded and forwarded to the rights holder."),
        )

    def complaint_view(self, request, pk: int):
        return self._act(
            request,
            pk,
            form_class=NoteForm,
            title=_("Report a complaint or lawsuit"),
            intro=_(
                "The rights holder showed that they filed a complaint with an authority or a lawsuit (or the "
                "supplier conceded): the product stays off sale. Note the authority or court, the case number, "
                "the date."
            ),
            run=lambda notice, data: services.notice_complaint_report(
                notice_id=notice.pk, by=request.user, note=data["note"], request=request
            ),
            done=_("Recorded: the product stays off sale."),
        )

    def withdraw_view(self, request, pk: int):
        return self._act(
            request,
            pk,
            form_class=NoteForm,
            title=_("Record the notice's withdrawal"),
            intro=_("The rights holder withdrew the notice: the product comes back unless another notice holds it."),
            run=lambda notice, data: services.notice_withdraw(
                notice_id=notice.pk, by=request.user, note=data["note"], request=request
            ),
            done=_("Withdrawal recorded."),
        )

    def forward_view(self, request, pk: int):
        def run(notice, data):
            if not services.notice_forward(notice_id=notice.pk, by=request.user):
                raise services.RightsError(_("Not forwarded: the supplier has no contact email, or the email failed."))

        return self._act(
            request,
            pk,
            form_class=forms.Form,
            title=_("Forward to the supplier again"),
            intro=_("The notice is emailed to the supplier's contact email."),
            run=run,
            done=_("Forwarded to the supplier."),
        )


# --- the product admin: no activation without an approved authorisation ------------------------


class ProductSaleForm(ProductAdminForm):
    """Turning a product on sale (a new one saved on sale, or off → on) needs an approved,
    unexpired authorisation review and no hold. Products already on sale keep their state.
    (And catalog's checks: a direct top-up's fields and supply mode.)"""

    def clean(self):
        cleaned = super().clean()
        turning_on = cleaned.get("is_active") and (self.instance.pk is None or not self.initial.get("is_active"))
        if turning_on:
            if self.instance.pk is None:
                why = str(
                    _(
                        "A new product starts off sale: save it with “on sale” unticked, submit its supplier's "
                        "authorisation for review, and put it on sale once approved."
                    )
                )
            else:
                why = services.product_sale_refusal(product=self.instance)
            if why:
                self.add_error("is_active", why)
        return cleaned


admin.site.unregister(Product)


@admin.register(Product)
class RightsProductAdmin(ProductAdmin):
    form = ProductSaleForm

    def get_readonly_fields(self, request, obj=None):
        return (*super().get_readonly_fields(request, obj), "sale_authorisation", "sale_hold")

    def get_changelist_form(self, request, **kwargs):
        kwargs.setdefault("form", ProductSaleForm)
        return super().get_changelist_form(request, **kwargs)

    @admin.display(description=_("sale authorisation"))
    def sale_authorisation(self, obj):
        if obj is None or not obj.pk:
            return "-"
        reviews = obj.authorisation_reviews.order_by("-submitted_at")[:10]
        if not reviews:
            return _("No authorisation review yet: the product cannot be put on sale.")
        return format_html_join(
            "",
            '<div><a href="{}">#{} {}</a> · {} · {}</div>',
            (
                (
                    reverse("admin:rights_authorisationreview_change", args=[r.pk]),
                    r.pk,
                    r.certificate_no,
                    r.get_status_display(),
                    r.valid_until or "",
                )
                for r in reviews
            ),
        )

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if "is_active" in form.changed_data:
            audit_record(
                action="rights.product_activated" if obj.is_active else "rights.product_deactivated",
                outcome=AuditEvent.Outcome.ALLOWED,
                request=request,
                target=f"product:{obj.pk}",
                detail="admin",
            )
