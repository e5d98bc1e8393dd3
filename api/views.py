"""The integration API, version 1. Views parse and validate input, call one service, render.

Every endpoint is authenticated by the request signature (``api.auth``), rate limited per
key (``api.throttling``) and answers errors as ``{"code": ..., "message": ...}`` (with
``details`` for a 400), whatever the input: an unknown URL under /api/, a body too large or
nested too deep, a control character in the path or the query, a bad page or filter.
"""

import io
import logging
import re
from decimal import Decimal

from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation, TooManyFieldsSent
from django.core.paginator import EmptyPage, Paginator
from django.db.models import Q
from django.http import JsonResponse
from django.shortcuts import render
from django.urls import Resolver404, resolve
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from drf_spectacular.views import SpectacularAPIView
from rest_framework import exceptions, status
from rest_framework.generics import ListAPIView
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import JSONParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView, exception_handler, set_rollback

from catalog import selectors as catalog_selectors
from compliance.services import audit_denied
from marketplace import admission
from marketplace.errors import ServiceError
from marketplace.http import client_ip
from orders.selectors import orders as order_selectors

from . import services
from .auth import SignedRequestAuthentication
from .serializers import (
    AGENT_ORDER_NO_PATTERN,
    MAX_ID,
    ORDER_NUMBER_PATTERN,
    BalanceSerializer,
    ErrorSerializer,
    OrderCreateSerializer,
    OrderSerializer,
    ProductSerializer,
    ValidationErrorSerializer,
    order_create_data,
)
from .throttling import ApiKeyRateThrottle

log = logging.getLogger(__name__)

CENT = Decimal("0.01")

# --- Input limits ----------------------------------------------------------------------------

# The largest request body the API reads (an order is a few hundred bytes). Checked from
# Content-Length before the body is read, and again on the bytes read.
MAX_BODY_BYTES = 64 * 1024
# The deepest JSON the API parses (an order is one object of scalars). Python's json parser
# recurses once per level and has no limit of its own.
MAX_JSON_DEPTH = 20

# ASCII control characters (C0 and DEL): never part of a product id, order number or filter,
# and a NUL cannot be stored in PostgreSQL at all.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_A_BRACKET = bytes(b for b in range(256) if b not in b"[]{}")


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"


class Busy(exceptions.Throttled):
    """Admission control (marketplace.admission): the platform takes no more orders this
    second, whoever asks. 429 ``busy`` with Retry-After."""


class InvalidCharacters(exceptions.ValidationError):
    """A control character in the path or the query: 400 ``invalid_characters``."""


def json_depth(data: bytes, limit: int) -> int:
    """The nesting depth of a JSON text, counting up to ``limit + 1`` (enough to refuse it).
    Strings are removed first so their brackets do not count; one pass over the brackets."""
    depth = deepest = 0
    for byte in _JSON_STRING.sub(b"", data).translate(None, _NOT_A_BRACKET):
        if byte in b"[{":
            depth += 1
            deepest = max(deepest, depth)
            if depth > limit:
                break
        else:
            depth -= 1
    return deepest


