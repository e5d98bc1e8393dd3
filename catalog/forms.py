from django import forms
from django.utils.translation import gettext_lazy as _

from . import importing, topup
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


class ProductAdminForm(forms.ModelForm):
    """The product in admin, with a direct top-up's fields checked (``catalog.topup``) and the
    supply mode consistent with the kind (the database's constraints, said in words first)."""

    topup_preset = forms.ChoiceField(
        label=_("Start from a preset"),
        required=False,
        choices=[("", "—"), *topup.preset_choices()],
        help_text=_("Fills in the top-up fields when they are empty (a direct top-up only); edit them after."),
    )

    class Meta:
        model = Product
        fields = "__all__"  # noqa: DJ007  # the admin lays out the fields (ProductAdmin)
        help_texts = {
            "topup_fields": _(
                'Direct top-ups only: a list of fields, e.g. [{"name": "phone", "label": "手机号码", '
                '"pattern": "^1[3-9]\\\\d{9}$", "min_length": 11, "max_length": 11, "confirm": true, "help": ""}]. '
                "name: lower-case letters, digits, _; pattern: a regular expression the whole value must match; "
                "confirm: the buyer types it twice."
            ),
            "supply_cost": _("Manual top-ups: what one unit costs us, owed to the product's supplier when it is done."),
        }

    def clean(self):
        data = super().clean()
        kind, mode = data.get("kind"), data.get("supply_mode")
        fields = data.get("topup_fields")
        preset = data.get("topup_preset")
        Mode = Product.SupplyMode
        if kind == Product.Kind.DIRECT_TOPUP:
            if preset and not fields:
                fields = data["topup_fields"] = topup.preset_fields(preset)
            if mode not in (Mode.UPSTREAM, Mode.MANUAL):
                self.add_error(
                    "supply_mode", _("A direct top-up is supplied upstream or by staff by hand, never from stock.")
                )
            try:
                if not topup.declaration_parse(fields):
                    self.add_error("topup_fields", _("A direct top-up needs at least one field to ask the buyer."))
            except forms.ValidationError as exc:
                self.add_error("topup_fields", exc)
            if mode == Mode.MANUAL and data.get("supply_cost") is None:
                self.add_error("supply_cost", _("Give the cost per unit: it is owed to the supplier for each top-up."))
        else:
            if mode == Mode.MANUAL:
                self.add_error("supply_mode", _("Only a direct top-up can be supplied by hand."))
            if fields:
                self.add_error("topup_fields", _("Only a direct top-up asks the buyer for top-up fields."))
        return data
