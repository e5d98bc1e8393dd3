"""The public form for rights holders' notices (电子商务法 第四十二条), the public register of the
notices and how each went (第四十四条), and the staff-only download of the ledger's documents
(private storage, never under MEDIA)."""

from django import forms
from django.http import FileResponse, Http404
from django.shortcuts import redirect, render
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods

from marketplace.http import client_ip
from marketplace.permissions import staff_can_view
from marketplace.ratelimit import rate_limited

from . import selectors, services
from .models import AuthorisationReview, RightsNotice

FILES_MAX = 3


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class DocumentsField(forms.FileField):
    widget = MultipleFileInput(attrs={"accept": "application/pdf,image/png,image/jpeg,image/webp"})

    def clean(self, data, initial=None):
        if not data:
            return []
        if not isinstance(data, (list, tuple)):
            data = [data]
        uploads = [super(DocumentsField, self).clean(d, initial) for d in data if d]
        checked = []
        for upload in uploads:
            try:
                checked.append(
                    services.document_check(name=upload.name, data=upload.read(services.DOCUMENT_MAX_BYTES + 1))
                )
            except services.RightsError as error:
                raise forms.ValidationError(str(error)) from None
        return checked


class NoticeForm(forms.Form):
    """The notice's parts that 电子商务法 第四十二条 asks for: who, the product, the right, preliminary
    evidence; and the notifier's declaration (a wrongful notice's liability)."""

    notifier_name = forms.CharField(
        label=gettext_lazy("Your name or your company's"),
        max_length=120,
        widget=forms.TextInput(attrs={"autocomplete": "organization"}),
    )
    notifier_email = forms.EmailField(
        label=gettext_lazy("Email"),
        help_text=gettext_lazy("The receipt, and any counter-notice, are sent here."),
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )
    product_reference = forms.CharField(
        label=gettext_lazy("The product"),
        max_length=300,
        help_text=gettext_lazy("The product page's address (copy it from your browser), or the product's code."),
    )
    right_claimed = forms.ChoiceField(label=gettext_lazy("The right you hold"), choices=RightsNotice.Right.choices)
    right_detail = forms.CharField(
        label=gettext_lazy("Registration or certificate number"),
        max_length=200,
        required=False,
        help_text=gettext_lazy("E.g. the trademark registration or copyright registration number."),
    )
    evidence = forms.CharField(
        label=gettext_lazy("Preliminary evidence"),
        max_length=5000,
        min_length=20,
        widget=forms.Textarea(attrs={"rows": 6}),
        help_text=gettext_lazy(
            "Why this product infringes your right: what you own, and what is wrong with the product."
        ),
    )
    files = DocumentsField(
        label=gettext_lazy("Supporting documents (optional)"),
        required=False,
        help_text=gettext_lazy("Up to 3 files: PDF, PNG, JPEG or WebP, at most 10 MB each."),
    )
    declaration = forms.BooleanField(
        label=gettext_lazy(
            "I declare that the information above is true and that I hold the right claimed. I understand "
            "that a wrongful notice that causes loss makes me liable for it, and a malicious one for twice "
            "the loss (E-Commerce Law Art. 42)."
        ),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name, field in self.fields.items():
            css = (
                "form-check-input"
                if name == "declaration"
                else ("form-select" if name == "right_claimed" else "form-control")
            )
            field.widget.attrs["class"] = css

    def clean_files(self):
        files = self.cleaned_data.get("files") or []
        if len(files) > FILES_MAX:
            raise forms.ValidationError(gettext_lazy("Up to 3 files."))
        return files


def _notice_subject(request, *args, **kwargs) -> str | None:
    email = (request.POST.get("notifier_email") or "").strip().lower()
    return f"email:{email}" if email else None


@require_http_methods(["GET", "POST"])
@rate_limited(
    "rights_notice",
    subject=_notice_subject,
    reason=gettext_lazy("Too many notices were filed from here."),
)
def notice_new(request):
    form = NoticeForm(request.POST or None, request.FILES or None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            notice = services.notice_file(
                product_reference=data["product_reference"],
                notifier_name=data["notifier_name"],
                notifier_email=data["notifier_email"],
                right_claimed=data["right_claimed"],
                right_detail=data["right_detail"],
                evidence=data["evidence"],
                declaration=data["declaration"],
                files=data["files"],
                ip=client_ip(request),
                request=request,
            )
        except services.RightsError as error:
            form.add_error(error.field if error.field in form.fields else None, str(error))
        else:
            request.session["rights_notice_filed"] = notice.number
            return redirect("rights:notice_filed")
    return render(request, "rights/notice_new.html", {"form": form})


@require_GET
def notice_filed(request):
    """The receipt of the notice this browser just filed (its reference, from the session)."""
    number = request.session.get("rights_notice_filed")
    notice = RightsNotice.objects.select_related("product").filter(number=number).first() if number else None
    if notice is None:
        return redirect("rights:notice_new")
    return render(request, "rights/notice_filed.html", {"notice": notice})


@require_GET
def notice_list(request):
    """The public register of notices (电子商务法 第四十四条: 及时公示 the notices, the counter-notices
    and the outcomes): newest first, 30 a page, filtered by status and searched by reference or
    product name. Only public fields (``rights.selectors.PublicNotice``)."""
    status = request.GET.get("status", "")
    query = request.GET.get("q", "").strip()
    page, notices = selectors.notices_public_page(status=status, query=query, page=request.GET.get("page"))
    return render(
        request,
        "rights/notice_list.html",
        {
            "page": page,
            "notices": notices,
            "status": status if status in RightsNotice.Status.values else "",
            "search": query[:100],  # not "query": base.html fills the site search with that
            "statuses": RightsNotice.Status.choices,
        },
    )


@require_GET
def notice_detail(request, number: str):
    """One notice of the register with its timeline (the status history, timestamped)."""
    notice = selectors.notice_public(number=number)
    if notice is None:
        raise Http404
    return render(request, "rights/notice_detail.html", {"notice": notice})


@require_GET
def document(request, pk: int):
    """A review's or a notice's document, to staff who may view that record (the model
    permission, as its admin asks); 404 to anyone else."""
    found = selectors.document_for_staff(
        pk=pk,
        may_view_reviews=staff_can_view(request.user, AuthorisationReview),
        may_view_notices=staff_can_view(request.user, RightsNotice),
    )
    if found is None:
        raise Http404
    try:
        handle = open(services.document_path(found), "rb")  # noqa: SIM115 (FileResponse closes it)
    except FileNotFoundError:
        raise Http404 from None
    response = FileResponse(handle, content_type=found.content_type, as_attachment=True, filename=found.original_name)
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'"
    response["Cache-Control"] = "private, no-store"
    return response
