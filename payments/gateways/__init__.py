"""Gateway adapters. Each verifies its own notifications; the pipeline does the rest."""

from django.conf import settings
from django.http import Http404

from .base import Gateway, NotificationRejected, VerifiedNotification
from .sandbox import SandboxGateway

__all__ = ["Gateway", "NotificationRejected", "VerifiedNotification", "enabled_gateways", "get_gateway"]


def enabled_gateways() -> dict[str, Gateway]:
    gateways: dict[str, Gateway] = {}
    if settings.PAYMENTS_SANDBOX_ENABLED:
        gateways[SandboxGateway.code] = SandboxGateway()
    return gateways


def get_gateway(code: str) -> Gateway:
    gateway = enabled_gateways().get(code)
    if gateway is None:
        raise Http404("no such payment channel")
    return gateway
