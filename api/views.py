"""The integration API, version 1. Views parse and validate input, call one service, render.

Every endpoint is authenticated by the request signature (``api.auth``), rate limited per
key (``api.throttling``) and answers errors as ``{"code": ..., "message": ...}``.
"""

from django.conf import settings
from django.db.models import Q
from django.shortcuts import render
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.generics import ListAPIView
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import JSONParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView, exception_handler

from agents import selectors as agent_selectors
from catalog import selectors as catalog_selectors
from compliance.audit import audit_denied
from marketplace.http import client_ip

from . import services
from .auth import SignedRequestAuthentication
from .serializers import (
    BalanceSerializer,
    ErrorSerializer,
    OrderCreateSerializer,
    OrderSerializer,
    ProductSerializer,
    ValidationErrorSerializer,
)
from .throttling import ApiKeyRateThrottle

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
    """DRF's handler (status, Retry-After, WWW-Authenticate), with our error body."""
    if isinstance(exc, services.ApiError):
        return Response({"code": exc.code, "message": exc.message, **exc.extra}, status=exc.status)
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        details = exc.detail if isinstance(exc.detail, dict) else {"non_field_errors": exc.detail}
        response.data = {"code": "invalid_request", "message": _("Check the request fields."), "details": details}
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
    401: OpenApiResponse(ErrorSerializer, description="Signature refused (see `code`)."),
    403: OpenApiResponse(ErrorSerializer, description="IP not in the key's allow-list, or agent disabled."),
    429: OpenApiResponse(ErrorSerializer, description="Rate limit: wait `Retry-After` seconds."),
}


class ApiView(APIView):
    parser_classes = [JSONParser]
    authentication_classes = [SignedRequestAuthentication]
    permission_classes = [IsAuthenticated]
    throttle_classes = [ApiKeyRateThrottle]

    def get_exception_handler(self):
        return api_exception_handler

    @property
    def key(self):
        return self.request.auth

    @property
    def agent(self):
        return self.request.auth.agent


# --- Products ------------------------------------------------------------------------------


def _priced(agent, products) -> list:
    """Your price and live stock for a page of products, in a constant number of queries."""
    products = list(products)
    costs = agent_selectors.agent_costs(agent=agent, products=products)
    stock = catalog_selectors.stock_counts(p.pk for p in products)
    for product in products:
        product.agent_price = costs[product.pk]
        product.stock = stock.get(product.pk, 0)
    return products


class ProductPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200


class ProductList(ApiView, ListAPIView):
    serializer_class = ProductSerializer
    pagination_class = ProductPagination

    def get_queryset(self):
        rows = catalog_selectors.products_on_sale().order_by("sort_order", "id")
        category = self.request.query_params.get("category", "").strip()
        if category:
            if not category.isdigit():
                raise exceptions.ValidationError({"category": [_("A category id (a whole number).")]})
            rows = rows.filter(Q(category_id=int(category)) | Q(category__parent_id=int(category)))
        return rows

    @extend_schema(
        operation_id="products_list",
        summary="Products at your price",
        description="Products on sale with what **you** pay per code and the codes in stock now.",
        parameters=[OpenApiParameter("category", int, description="Only this category (and its sub-categories).")],
        responses={200: ProductSerializer(many=True), **ERRORS},
        tags=["products"],
    )
    def get(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(self.get_serializer(_priced(self.agent, page), many=True).data)


class ProductDetail(ApiView):
    @extend_schema(
        operation_id="products_retrieve",
        summary="One product at your price",
        responses={200: ProductSerializer, 404: OpenApiResponse(ErrorSerializer), **ERRORS},
        tags=["products"],
    )
    def get(self, request, product_id: int):
        product = catalog_selectors.products_on_sale().filter(pk=product_id).first()
        if product is None:
            raise exceptions.NotFound(_("No such product on sale."))
        (product,) = _priced(self.agent, [product])
        return Response(ProductSerializer(product).data)


# --- Orders --------------------------------------------------------------------------------


def _order_body(order, codes=None) -> dict:
    order.revealed_codes = codes
    return OrderSerializer(order).data


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
            "charge. 201 means this request placed and paid it. The same number with another product "
            "or quantity is refused (409 `agent_order_no_conflict`).\n\n"
            "Balance too low: 402 `insufficient_balance`; the order is cancelled at once and its "
            "stock released. Its number stays used: place it again with a new `agent_order_no`."
        ),
        request=OrderCreateSerializer,
        responses={
            201: OpenApiResponse(OrderSerializer, description="Placed and paid by this request."),
            200: OpenApiResponse(OrderSerializer, description="This agent_order_no was placed before."),
            400: OpenApiResponse(ValidationErrorSerializer, description="Invalid fields."),
            402: OpenApiResponse(ErrorSerializer, description="insufficient_balance (the order is cancelled)."),
            409: OpenApiResponse(ErrorSerializer, description="agent_order_no_conflict / order_closed."),
            422: OpenApiResponse(ErrorSerializer, description="order_refused: product, quantity or stock."),
            **ERRORS,
        },
        examples=[
            OpenApiExample(
                "Order two codes",
                value={"product_id": 12, "quantity": 2, "agent_order_no": "SHOP-20240501-0001"},
                request_only=True,
            )
        ],
        tags=["orders"],
    )
    def post(self, request):
        form = OrderCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        order, paid_now = services.api_order_place(
            key=self.key,
            product_id=data["product_id"],
            quantity=data["quantity"],
            agent_order_no=data["agent_order_no"],
            callback_url=data.get("callback_url", ""),
            ip=client_ip(request._request),
        )
        codes = services.api_order_codes(key=self.key, order=order, ip=client_ip(request._request))
        return Response(_order_body(order, codes), status=status.HTTP_201_CREATED if paid_now else status.HTTP_200_OK)


class OrderDetail(ApiView):
    lookup = "agent_order_no"

    @extend_schema(
        operation_id="orders_retrieve",
        summary="An order by your order number",
        description=(
            "The order's status and, once delivered, its codes in plain text. Every read of the codes "
            "is logged (time, IP, key) like a buyer's reveal on the website."
        ),
        parameters=[OpenApiParameter("agent_order_no", OpenApiTypes.STR, OpenApiParameter.PATH)],
        responses={200: OrderSerializer, 404: OpenApiResponse(ErrorSerializer), **ERRORS},
        tags=["orders"],
    )
    def get(self, request, **kwargs):
        value = kwargs[self.lookup]
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

    @extend_schema(
        operation_id="orders_retrieve_by_number",
        summary="An order by our order number",
        parameters=[OpenApiParameter("number", OpenApiTypes.STR, OpenApiParameter.PATH)],
        responses={200: OrderSerializer, 404: OpenApiResponse(ErrorSerializer), **ERRORS},
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


# --- Documentation -------------------------------------------------------------------------


def docs(request):
    """Swagger UI from vendored assets (no CDN), reading /api/v1/schema/."""
    return render(
        request,
        "api/docs.html",
        {"max_skew": settings.AGENT_API_MAX_SKEW, "rate": settings.AGENT_API_RATE_PER_MINUTE},
    )
