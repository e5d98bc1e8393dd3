"""Shapes of the integration API's requests and answers (money as strings, e.g. "12.30")."""

import re

from django.core.validators import RegexValidator
from django.utils.translation import gettext_lazy as _
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from catalog.topup import TopupValuesError
from orders.forms import CheckoutForm

from .services import idempotency_key

AGENT_ORDER_NO_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,59}$"
# Our order numbers (``orders.models.new_order_number``: 28 of A-Z 0-9), with room to spare.
ORDER_NUMBER_PATTERN = r"^[A-Za-z0-9_-]{1,32}$"
# The callback URLs the API takes, as one pattern the OpenAPI schema can state (Django's URL
# validator checks the rest): http(s), a host name (two to six labels of at most 40, the last
# alphabetic or punycode, so never over DNS's 253) or an IPv4 address, an optional port and
# path; no user:password@, no spaces or control characters.
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38}[A-Za-z0-9])?"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_HOST = rf"(?:{_LABEL}\.){{1,5}}(?:[A-Za-z]{{2,24}}|xn--[A-Za-z0-9]{{1,20}})|(?:{_OCTET}\.){{3}}{_OCTET}|localhost"
CALLBACK_URL_PATTERN = rf"^https?://(?:{_HOST})(?::[0-9]{{1,5}})?(?:[/?#][!-~]*)?$"
# Ids are PostgreSQL bigints: a larger number names nothing (and must not reach the database).
MAX_ID = 2**63 - 1
_MAX_QUANTITY = 10_000


class ErrorSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Machine-readable reason, e.g. bad_signature, insufficient_balance.")
    message = serializers.CharField(help_text="What went wrong, for people.")


class ValidationErrorSerializer(ErrorSerializer):
    details = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()), help_text="Messages per request field."
    )


class TopupFieldSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="The key to send in the order's `topup` object.")
    label = serializers.CharField(help_text="What to ask your buyer for (Chinese).")
    pattern = serializers.CharField(
        required=False, allow_blank=True, help_text="A regular expression the whole value must match (empty: any)."
    )
    min_length = serializers.IntegerField(required=False, default=1)
    max_length = serializers.IntegerField(required=False, default=64)
    confirm = serializers.BooleanField(
        required=False,
        default=False,
        help_text="The website asks for it twice; your system should confirm it with your buyer too.",
    )
    help = serializers.CharField(required=False, allow_blank=True, default="")


class ProductSerializer(serializers.Serializer):
    # Reads an orders.selectors.PurchaseInfo: the product as the calling agent buys it. (A
    # comment, not a docstring: drf-spectacular would publish it in the schema.)
    id = serializers.IntegerField(source="product.id")
    name = serializers.CharField(source="product.name")
    category_id = serializers.IntegerField(source="product.category_id")
    category = serializers.CharField(source="product.category.name")
    kind = serializers.CharField(source="product.kind")
    description = serializers.CharField(source="product.description")
    face_value = serializers.DecimalField(max_digits=12, decimal_places=2)
    list_price = serializers.DecimalField(max_digits=12, decimal_places=2, help_text="The platform's retail price.")
    price = serializers.DecimalField(
        max_digits=12, decimal_places=2, help_text="What you pay per code (your level and chain)."
    )
    stock = serializers.IntegerField(help_text="Codes in stock right now.")
    min_per_order = serializers.IntegerField(source="min_quantity")
    max_per_order = serializers.IntegerField(source="max_quantity")
    topup_fields = TopupFieldSerializer(
        source="product.topup_fields",
        many=True,
        help_text="A direct top-up (`kind` `direct_topup`, 代充): the fields the order's `topup` object must "
        "carry, each checked before payment. Empty for codes.",
    )


# What the schema promises of a top-up value: text without NUL or lone surrogates (DRF's CharField
# refuses both), at most 200 characters; at most 20 fields.
@extend_schema_field(
    {
        "type": "object",
        "maxProperties": 20,
        "additionalProperties": {"type": "string", "maxLength": 200, "pattern": "^[^\\x00\\ud800-\\udfff]*$"},
    }
)
class TopupValuesField(serializers.DictField):
    """A direct top-up's values: an object of short strings. Its errors are one list under
    ``topup`` (the error body's ``details`` maps a field to a list of messages)."""

    MAX_KEYS = 20

    def to_internal_value(self, data):
        # Refused as the service refuses top-up values (422 topup_invalid), whatever is wrong.
        if isinstance(data, dict) and len(data) > self.MAX_KEYS:
            raise TopupValuesError({"topup": str(_("Too many top-up fields."))})
        try:
            return super().to_internal_value(data)
        except serializers.ValidationError:
            raise TopupValuesError(
                {"topup": str(_("Send the top-up fields as an object of texts of at most 200 characters."))}
            ) from None


