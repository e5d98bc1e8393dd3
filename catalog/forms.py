from django import forms
from django.utils.translation import gettext_lazy as _

from . import importing
from .models import Product, Supplier

MAX_UPLOAD = 20 * 1024 * 1024


class StockImportForm(forms.Form):
    product = forms.ModelChoiceField(Product.objects.select_related("category"), label=_("Product"))
    supplier = forms.ModelChoiceField(Supplier.objects.all(), label=_("Supplier"))
    cost_price = forms.DecimalField(label=_("Cost price per code"), min_value=0, max_digits=12, decimal_places=2)
    text = forms.CharField(
        label=_("Paste codes"),
        required=False,
        widget=forms.Textarea(
            attrs={"rows": 10, "class": "vLargeTextField", "spellcheck": "false", "autocomplete": "off"}
        ),
        help_text=_(
            "One code per line: 'secret', or 'card number' and 'secret' separated by ----, a tab, a comma or a space."
        ),
    )
    file = forms.FileField(
        label=_("or upload a CSV/TXT file"), required=False, help_text=_("UTF-8 or GB18030; at most 20 MB.")
    )

    def clean(self):
        data = super().clean()
        upload = data.get("file")
        text = data.get("text") or ""
        if upload and text.strip():
            raise forms.ValidationError(_("Paste a list or upload a file, not both."))
        if upload:
            if upload.size > MAX_UPLOAD:
                raise forms.ValidationError(_("The file is larger than 20 MB."))
            name = upload.name.lower()
            if not name.endswith((".csv", ".txt")):
                raise forms.ValidationError(_("Upload a .csv or .txt file."))
            try:
                data["text"] = importing.decode_upload(upload.read())
            except ValueError as exc:
                raise forms.ValidationError(str(exc)) from None
            data["csv_format"] = name.endswith(".csv")
            data["source_name"] = upload.name
        else:
            if not text.strip():
                raise forms.ValidationError(_("Paste the codes or choose a file."))
            data["csv_format"] = False
            data["source_name"] = _("pasted list")
        return data


class RevealForm(forms.Form):
    reason = forms.CharField(label=_("Reason (recorded)"), max_length=200)
