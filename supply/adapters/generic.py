"""The generic signed-HTTP adapter: most suppliers' APIs are a POST of parameters plus a
signature over them, sorted, as ``k=v`` joined by ``&``; the key is either appended (MD5, with
``&key=SECRET`` or the bare secret) or the HMAC-SHA256 key. Which of these, the case of the hex,
the signature's field name, JSON or form body, and the supplier's field names are configured
per connection (``SupplierConnection``).

Every request carries our app id, a timestamp and a nonce. Replies are JSON with a result code,
a message and the data, and must be signed by the same rule: an unsigned or wrongly signed
reply is not trusted (outcome unknown). Callbacks are signed the same way and must be fresh.
"""

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

from django.utils.translation import gettext as _

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
    VerifiedCallback,
)

# A callback older (or further in the future) than this is refused: a replay window.
CALLBACK_MAX_AGE = 300

Algorithm = SupplierConnection.SignAlgorithm


def param_text(value: Any) -> str:
    """How a parameter's value is written in the signed string: text as it is, numbers as
    written, booleans as true/false, lists and objects as compact JSON with sorted keys."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return str(value)


def sign_content(params: Mapping[str, Any], *, exclude: str) -> str:
    """Sorted ``k=v`` joined by ``&``, without the signature field and empty values."""
    texts = {k: param_text(v) for k, v in params.items() if k != exclude}
    return "&".join(f"{k}={texts[k]}" for k in sorted(texts) if texts[k] != "")


def signature(
    *, params: Mapping[str, Any], secret: str, algorithm: str, key_placement: str, uppercase: bool, field: str
) -> str:
    content = sign_content(params, exclude=field)
    if algorithm == Algorithm.HMAC_SHA256:
        digest = hmac.new(secret.encode(), content.encode(), hashlib.sha256).hexdigest()
    else:
        suffix = f"&key={secret}" if key_placement == SupplierConnection.KeyPlacement.KEY_PARAM else secret
        digest = hashlib.md5((content + suffix).encode()).hexdigest()  # noqa: S324 (the supplier's rule)
    return digest.upper() if uppercase else digest


class GenericHttpAdapter(SupplierAdapter):
    kind = SupplierConnection.Kind.GENERIC_HTTP

    def __init__(self, connection: SupplierConnection, secret: str):
        self.c = connection
        self.secret = secret

    # --- signing -----------------------------------------------------------------------

    def sign(self, params: Mapping[str, Any]) -> str:
        return signature(
            params=params,
            secret=self.secret,
            algorithm=self.c.sign_algorithm,
            key_placement=self.c.sign_key_placement,
            uppercase=self.c.sign_uppercase,
            field=self.c.sign_field,
        )

    def signed_ok(self, params: Mapping[str, Any]) -> bool:
        given = params.get(self.c.sign_field)
        if not isinstance(given, str) or not given:
            return False
        return hmac.compare_digest(self.sign(params).lower().encode(), given.lower().encode())

    # --- one call ----------------------------------------------------------------------

    def _call(self, operation: str, params: Mapping[str, Any], *, not_found_ok: bool = False) -> Any:
        f = self.c.field
        full = {
            f("app_id"): self.c.app_id,
            f("timestamp"): str(int(time.time())),
            f("nonce"): secrets.token_hex(16),
            **params,
        }
        full[self.c.sign_field] = self.sign(full)
        url = self.c.base_url.rstrip("/") + self.c.path(operation)
        if self.c.body_format == SupplierConnection.BodyFormat.FORM:
            body = {k: param_text(v) for k, v in full.items()}
            response = http.send("POST", url, timeout=self.c.timeout_seconds, data=body)
        else:
            response = http.send("POST", url, timeout=self.c.timeout_seconds, json=full)
        if response.status_code >= 500:
            raise SupplyOutcomeUnknown(f"HTTP {response.status_code}: {response.text[:200]}")
        reply = http.json_of(response)
        if not isinstance(reply, dict):
            raise SupplyOutcomeUnknown(_("The supplier's reply is not an object."))
        if not self.signed_ok(reply):
            raise SupplyOutcomeUnknown(_("The supplier's reply is not signed with our connection's key."))
        code = param_text(reply.get(f("code")))
        if code == self.c.success_code:
            data = reply.get(f("data"))
            return data if data is not None else {}
        if not_found_ok and code == self.c.not_found_code:
            return None
        message = param_text(reply.get(f("message"))) or f"result code {code}"
        raise SupplyRefused(_("The supplier refused: %(m)s") % {"m": message[:200]}, supplier_code=code)

    # --- parsing -----------------------------------------------------------------------

    @staticmethod
    def _decimal(value: Any) -> Decimal | None:
        if value is None or value == "":
            return None
        try:
            return Decimal(str(value)).quantize(Decimal("0.01"))
        except InvalidOperation as exc:
            raise SupplyOutcomeUnknown(f"not an amount: {value!r}"[:200]) from exc

    def _order(self, our_number: str, data: Mapping[str, Any]) -> SupplierOrder:
        f = self.c.field
        returned = param_text(data.get(f("order_no")))
        if returned and returned != our_number:
            raise SupplyOutcomeUnknown(f"the supplier answered about order {returned[:60]}, not {our_number}")
        raw_codes = data.get(f("codes")) or []
        if isinstance(raw_codes, str):
            try:
                raw_codes = json.loads(raw_codes)
            except ValueError as exc:
                raise SupplyOutcomeUnknown("codes are not a JSON list") from exc
        codes = tuple(
            SupplierCode(secret=param_text(c.get(f("card_secret"))), card_number=param_text(c.get(f("card_number"))))
            for c in raw_codes
            if isinstance(c, dict)
        )
        return SupplierOrder(
            our_number=our_number,
            state=OrderState(self.c.status_of(param_text(data.get(f("status"))))),
            supplier_order_no=param_text(data.get(f("supplier_order_no"))),
            codes=codes,
            cost=self._decimal(data.get(f("cost"))),
            message=param_text(data.get(f("message")))[:300],
        )

    # --- operations --------------------------------------------------------------------

    def products(self) -> list[SupplierProduct]:
        f = self.c.field
        data = self._call("products", {})
        rows = data.get(f("products"), []) if isinstance(data, dict) else data
        out = []
        for row in rows or []:
            stock = row.get(f("stock"))
            out.append(
                SupplierProduct(
                    ref=param_text(row.get(f("product_id"))),
                    name=param_text(row.get(f("name")))[:200],
                    cost=self._decimal(row.get(f("cost"))) or Decimal("0.00"),
                    available=int(stock) if stock not in (None, "") else None,
                )
            )
        return out

    def order_place(
        self, *, our_number: str, product_ref: str, quantity: int, fields: Mapping[str, str] | None = None
    ) -> SupplierOrder:
        f = self.c.field
        params: dict[str, Any] = {f("order_no"): our_number, f("product_id"): product_ref, f("quantity"): str(quantity)}
        for name, value in (fields or {}).items():  # top-up fields (account, server ...), mapped if configured
            params[str((self.c.field_map or {}).get(name) or name)] = value
        return self._order(our_number, self._call("order_place", params))

    def order_query(self, *, our_number: str) -> SupplierOrder:
        data = self._call("order_query", {self.c.field("order_no"): our_number}, not_found_ok=True)
        if data is None:
            return SupplierOrder(our_number=our_number, exists=False)
        return self._order(our_number, data)

    def balance(self) -> SupplierBalance:
        data = self._call("balance", {})
        amount = self._decimal(data.get(self.c.field("balance")) if isinstance(data, dict) else None)
        if amount is None:
            raise SupplyOutcomeUnknown(_("The supplier's reply has no balance."))
        return SupplierBalance(amount=amount)

    def callback_verify(self, *, headers: Mapping[str, str], body: bytes, path: str = "") -> VerifiedCallback:
        f = self.c.field
        try:
            text = body.decode()
            params: Any = json.loads(text) if text.lstrip().startswith("{") else dict(parse_qsl(text))
        except (UnicodeDecodeError, ValueError) as exc:
            raise CallbackRejected(_("Unreadable callback.")) from exc
        if not isinstance(params, dict) or not self.signed_ok(params):
            raise CallbackRejected(_("The callback's signature is wrong."))
        if param_text(params.get(f("app_id"))) != self.c.app_id:
            raise CallbackRejected(_("The callback is for another account."))
        try:
            sent = int(param_text(params.get(f("timestamp"))))
        except ValueError as exc:
            raise CallbackRejected(_("The callback has no timestamp.")) from exc
        if abs(time.time() - sent) > CALLBACK_MAX_AGE:
            raise CallbackRejected(_("The callback is too old (or from the future)."))
        nonce = param_text(params.get(f("nonce")))
        our_number = param_text(params.get(f("order_no")))
        if not nonce or not our_number:
            raise CallbackRejected(_("The callback has no nonce or no order number."))
        order = self._order(our_number, params)
        event_id = param_text(params.get(f("notify_id"))) or f"{our_number}:{order.state}"
        return VerifiedCallback(event_id=event_id[:100], nonce=nonce[:100], order=order, raw=params)