class OrderCreateSerializer(serializers.Serializer):
    product_id = serializers.IntegerField(min_value=1, max_value=MAX_ID)
    quantity = serializers.IntegerField(min_value=1, max_value=_MAX_QUANTITY)
    agent_order_no = serializers.RegexField(
        AGENT_ORDER_NO_PATTERN,
        max_length=60,
        help_text="Your own order number (1-60 of A-Z a-z 0-9 _ . -): the same number is never placed twice.",
        error_messages={"invalid": _("Use 1 to 60 letters, digits, _ . or -, starting with a letter or digit.")},
    )
    callback_url = serializers.URLField(
        required=False,
        allow_blank=True,
        max_length=300,
        validators=[
            RegexValidator(
                CALLBACK_URL_PATTERN,
                _("Use an http:// or https:// address with a host name or an IPv4 address (and no user name)."),
            )
        ],
        help_text="Where to POST the signed 'order.delivered' callback (default: the key's callback URL). "
        "Part of the order: the same agent_order_no with another callback_url is a conflict (409).",
    )

    real_name = serializers.RegexField(
        r"^[^\x00-\x1f\x7f]*$",  # no control characters: the schema says so, the fuzzer keeps to it
        required=False,
        allow_blank=True,
        max_length=60,
        help_text="The end user's name as on their resident identity card. Required (with id_number) for products "
        "that need a verified real name and for game top-ups (the product's `requires_real_name`); ignored "
        "otherwise. Verified once by the platform's two-element check; without it such an order is refused "
        "(403 `real_name_required`).",
    )
    id_number = serializers.RegexField(
        r"^([0-9]{17}[0-9Xx])?$",
        required=False,
        allow_blank=True,
        max_length=18,
        help_text="The end user's 18-character resident identity card number (GB 11643-1999: 17 digits and a "
        "digit or X; its region, birth date and check character are checked locally first: 422 "
        "`id_number_invalid`). A mismatch or no record is 422 `real_name_refused`; the provider "
        "unavailable is 503 `real_name_unavailable` (try again later). Game top-ups follow the national "
        "limits on minors' spending by the verified age (403 `minor_limit`). Stored encrypted, never returned.",
    )

    coupon_code = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=40,
        help_text="A platform coupon code (case-insensitive): its discount is taken off the order's total, "
        "which is what your balance pays. API orders take platform coupons valid for everything or for the "
        "product or its category; a storefront's coupons (yours included) are for the shop's buyers and are "
        "refused. Refusals are 422 with the reason's code: `coupon_unknown`, `coupon_not_started`, "
        "`coupon_expired`, `coupon_used_up`, `coupon_out_of_scope`, `coupon_min_spend`, `coupon_per_user`, "
        "`coupon_new_buyers`, `coupon_nothing_off`, `coupon_refused`. Part of the order: the same "
        "agent_order_no with another coupon is a conflict (409).",
    )

    topup = TopupValuesField(
        child=serializers.CharField(max_length=200, allow_blank=True, trim_whitespace=True),
        required=False,
        help_text="A direct top-up's fields (the product's `topup_fields`), e.g. "
        '`{"phone": "13812345678"}`: each required, its length and pattern checked before anything is '
        "paid (422 `topup_invalid`, `details` naming `topup.<name>`); kept on the order and returned in it. "
        "Send each value once (no confirmation field). Ignored for products that are not top-ups.",
    )

    def validate_callback_url(self, value: str) -> str:
        if value and not value.lower().startswith(("https://", "http://")):
            raise serializers.ValidationError(_("Use an http:// or https:// address."))
        return value

    def validate(self, attrs: dict) -> dict:
        """Then the checkout's own parsing, as on the website (``orders.forms.CheckoutForm``);
        the product's limits and stock are ``order_place``'s (422 ``order_refused``)."""
        form = CheckoutForm(
            {
                "product_id": str(attrs["product_id"]),
                "quantity": str(attrs["quantity"]),
                "idempotency_key": idempotency_key(attrs["agent_order_no"]),
            }
        )
        if not form.is_valid():
            fields = {"idempotency_key": "agent_order_no"}
            raise serializers.ValidationError({fields.get(name, name): errors for name, errors in form.errors.items()})
        return {**attrs, "product_id": form.cleaned_data["product_id"], "quantity": form.cleaned_data["quantity"]}


