"""Buying from another platform running this product, as one of its agents, through its agent
API (``/api/v1/``, see api/schema_description.md there). Requests are signed the way that API
documents: ``X-Api-Key``, ``X-Timestamp``, ``X-Nonce`` and ``X-Signature`` = hex HMAC-SHA256 of
``METHOD\\ncanonical(path?query)\\ntimestamp\\nnonce\\nsha256_hex(body)`` with the key's secret.
Its delivery callbacks (orders.services.callbacks on the other side) are signed the same way,
over the path they are posted to, so ``callback_verify`` needs that ``path``.

The recipe is ``marketplace.signing``'s, the one the API itself verifies with and signs its
callbacks with (the documented protocol, api/schema_description.md).

Orders are paid from our balance there, idempotent on ``agent_order_no`` = our order number.
Its replies are not signed (HTTPS carries them); our requests are.
"""

import hmac
import json
import secrets
import time
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import quote

from django.utils.translation import gettext as _

from marketplace.signing import canonical_target, signature_compute

from ..models import SupplierConnection
from . import http
from .base import (
    CallbackRejected,
    OrderState,
    SupplierAdapter,
    SupplierBalance,
    SupplierCode,
    SupplierOrder,
    SupplierProduct,
    SupplyOutcomeUnknown,
    SupplyRefused,
    SupplyUnavailable,
    VerifiedCallback,
)

API = "/api/v1"
CALLBACK_MAX_AGE = 300  # seconds either side of our clock, as the API allows requests
MAX_PAGES = 100
# The other side's order statuses, as ours.
STATES = {
    "delivered": OrderState.DONE,
    "pending": OrderState.PENDING,
    "paid": OrderState.PENDING,
    "expired": OrderState.FAILED,
    "cancelled": OrderState.FAILED,
    "refund_pending": OrderState.FAILED,
    "refunded": OrderState.FAILED,
}


def request_signature(*, secret: str, method: str, target: str, timestamp: str, nonce: str, body: bytes) -> str:
    """X-Signature of a request to ``target`` (path and query as sent), or of a callback posted there."""
    return signature_compute(
        secret=secret, method=method, path=canonical_target(target), timestamp=timestamp, nonce=nonce, body=body
    )


