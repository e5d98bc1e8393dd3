"""The checkout's input, parsed in one place for the platform's checkout, a storefront's buy
form and the API's order creation."""

import uuid

from django import forms
from django.core.validators import validate_email
from django.utils.translation import gettext_lazy as _

from catalog.models import Product
from legal.forms import FIELD as AGREEMENTS_FIELD
from legal.forms import guest_agreements_field
from marketplace.templatetags.display import order_no_parse
from marketplace.text import email_domain_suggestion, email_normalise

from .selectors import orders as selectors
from .services.guest import QUERY_PASSWORD_MAX, QUERY_PASSWORD_MIN
from .services.guest_lookup import EMAIL, NUMBER, LookupQuery


def new_idempotency_key() -> str:
    """A fresh token for a checkout form: one form shown, one order placed."""
    return uuid.uuid4().hex


class CheckoutForm(forms.Form):
    """Quantity, the form's idempotency token and (for the API, where the URL names none) the
    product id. Nothing else posted is read: the price is always the server's.

    Bound with a ``product`` (the pages), the quantity is checked against its limits per order;
    ``quantity_shown`` is the quantity for the page, clamped into them. The rules and messages
    are ``orders.selectors``' (``key_refusal``, ``quantity_refusal``), which ``order_place``
    enforces again; ``error`` is the first refusal in the order ``order_place`` checks them.
    A post without a token (not from our form) gets a fresh one, so it places a new order.
    """

    idempotency_key = forms.CharField(required=False, strip=True)
    quantity = forms.CharField(required=False, strip=True)
    product_id = forms.CharField(required=False, strip=True)

    def __init__(self, data=None, *, product: Product | None = None, **kwargs):
        super().__init__(data, **kwargs)
        self.product = product

    def clean_idempotency_key(self) -> str:
        key = self.cleaned_data["idempotency_key"] or new_idempotency_key()
        if (why := selectors.key_refusal(key)) is not None:
            raise forms.ValidationError(why.message, code=why.code)
        return key

    def clean_quantity(self) -> int:
        quantity = selectors.quantity_parse(self.cleaned_data["quantity"])
        if (why := selectors.quantity_refusal(quantity, product=self.product)) is not None:
            raise forms.ValidationError(why.message, code=why.code)
        return quantity

    def clean_product_id(self) -> int | None:
        if self.product is not None:
            return self.product.pk
        raw = self.cleaned_data["product_id"]
        if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= 2**63 - 1:
            why = selectors.reason(selectors.ReasonCode.PRODUCT_MISSING)
            raise forms.ValidationError(why.message, code=why.code)
        return int(raw)

    @property
    def error(self) -> str | None:
        """The first error, in ``order_place``'s order (token, quantity, product), or None."""
        if self.is_valid():
            return None
        for name in ("idempotency_key", "quantity", "product_id"):
            if name in self.errors:
                return self.errors[name][0]
        return next(iter(self.non_field_errors()), None)

    @property
    def quantity_shown(self) -> int:
        """The quantity to fill in on the page: the one asked for (a whole number moved into the
        product's limits), else the product's minimum."""
        return self.quantity_within(None)

    def quantity_within(self, stock: int | None) -> int:
        """``quantity_shown``, and no more than the ``stock`` (``order_place`` would refuse
        more): the quantity and the total a page shows are always ones that can be bought."""
        raw = self.data.get("quantity") if self.is_bound else None
        return selectors.quantity_clamp(raw, product=self.product, stock=stock)


class GuestForm(forms.Form):
    """What a visitor without an account adds to the checkout: the email the order goes to
    (typed twice, and the two must match) and an optional query password."""

    guest_email = forms.EmailField(max_length=254, label=_("Email"))
    guest_email_confirm = forms.EmailField(max_length=254, label=_("Email again"))
    # The address a likely misspelling was pointed out for (``clean``): sent back with the form, so
    # that submitting the same address again confirms it as typed.
    guest_email_checked = forms.CharField(required=False, max_length=254)
    query_password = forms.CharField(
        required=False,
        strip=False,
        min_length=QUERY_PASSWORD_MIN,
        max_length=QUERY_PASSWORD_MAX,
        label=_("Query password (optional)"),
    )
    # For products that need a verified real name (compliance.realname): checked by order_place.
    real_name = forms.CharField(required=False, max_length=60, label=_("Name"))
    id_number = forms.CharField(required=False, max_length=40, label=_("Identity card number"))

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # A required box accepting the user agreement, refund policy and privacy policy in force
        # (none published: no box). orders.views.orders.placed records the acceptance.
        self.agreements = guest_agreements_field(self)

    def clean(self):
        data = super().clean()
        one, two = data.get("guest_email"), data.get("guest_email_confirm")
        self.suggestion = None
        if one and two and one.strip().lower() != two.strip().lower():
            self.add_error("guest_email_confirm", _("The two email addresses do not match."))
        elif one:
            # Typed twice alike is no proof (copied, or the same slip twice), and the order's link
            # goes only to this address: a guest with a wrong one cannot find the order again.
            self.suggestion = email_domain_suggestion(one, confirmed=data.get("guest_email_checked") or "")
            if self.suggestion:
                self.add_error(
                    "guest_email",
                    _(
                        "Did you mean %(suggestion)s? The link to your order goes to this address only. "
                        "Correct it, or submit again to use %(typed)s as it is."
                    )
                    % {"suggestion": self.suggestion, "typed": email_normalise(one)},
                )
        return data

    @property
    def error(self) -> str | None:
        """The first error (email, confirmation, password), or None."""
        if self.is_valid():
            return None
        for name in ("guest_email", "guest_email_confirm", "query_password", AGREEMENTS_FIELD):
            if name in self.errors:
                return self.errors[name][0]
        return next(iter(self.non_field_errors()), None)


class GuestLookupForm(forms.Form):
    """The order lookup: an order number or an email in one box, and an optional query password
    (none, or ``send_link`` pressed: a one-time link is emailed instead)."""

    query = forms.CharField(max_length=254, label=_("Order number or email"))
    query_password = forms.CharField(
        required=False, strip=False, max_length=QUERY_PASSWORD_MAX, label=_("Query password")
    )

    def clean_query(self):
        text = self.cleaned_data["query"].strip()
        if "@" in text:
            email = email_normalise(text)
            try:
                validate_email(email)
            except forms.ValidationError:
                raise forms.ValidationError(_("Enter a valid email address.")) from None
            return LookupQuery(EMAIL, email)
        number = order_no_parse(text)
        if not 10 <= len(number) <= 32:
            raise forms.ValidationError(_("Enter the order number (letters and digits) or the order's email."))
        return LookupQuery(NUMBER, number)

    @property
    def error(self) -> str | None:
        if self.is_valid():
            return None
        for name in ("query", "query_password"):
            if name in self.errors:
                return self.errors[name][0]
        return None
