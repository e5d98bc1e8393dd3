"""Gateway adapters. Each verifies its own notifications; the pipeline does the rest."""

from marketplace.errors import NotFound

from .alipay import AlipayGateway
from .base import (
    BillLine,
    Device,
    Gateway,
    GatewayError,
    NotificationRejected,
    PaymentStart,
    RefundResult,
    RemoteGateway,
    TradeStatus,
    VerifiedNotification,
)
from .sandbox import SandboxGateway
from .wechat import WeChatPayGateway

__all__ = [
    "BillLine",
    "Device",
    "Gateway",
    "GatewayError",
    "NotificationRejected",
    "PaymentStart",
    "RefundResult",
    "RemoteGateway",
    "TradeStatus",
    "VerifiedNotification",
    "enabled_gateways",
    "get_gateway",
]

# Every channel the product knows; each says itself whether it is configured.
GATEWAY_CLASSES: list[type[Gateway]] = [SandboxGateway, AlipayGateway, WeChatPayGateway]


def enabled_gateways() -> dict[str, Gateway]:
    return {cls.code: cls() for cls in GATEWAY_CLASSES if cls.is_enabled()}


def get_gateway(code: str) -> Gateway:
    gateway = enabled_gateways().get(code)
    if gateway is None:
        raise NotFound(code="no_such_channel")
    return gateway