class KamarketAdapter(SupplierAdapter):
    kind = SupplierConnection.Kind.KAMARKET

    def __init__(self, connection: SupplierConnection, secret: str):
        self.c = connection
        self.secret = secret

    def _request(self, method: str, target: str, payload: Mapping[str, Any] | None = None) -> tuple[int, Any]:
        body = json.dumps(payload, separators=(",", ":")).encode() if payload is not None else b""
        timestamp, nonce = str(int(time.time())), secrets.token_urlsafe(18)
        headers = {
            "X-Api-Key": self.c.app_id,
            "X-Timestamp": timestamp,
            "X-Nonce": nonce,
            "X-Signature": request_signature(
                secret=self.secret, method=method, target=target, timestamp=timestamp, nonce=nonce, body=body
            ),
            "Accept": "application/json",
        }
        if payload is not None:
            headers["Content-Type"] = "application/json"
        response = http.send(
            method, self.c.base_url.rstrip("/") + target, timeout=self.c.timeout_seconds, data=body, headers=headers
        )
        if response.status_code >= 500:
            raise SupplyOutcomeUnknown(f"HTTP {response.status_code}: {response.text[:200]}")
        return response.status_code, http.json_of(response)

    @staticmethod
    def _refusal(status: int, body: Any) -> SupplyRefused:
        code = body.get("code", "") if isinstance(body, dict) else ""
        message = body.get("message", "") if isinstance(body, dict) else ""
        return SupplyRefused(
            _("The supplier refused: %(m)s") % {"m": f"{message} ({code}, HTTP {status})"[:200]}, supplier_code=code
        )

    @staticmethod
    def _money(value: Any) -> Decimal:
        try:
            return Decimal(str(value)).quantize(Decimal("0.01"))
        except InvalidOperation as exc:
            raise SupplyOutcomeUnknown(f"not an amount: {value!r}"[:200]) from exc

    def _order(self, our_number: str, data: Any) -> SupplierOrder:
        if not isinstance(data, dict) or data.get("agent_order_no") != our_number:
            raise SupplyOutcomeUnknown(_("The supplier answered about another order."))
        codes = tuple(
            SupplierCode(secret=str(c.get("secret", "")), card_number=str(c.get("card_number", "")))
            for c in data.get("codes") or []
            if isinstance(c, dict)
        )
        return SupplierOrder(
            our_number=our_number,
            state=STATES.get(str(data.get("status")), OrderState.PENDING),
            supplier_order_no=str(data.get("order_number", "")),
            codes=codes,
            cost=self._money(data["total"]) if data.get("total") is not None else None,
        )

    def products(self) -> list[SupplierProduct]:
        out: list[SupplierProduct] = []
        for page in range(1, MAX_PAGES + 1):
            status, body = self._request("GET", f"{API}/products/?page={page}&page_size=200")
            if status != 200:
                raise self._refusal(status, body)
            for row in body.get("results", []):
                out.append(
                    SupplierProduct(
                        ref=str(row["id"]),
                        name=str(row.get("name", ""))[:200],
                        cost=self._money(row["price"]),
                        available=int(row["stock"]) if row.get("stock") is not None else None,
                    )
                )
            if not body.get("next"):
                break
        return out

    def order_place(
        self, *, our_number: str, product_ref: str, quantity: int, fields: Mapping[str, str] | None = None
    ) -> SupplierOrder:
        try:
            product_id = int(product_ref)
        except ValueError as exc:
            raise SupplyRefused(_("This supplier's product ids are numbers.")) from exc
        payload: dict[str, Any] = {"product_id": product_id, "quantity": quantity, "agent_order_no": our_number}
        # End users' real name for products that need it, and the callback URL: passed through;
        # everything else is a direct top-up's fields, sent as the API's ``topup`` object.
        passthrough = {"real_name", "id_number", "callback_url"}
        payload.update({k: v for k, v in (fields or {}).items() if k in passthrough})
        topup = {k: v for k, v in (fields or {}).items() if k not in passthrough}
        if topup:
            payload["topup"] = topup
        status, body = self._request("POST", f"{API}/orders/", payload)
        if status in (200, 201):
            return self._order(our_number, body)
        if status == 429:
            raise SupplyUnavailable(_("The supplier is rate-limiting us: try again shortly."))
        raise self._refusal(status, body)

    def order_query(self, *, our_number: str) -> SupplierOrder:
        status, body = self._request("GET", f"{API}/orders/{quote(our_number, safe='')}/")
        if status == 404:
            return SupplierOrder(our_number=our_number, exists=False)
        if status != 200:
            raise self._refusal(status, body)
        return self._order(our_number, body)

    def balance(self) -> SupplierBalance:
        status, body = self._request("GET", f"{API}/balance/")
        if status != 200:
            raise self._refusal(status, body)
        return SupplierBalance(amount=self._money(body["balance"]), currency=str(body.get("currency", "CNY")))

    def callback_verify(self, *, headers: Mapping[str, str], body: bytes, path: str = "") -> VerifiedCallback:
        h = {k.lower(): v for k, v in headers.items()}
        key_id, timestamp = h.get("x-api-key", ""), h.get("x-timestamp", "")
        nonce, given = h.get("x-nonce", ""), h.get("x-signature", "")
        if not (key_id and timestamp and nonce and given and path):
            raise CallbackRejected(_("The callback is not signed."))
        if key_id != self.c.app_id:
            raise CallbackRejected(_("The callback is for another account."))
        if not timestamp.isascii() or not timestamp.isdigit() or abs(time.time() - int(timestamp)) > CALLBACK_MAX_AGE:
            raise CallbackRejected(_("The callback is too old (or from the future)."))
        expected = request_signature(
            secret=self.secret, method="POST", target=path, timestamp=timestamp, nonce=nonce, body=body
        )
        if not hmac.compare_digest(expected.encode(), given.encode()):
            raise CallbackRejected(_("The callback's signature is wrong."))
        try:
            data = json.loads(body)
        except ValueError as exc:
            raise CallbackRejected(_("Unreadable callback.")) from exc
        if not isinstance(data, dict) or not data.get("agent_order_no"):
            raise CallbackRejected(_("The callback has no nonce or no order number."))
        order = self._order(str(data["agent_order_no"]), data)
        event_id = f"{data.get('event', '')}:{data.get('callback_id', '')}:{data.get('order_number', '')}"
        return VerifiedCallback(event_id=event_id[:100], nonce=nonce[:100], order=order, raw=data)