class ApiJSONParser(JSONParser):
    """DRF's strict JSON parser (no NaN or Infinity) behind a depth limit."""

    def parse(self, stream, media_type=None, parser_context=None):
        data = stream.read() if stream is not None else b""
        if len(data) > MAX_BODY_BYTES:
            raise PayloadTooLarge(_("The request body is larger than %(n)d bytes.") % {"n": MAX_BODY_BYTES})
        if json_depth(data, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
            raise exceptions.ParseError(_("The JSON is nested more than %(n)d levels deep.") % {"n": MAX_JSON_DEPTH})
        return super().parse(io.BytesIO(data), media_type, parser_context)


def request_screen(request, kwargs: dict) -> None:
    """Cheap checks before anything else reads the request (even before the signature): the
    size of the body, and no control character in a path parameter or the query."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0  # Django reads such a body as empty
    if length > MAX_BODY_BYTES:
        raise PayloadTooLarge(_("The request body is larger than %(n)d bytes.") % {"n": MAX_BODY_BYTES})
    bad = [name for name, value in kwargs.items() if isinstance(value, str) and _CONTROL.search(value)]
    for name, values in request.GET.lists():
        if _CONTROL.search(name) or any(_CONTROL.search(v) for v in values):
            bad.append(_CONTROL.sub("?", name)[:40])
    if bad:
        message = _("Control characters (such as NUL) are not allowed here.")
        raise InvalidCharacters({name: [message] for name in bad}, code="invalid_characters")


def query_int(request, name: str, *, default: int | None, maximum: int = MAX_ID) -> int | None:
    """A whole-number query parameter from 1 to ``maximum`` (ASCII digits only), else 400."""
    value = request.query_params.get(name)
    if value is None:
        return default
    if not re.fullmatch(r"[0-9]{1,19}", value) or not 1 <= int(value) <= maximum:
        raise exceptions.ValidationError({name: [_("A whole number from 1 to %(max)d.") % {"max": maximum}]})
    return int(value)


# --- Errors --------------------------------------------------------------------------------

_DEFAULT_CODES = {
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.ParseError: "invalid_json",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.NotAuthenticated: "missing_credentials",
}


def api_exception_handler(exc, context):
    """DRF's handler (status, Retry-After, WWW-Authenticate), with our error body. Anything
    unexpected is logged and answered with a JSON 500 (never Django's HTML page)."""
    # A service's refusal (ApiError, OrderError, OutOfStock, NotFound ...): its code, message and status. No
    # rollback: what a service did before refusing (an ApiError after cancelling) stays done.
    if isinstance(exc, ServiceError):
        return Response({"code": exc.code, "message": str(exc.message), **exc.extra}, status=exc.status)
    # Django's own refusals of a request (SuspiciousOperation) would be its HTML 400 page.
    if isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge(_("The request body is larger than %(n)d bytes.") % {"n": MAX_BODY_BYTES})
    elif isinstance(exc, TooManyFieldsSent):
        exc = exceptions.ValidationError({"query": [_("Too many query parameters.")]})
    elif isinstance(exc, SuspiciousOperation):
        exc = exceptions.ValidationError({"request": [_("The request is malformed.")]})
    response = exception_handler(exc, context)
    if response is None:
        request = context.get("request")
        log.exception("Unexpected error in the API", exc_info=exc)
        set_rollback()  # as DRF does for the errors it handles (matters under ATOMIC_REQUESTS)
        if request is not None:  # error reporting, and the test client, listen to this
            signals.got_request_exception.send(sender=None, request=request._request)
        return Response(
            {"code": "server_error", "message": _("Something went wrong on our side: try again later.")},
            status=status.HTTP_500_INTERNAL_SERVER_ERROR,
        )
    if isinstance(exc, InvalidCharacters):
        response.data = {
            "code": "invalid_characters",
            "message": _("The path or the query contains a control character."),
            "details": exc.detail,
        }
    elif isinstance(exc, exceptions.ValidationError):
        details = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        response.data = {"code": "invalid_request", "message": _("Check the request fields."), "details": details}
    elif isinstance(exc, exceptions.ParseError):
        response.data = {
            "code": "invalid_json",
            "message": _("The body is not valid JSON."),
            "details": {"body": [str(exc.detail)]},
        }
    elif isinstance(exc, Busy):
        wait = int(exc.wait or 1)
        response.data = {
            "code": admission.BUSY,
            "message": _(
                "The platform is taking more orders than it can place right now: nothing was placed or charged. "
                "Try again in %(n)d seconds."
            )
            % {"n": wait},
            "retry_after": wait,
        }
    elif isinstance(exc, exceptions.Throttled):
        wait = int(exc.wait or 1)
        response.data = {
            "code": "rate_limited",
            "message": _("Too many requests for this key: try again in %(n)d seconds.") % {"n": wait},
            "retry_after": wait,
        }
    else:
        code = getattr(exc, "api_code", None) or next(
            (c for cls, c in _DEFAULT_CODES.items() if isinstance(exc, cls)), None
        )
        response.data = {"code": code or getattr(exc, "default_code", "error"), "message": str(exc.detail)}
    return response


ERRORS = {
    400: OpenApiResponse(
        ValidationErrorSerializer,
        description="`invalid_request` (a field or query parameter; `details` says which), "
        "`invalid_characters` (a control character such as NUL in the path or the query), "
        "`invalid_json` (a body that is not JSON, or nested too deep).",
    ),
    401: OpenApiResponse(ErrorSerializer, description="Signature refused (see `code`)."),
    403: OpenApiResponse(ErrorSerializer, description="IP not in the key's allow-list, or agent disabled."),
    429: OpenApiResponse(
        ErrorSerializer,
        description="`rate_limited`: your key's rate limit; `busy` (order creation): the platform takes no more "
        "orders for the moment. Wait `Retry-After` seconds.",
    ),
}
NOT_FOUND = {404: OpenApiResponse(ErrorSerializer, description="`not_found`.")}
BODY_ERRORS = {
    413: OpenApiResponse(ErrorSerializer, description=f"`payload_too_large`: a body over {MAX_BODY_BYTES} bytes."),
    415: OpenApiResponse(ErrorSerializer, description="`unsupported_media_type`: send `application/json`."),
}


class ApiView(APIView):
    parser_classes = [ApiJSONParser]
    authentication_classes = [SignedRequestAuthentication]
    permission_classes = [IsAuthenticated]
    throttle_classes = [ApiKeyRateThrottle]

    def get_exception_handler(self):
        return api_exception_handler

    def initial(self, request, *args, **kwargs):
        request_screen(request._request, kwargs)
        super().initial(request, *args, **kwargs)

    @property
    def key(self):
        return self.request.auth

    @property
    def agent(self):
        return self.request.auth.agent


# --- Products ------------------------------------------------------------------------------


def _priced(agent, products) -> list[order_selectors.PurchaseInfo]:
    """Your price and live stock for a page of products, in a constant number of queries: what
    the website shows you (``orders.selectors.purchase_infos``) and ``order_place`` charges."""
    return order_selectors.purchase_infos(products, viewer=agent.user)


class ProductPagination(PageNumberPagination):
    """``page`` from 1 and ``page_size`` from 1 to 200, strictly: anything else is a 400
    (not silently the default), a page past the last one a 404."""

    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def paginate_queryset(self, queryset, request, view=None):
        size = query_int(request, self.page_size_query_param, default=self.page_size, maximum=self.max_page_size)
        number = query_int(request, self.page_query_param, default=1)
        paginator = Paginator(queryset, size)
        try:
            self.page = paginator.page(number)
        except EmptyPage:
            raise exceptions.NotFound(
                _("There is no page %(page)d: the last page is %(last)d.")
                % {"page": number, "last": paginator.num_pages}
            ) from None
        self.request = request
        return list(self.page)

    def get_schema_operation_parameters(self, view):
        def integer(name: str, description: str, **bounds) -> dict:
            schema = {"type": "integer", "minimum": 1, **bounds}
            return {"name": name, "required": False, "in": "query", "description": description, "schema": schema}

        return [
            integer(
                self.page_query_param, "Page number, from 1; a page past the last one answers 404.", maximum=MAX_ID
            ),
            integer(self.page_size_query_param, "Products per page (default 50).", maximum=self.max_page_size),
        ]


class ProductList(ApiView, ListAPIView):
    serializer_class = ProductSerializer
    pagination_class = ProductPagination

    def get_queryset(self):
        rows = catalog_selectors.products_on_sale().order_by("sort_order", "id")
        category = query_int(self.request, "category", default=None)
        if category is not None:
            rows = rows.filter(Q(category_id=category) | Q(category__parent_id=category))
        return rows

    @extend_schema(
        operation_id="products_list",
        summary="Products at your price",
        description="Products on sale with what **you** pay per code and the codes in stock now.",
        parameters=[
            OpenApiParameter(
                "category",
                {"type": "integer", "minimum": 1, "maximum": MAX_ID},
                description="Only this category (and its sub-categories); an unknown one gives an empty list.",
            )
        ],
        responses={
            200: ProductSerializer(many=True),
            **ERRORS,
            404: OpenApiResponse(ErrorSerializer, description="`not_found`: no such page."),
        },
        tags=["products"],
    )
    def get(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(self.get_serializer(_priced(self.agent, page), many=True).data)


class ProductDetail(ApiView):
    @extend_schema(
        operation_id="products_retrieve",
        summary="One product at your price",
        parameters=[
            OpenApiParameter("product_id", {"type": "integer", "minimum": 1, "maximum": MAX_ID}, OpenApiParameter.PATH)
        ],
        responses={200: ProductSerializer, **NOT_FOUND, **ERRORS},
        tags=["products"],
    )
    def get(self, request, product_id: int):
        if not 1 <= product_id <= MAX_ID:  # the path takes any run of digits: no such id
            raise exceptions.NotFound(_("No such product on sale."))
        product = catalog_selectors.products_on_sale().filter(pk=product_id).first()
        if product is None:
            raise exceptions.NotFound(_("No such product on sale."))
        (info,) = _priced(self.agent, [product])
        return Response(ProductSerializer(info).data)


# --- Orders --------------------------------------------------------------------------------


def _order_body(order, codes=None) -> dict:
    """What ``OrderSerializer`` (the schema's) renders, built directly: a DRF serializer copies
    its sixteen fields for every instance, a cost on each order placed. The test suite holds the
    two equal (tests/test_api_fast_path.py)."""

    def text(value):
        return None if value is None else str(value)

    def money(value):
        return None if value is None else f"{value.quantize(CENT):f}"

    def when(value):
        if value is None:
            return None
        stamp = timezone.localtime(value).isoformat()
        return stamp[:-6] + "Z" if stamp.endswith("+00:00") else stamp

    topup = order.topup_values
    return {
        "order_number": text(order.number),
        "agent_order_no": text(order.agent_order_no),
        "status": text(order.status),
        "product_id": order.product_id,
        "product_name": text(order.product_name),
        "quantity": order.quantity,
        "unit_price": money(order.unit_price),
        "subtotal": money(order.subtotal),
        "discount": money(order.discount),
        "coupon_code": services.order_coupon_code(order),
        "total": money(order.total),
        "currency": text(order.currency),
        "callback_url": text(order.callback_url),
        "created_at": when(order.created_at),
        "paid_at": when(order.paid_at),
        "delivered_at": when(order.delivered_at),
        "topup": None if topup is None else {str(k): text(v) for k, v in topup.items()},
        "codes": None
        if codes is None
        else [{"card_number": text(c.card_number), "secret": text(c.secret)} for c in codes],
    }


class OrderCreate(ApiView):
    @extend_schema(
        operation_id="orders_create",
        summary="Place an order, paid from your balance",
        description=(
            "Places the order at your price and pays it from your balance at once; the codes are "
            "delivered within seconds (read them with GET /api/v1/orders/{agent_order_no}/, or wait "
            "for the signed callback).\n\n"
            "**Idempotent on `agent_order_no`**: sending the same number again (a retry after a "
            "timeout, or many at once) returns the same order with HTTP 200, never a second order or "
            "charge. 201 means this request placed and paid it. The same number with another product, "
            "quantity or `callback_url` is refused (409 `agent_order_no_conflict`).\n\n"
            "Balance too low: 402 `insufficient_balance`; the order is cancelled at once and its "
            "stock released. Its number stays used: place it again with a new `agent_order_no`.\n\n"
            "**Real name**: products that need a verified real name, and game top-ups, are sold only "
            "with the end user's `real_name` and `id_number` (checked locally, then by the platform's "
            "two-element provider; a match is reused). Missing: 403 `real_name_required`; a bad number: "
            "not 18 characters: 400 `invalid_request`; its birth date or check character wrong: 422 "
            "`id_number_invalid`; mismatch or no record: 422 `real_name_refused`; provider down: 503 "
            "`real_name_unavailable` (nothing is placed, try again later). Game top-ups then follow the "
            "national limits on minors' spending (国家新闻出版署 2019): 403 `minor_no_purchase` / "
            "`minor_per_payment` / `minor_per_month`, the message naming the limit.\n\n"
            "**Coupons**: `coupon_code` takes a platform coupon's discount off the total your balance "
            "pays (the response's `subtotal`, `discount` and `total`). API orders take platform coupons "
            "valid for everything, the product or its category; storefront coupons (yours too: an API "
            "order is at your cost, with no margin to fund one) are for the shop's buyers. A refused "
            "coupon is 422 with its reason's code (`coupon_expired`, `coupon_used_up`, ...), and nothing is placed.\n\n"
            "**Direct top-ups** (代充, the product's `topup_fields`): send the account details in `topup`; "
            "they are checked before anything is paid (422 `topup_invalid`, `details` per field). The order "
            "stays `paid` until the top-up is done (`delivered`, without codes) or fails (refunded in full)."
        ),
        request=OrderCreateSerializer,
        responses={
            201: OpenApiResponse(OrderSerializer, description="Placed and paid by this request."),
            200: OpenApiResponse(OrderSerializer, description="This agent_order_no was placed before."),
            402: OpenApiResponse(ErrorSerializer, description="insufficient_balance (the order is cancelled)."),
            409: OpenApiResponse(ErrorSerializer, description="agent_order_no_conflict / order_closed / out_of_stock."),
            422: OpenApiResponse(
                ErrorSerializer,
                description="order_refused: product or quantity; `topup_invalid`: a top-up field (`details`); "
                "`coupon_*`: the coupon refused; "
                "`id_number_invalid`, `real_name_refused` / `real_name_mismatch` / `real_name_no_record`: the "
                "end user's real name.",
            ),
            **ERRORS,
            403: OpenApiResponse(
                ErrorSerializer,
                description="IP not in the key's allow-list, or agent disabled; `real_name_required`; "
                "`minor_no_purchase` / `minor_per_payment` / `minor_per_month` (minors' limits on game top-ups).",
            ),
            503: OpenApiResponse(
                ErrorSerializer, description="`real_name_unavailable`: the real-name provider did not answer."
            ),
            400: OpenApiResponse(
                ValidationErrorSerializer,
                description="`invalid_request` (fields: `details` has the messages), `invalid_json` "
                f"(not JSON, or nested more than {MAX_JSON_DEPTH} levels), `invalid_characters`.",
            ),
            **BODY_ERRORS,
        },
        examples=[
            OpenApiExample(
                "Order two codes",
                value={"product_id": 12, "quantity": 2, "agent_order_no": "SHOP-20240501-0001"},
                request_only=True,
            ),
            OpenApiExample(
                "Order a direct top-up",
                value={
                    "product_id": 31,
                    "quantity": 1,
                    "agent_order_no": "SHOP-20240501-0002",
                    "topup": {"phone": "13812345678"},
                },
                request_only=True,
            ),
        ],
        tags=["orders"],
    )
    def post(self, request):
        refusal = admission.checkout_admit()  # a burst past the platform's capacity: refused at once
        if refusal is not None:
            raise Busy(wait=refusal.retry_after)
        data = order_create_data(request.data)
        order, paid_now = services.api_order_place(
            key=self.key,
            product_id=data["product_id"],
            quantity=data["quantity"],
            agent_order_no=data["agent_order_no"],
            callback_url=data.get("callback_url", ""),
            ip=client_ip(request._request),
            real_name=data.get("real_name", ""),
            id_number=data.get("id_number", ""),
            coupon_code=data.get("coupon_code", ""),
            topup=data.get("topup") or {},
        )
        codes = services.api_order_codes(key=self.key, order=order, ip=client_ip(request._request))
        return Response(_order_body(order, codes), status=status.HTTP_201_CREATED if paid_now else status.HTTP_200_OK)


class OrderDetail(ApiView):
    lookup = "agent_order_no"
    pattern = AGENT_ORDER_NO_PATTERN

    @extend_schema(
        operation_id="orders_retrieve",
        summary="An order by your order number",
        description=(
            "The order's status and, once delivered, its codes in plain text. Every read of the codes "
            "is logged (time, IP, key) like a buyer's reveal on the website."
        ),
        parameters=[
            OpenApiParameter("agent_order_no", OpenApiTypes.STR, OpenApiParameter.PATH, pattern=AGENT_ORDER_NO_PATTERN)
        ],
        responses={200: OrderSerializer, **NOT_FOUND, **ERRORS},
        tags=["orders"],
    )
    def get(self, request, **kwargs):
        value = kwargs[self.lookup]
        if not re.fullmatch(self.pattern, value):  # no order can have such a number
            raise exceptions.NotFound(_("No such order."))
        lookup = {"number": value} if self.lookup == "number" else {"agent_order_no": value}
        order = services.api_order_find(agent=self.agent, **lookup)
        if order is None:
            if services.api_order_elsewhere(agent=self.agent, **lookup):
                audit_denied(
                    action="api.order_read",
                    request=request._request,
                    actor=self.agent.user,
                    target=f"order:{value[:60]}",
                    detail=f"key {self.key.key_id} asked for an order of another account ({self.lookup})",
                )
            raise exceptions.NotFound(_("No such order."))
        codes = services.api_order_codes(key=self.key, order=order, ip=client_ip(request._request))
        return Response(_order_body(order, codes))


class OrderDetailByNumber(OrderDetail):
    lookup = "number"
    pattern = ORDER_NUMBER_PATTERN

    @extend_schema(
        operation_id="orders_retrieve_by_number",
        summary="An order by our order number",
        parameters=[OpenApiParameter("number", OpenApiTypes.STR, OpenApiParameter.PATH, pattern=ORDER_NUMBER_PATTERN)],
        responses={200: OrderSerializer, **NOT_FOUND, **ERRORS},
        tags=["orders"],
    )
    def get(self, request, **kwargs):
        return super().get(request, **kwargs)


# --- Balance -------------------------------------------------------------------------------


class BalanceView(ApiView):
    @extend_schema(
        operation_id="balance_retrieve",
        summary="Your balance and commissions",
        responses={200: BalanceSerializer, **ERRORS},
        tags=["account"],
    )
    def get(self, request):
        balances = services.api_balances(agent=self.agent)
        return Response(
            BalanceSerializer(
                {
                    "currency": "CNY",
                    "balance": balances.balance,
                    "commission_pending": balances.commission_pending,
                    "commission_available": balances.commission_available,
                }
            ).data
        )


# --- Documentation and the rest of /api/ -----------------------------------------------------


class SchemaView(SpectacularAPIView):
    """The OpenAPI schema: public, and its errors in the API's shape."""

    authentication_classes = []
    permission_classes = []
    throttle_classes = []

    def get_exception_handler(self):
        return api_exception_handler

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        # An error is JSON, whatever format the schema itself was asked in.
        self.request.accepted_renderer, self.request.accepted_media_type = JSONRenderer(), "application/json"
        return response


def _json_error(status_code: int, code: str, message: str, **headers) -> JsonResponse:
    response = JsonResponse({"code": code, "message": message}, status=status_code)
    for name, value in headers.items():
        response[name] = value
    return response


@csrf_exempt
def not_found(request, path: str = ""):
    """Any other URL under /api/: a JSON 404, saying so when only the trailing slash is missing."""
    message = _("No such API endpoint.")
    if not request.path_info.endswith("/"):
        try:
            match = resolve(request.path_info + "/")
        except Resolver404:
            match = None
        if match is not None and match.func is not not_found:
            message = _("No such API endpoint: end the path with a slash (%(path)s/).") % {
                "path": _CONTROL.sub("?", request.path)[:200]
            }
    return _json_error(404, "not_found", message)


@csrf_exempt
def docs(request):
    """Swagger UI from vendored assets (no CDN), reading /api/v1/schema/."""
    if request.method not in ("GET", "HEAD"):
        return _json_error(405, "method_not_allowed", _("Use GET."), Allow="GET, HEAD")
    return render(
        request,
        "api/docs.html",
        {"max_skew": settings.AGENT_API_MAX_SKEW, "rate": settings.AGENT_API_RATE_PER_MINUTE},
    )
