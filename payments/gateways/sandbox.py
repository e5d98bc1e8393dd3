"""A cashier for development and demos, refused in production.

It behaves like a real gateway: the "gateway side" signs a notification (RSA2 over the sorted
``k=v&...`` string, as Alipay does) with a key generated locally, and the "merchant side"
verifies it with the public key and sends it through the same pipeline as every gateway.
"""

import base64
import secrets
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from functools import cache
from urllib.parse import parse_qsl, urlencode

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpResponse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from marketplace.money import parse_yuan, yuan_str

from .base import Gateway, NotificationRejected, VerifiedNotification

PAID_STATES = {"TRADE_SUCCESS", "TRADE_FINISHED"}


def sign_content(params: Mapping[str, str]) -> str:
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k not in ("sign", "sign_type") and params[k] != "")


@cache
def _keys() -> tuple[rsa.RSAPrivateKey, rsa.RSAPublicKey]:
    if not settings.PAYMENTS_SANDBOX_ENABLED:
        raise ImproperlyConfigured("the sandbox gateway is disabled")
    key_dir = settings.PAYMENTS_SANDBOX_KEY_DIR
    private_path = key_dir / "sandbox_gateway_private.pem"
    if not private_path.exists():
        key_dir.mkdir(parents=True, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        tmp = private_path.with_suffix(".tmp")
        tmp.write_bytes(pem)
        tmp.chmod(0o600)
        tmp.replace(private_path)
    private = serialization.load_pem_private_key(private_path.read_bytes(), password=None)
    if not isinstance(private, rsa.RSAPrivateKey):
        raise ImproperlyConfigured(f"{private_path} does not hold an RSA private key")
    return private, private.public_key()


class SandboxGateway(Gateway):
    code = "sandbox"
    name = _("Sandbox payment")

    @classmethod
    def is_enabled(cls) -> bool:
        return settings.PAYMENTS_SANDBOX_ENABLED

    # --- the gateway's side (what a real gateway would do on its servers) --------------
    @staticmethod
    def build_notification(*, order_number: str, amount: Decimal, trade_status: str = "TRADE_SUCCESS") -> bytes:
        params = {
            "app_id": settings.PAYMENTS_SANDBOX_APP_ID,
            "out_trade_no": order_number,
            "trade_no": "SBX" + timezone.now().strftime("%Y%m%d") + secrets.token_hex(10).upper(),
            "total_amount": yuan_str(amount),
            "currency": "CNY",
            "trade_status": trade_status,
            "gmt_payment": timezone.localtime().strftime("%Y-%m-%d %H:%M:%S"),
            "notify_id": secrets.token_hex(16),
        }
        return SandboxGateway.sign(params)

    @staticmethod
    def sign(params: Mapping[str, str]) -> bytes:
        private, _public = _keys()
        signature = private.sign(sign_content(params).encode(), padding.PKCS1v15(), hashes.SHA256())
        return urlencode({**params, "sign_type": "RSA2", "sign": base64.b64encode(signature).decode()}).encode()

    # --- our side ----------------------------------------------------------------------
    def verify(self, *, headers: Mapping[str, str], body: bytes) -> VerifiedNotification:
        try:
            params = dict(parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=True))
        except (UnicodeDecodeError, ValueError):
            raise NotificationRejected("body is not a form") from None
        if params.get("sign_type") != "RSA2":
            raise NotificationRejected("sign_type is not RSA2")
        try:
            signature = base64.b64decode(params.get("sign", ""), validate=True)
        except ValueError:
            raise NotificationRejected("signature is not base64") from None
        _private, public = _keys()
        try:
            public.verify(signature, sign_content(params).encode(), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise NotificationRejected("bad signature") from None
        if params.get("app_id") != settings.PAYMENTS_SANDBOX_APP_ID:
            raise NotificationRejected("app_id is not ours")
        try:
            amount = parse_yuan(params.get("total_amount", ""))
        except ValueError:
            raise NotificationRejected("total_amount is not an amount") from None
        for name in ("out_trade_no", "trade_no", "trade_status"):
            if not params.get(name):
                raise NotificationRejected(f"{name} is missing")
        paid_at = None
        if params.get("gmt_payment"):
            try:
                paid_at = timezone.make_aware(datetime.strptime(params["gmt_payment"], "%Y-%m-%d %H:%M:%S"))
            except ValueError:
                raise NotificationRejected("gmt_payment is not a time") from None
        return VerifiedNotification(
            order_number=params["out_trade_no"],
            trade_no=params["trade_no"],
            amount=amount,
            currency=params.get("currency", "CNY"),
            paid=params["trade_status"] in PAID_STATES,
            state=params["trade_status"],
            paid_at=paid_at,
        )

    def reply(self, *, ok: bool) -> HttpResponse:
        return HttpResponse("success" if ok else "failure", content_type="text/plain", status=200 if ok else 400)