_PLAIN_ORDER_FIELDS = frozenset(("product_id", "quantity", "agent_order_no"))
_PLAIN_AGENT_ORDER_NO = re.compile(AGENT_ORDER_NO_PATTERN)  # with fullmatch: no trailing newline


def order_create_data(data) -> dict:
    """``OrderCreateSerializer``'s validated data for ``data`` (a request's parsed body).

    The usual body, just the product, the quantity and the number (JSON integers and a plain
    number), is taken as it is: for it the serializer's fields and ``validate`` (the checkout
    form) can only return these same three values (``tests/test_api_order_form.py`` compares
    the two), and running them costs about a millisecond. Anything else, an optional field, a
    string for a number, a value out of range, goes through the serializer, which raises its
    ``ValidationError`` (400 ``invalid_request``) as before.
    """
    if type(data) is dict and data.keys() == _PLAIN_ORDER_FIELDS:
        product_id, quantity, number = data["product_id"], data["quantity"], data["agent_order_no"]
        if (
            type(product_id) is int
            and type(quantity) is int
            and type(number) is str
            and 1 <= product_id <= MAX_ID
            and 1 <= quantity <= _MAX_QUANTITY
            and _PLAIN_AGENT_ORDER_NO.fullmatch(number)
        ):
            return {"product_id": product_id, "quantity": quantity, "agent_order_no": number}
    form = OrderCreateSerializer(data=data)
    form.is_valid(raise_exception=True)
    return form.validated_data


class CodeSerializer(serializers.Serializer):
    card_number = serializers.CharField(help_text="Empty for products without a card number.")
    secret = serializers.CharField()


class OrderSerializer(serializers.Serializer):
    order_number = serializers.CharField(source="number", help_text="Our order number.")
    agent_order_no = serializers.CharField()
    status = serializers.ChoiceField(
        choices=["pending", "paid", "delivered", "expired", "cancelled", "refund_pending", "refunded"]
    )
    product_id = serializers.IntegerField()
    product_name = serializers.CharField()
    quantity = serializers.IntegerField()
    unit_price = serializers.DecimalField(max_digits=12, decimal_places=2)
    subtotal = serializers.DecimalField(max_digits=12, decimal_places=2, help_text="unit_price × quantity.")
    discount = serializers.DecimalField(
        max_digits=12, decimal_places=2, help_text="The coupon's discount (0.00 without a coupon)."
    )
    coupon_code = serializers.CharField(
        source="coupon_code_used", help_text="The coupon the order was placed with, upper case; empty if none."
    )
    total = serializers.DecimalField(
        max_digits=12, decimal_places=2, help_text="subtotal − discount: what your balance paid."
    )
    currency = serializers.CharField()
    callback_url = serializers.CharField()
    created_at = serializers.DateTimeField()
    paid_at = serializers.DateTimeField(allow_null=True)
    delivered_at = serializers.DateTimeField(allow_null=True)
    topup = serializers.DictField(
        source="topup_values",
        child=serializers.CharField(),
        help_text="A direct top-up's fields as given (empty for codes). A top-up order is `paid` until it is "
        "topped up (`delivered`, no codes: `codes` is an empty list) or fails (`refund_pending`, then `refunded`: "
        "your balance gets the total back).",
    )
    codes = CodeSerializer(
        source="revealed_codes",
        many=True,
        allow_null=True,
        help_text="The codes once delivered (each read is logged), otherwise null.",
    )


class BalanceSerializer(serializers.Serializer):
    currency = serializers.CharField()
    balance = serializers.DecimalField(
        max_digits=12, decimal_places=2, help_text="Your prepaid balance: API orders are paid from it."
    )
    commission_pending = serializers.DecimalField(
        max_digits=12, decimal_places=2, help_text="Commissions inside the refund window."
    )
    commission_available = serializers.DecimalField(
        max_digits=12, decimal_places=2, help_text="Commissions you can withdraw."
    )
