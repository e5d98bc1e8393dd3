"""WeChat Pay APIv3 through wechatpayv3, in public-key mode. All SDK use stays in this module.

Facts about the SDK this adapter relies on (see /work/shared/PAYMENTS.md):
- Calls return ``(status, text-or-bytes)`` and do not raise on non-2xx; a 2xx reply whose
  ``Wechatpay-*`` signature does not verify raises a bare ``Exception``.
- ``callback()`` downloads platform certificates when ``Wechatpay-Serial`` is not our public
  key id, and does not look at the timestamp: both are checked here before it is called.
- The gateway host is fixed in ``Core._gate_way``; ``WECHATPAY_GATEWAY_URL`` overrides it.
"""

import gzip
import hashlib
import json
import logging
import time
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import requests
from cryptography.hazmat.primitives import serialization
from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from wechatpayv3 import WeChatPay, WeChatPayType

from marketplace.money import from_fen, parse_yuan, to_fen

from .base import (
    BillLine,
    Device,
    GatewayError,
    NotificationRejected,
    PaymentStart,
    RefundResult,
    RemoteGateway,
    TradeStatus,
    VerifiedNotification,
)

log = logging.getLogger(__name__)

BEIJING = ZoneInfo("Asia/Shanghai")
SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
# The notification headers, as the SDK looks them up.
_HEADERS = (
    "Wechatpay-Signature",
    "Wechatpay-Timestamp",
    "Wechatpay-Nonce",
    "Wechatpay-Serial",
    "Wechatpay-Signature-Type",
)
CLOSED_STATES = {"CLOSED", "REVOKED"}
DESCRIPTION_MAX = 127  # pay(): description is string[1,127]
REASON_MAX = 80  # refund(): reason is string[1,80]


# --- configuration and the SDK client ---------------------------------------------------


def _config() -> tuple[str, ...]:
    return (
        settings.WECHATPAY_MCHID,
        settings.WECHATPAY_APPID,
        settings.WECHATPAY_PRIVATE_KEY,
        settings.WECHATPAY_CERT_SERIAL_NO,
        settings.WECHATPAY_APIV3_KEY,
        settings.WECHATPAY_PUBLIC_KEY,
        settings.WECHATPAY_PUBLIC_KEY_ID,
        settings.WECHATPAY_GATEWAY_URL,
        str(settings.PAYMENTS_GATEWAY_TIMEOUT),
    )


def _apiv3_key_ok(key: str) -> bool:
    return len(key) == 32 and key.isascii()


def _pkcs8_pem(private_key: str) -> str:
    """The SDK only loads PKCS#8 ("BEGIN PRIVATE KEY", or its bare base64): convert a PKCS#1 PEM."""
    text = private_key.replace("\r\n", "\n").strip()
    if not text.startswith("-----BEGIN RSA PRIVATE KEY-----"):
        return text
    key = serialization.load_pem_private_key(text.encode(), password=None)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return pem.decode()


@lru_cache(maxsize=4)
def _build_client(
    mchid: str,
    appid: str,
    private_key: str,
    cert_serial_no: str,
    apiv3_key: str,
    public_key: str,
    public_key_id: str,
    gateway_url: str,
    read_timeout: str,
) -> WeChatPay:
    """One client per process and configuration. Public-key mode: no network here."""
    client = WeChatPay(
        wechatpay_type=WeChatPayType.NATIVE,
        mchid=mchid,
        private_key=_pkcs8_pem(private_key),
        cert_serial_no=cert_serial_no,
        appid=appid,
        apiv3_key=apiv3_key,
        notify_url=None,  # passed on every call
        cert_dir=None,
        logger=None,  # the SDK would log request bodies and decrypted notifications at DEBUG
        timeout=(5, int(read_timeout)),
        public_key=public_key.replace("\r\n", "\n").strip(),
        public_key_id=public_key_id,
    )
    if gateway_url:
        client._core._gate_way = gateway_url.rstrip("/")
    return client


def _client() -> WeChatPay:
    return _build_client(*_config())


def _default_notify_url() -> str:
    return settings.SITE_URL + reverse("payments-notify", kwargs={"gateway": WeChatPayGateway.code})


# --- small parsers ----------------------------------------------------------------------


def _rfc3339(moment: datetime) -> str:
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return moment.astimezone(BEIJING).isoformat(timespec="seconds")


def _parse_time(text: Any) -> datetime | None:
    """RFC 3339 with an offset ("2024-01-02T10:04:51+08:00"); None when absent."""
    if not text:
        return None
    moment = datetime.fromisoformat(str(text))
    if timezone.is_naive(moment):
        raise ValueError(f"no UTC offset in {text!r}")
    return moment


def _fen(value: Any, name: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} is not a whole number of fen: {value!r}")
    return from_fen(value)


def _canonical_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The five Wechatpay-* headers from Django's request.headers, request.META or any dict."""
    found: dict[str, str] = {}
    for key, value in headers.items():
        name = str(key).lower().replace("_", "-").removeprefix("http-")
        found[name] = str(value).strip()
    return {name: found.get(name.lower(), "") for name in _HEADERS}


# --- the bill ---------------------------------------------------------------------------


def parse_bill(text: str) -> list[BillLine]:
    """WeChat Pay's trade bill: a header line, rows whose fields start with "`", then totals.

    Successful payments become "payment" lines (amount: 订单金额, the notification's
    amount.total; 应结订单金额 when the column is absent), refunds "refund" lines (amount:
    申请退款金额, the refund's amount.refund; 退款金额 when absent). Other rows are skipped.
    """
    lines = text.lstrip("\ufeff").splitlines()
    if not lines:
        return []
    header = [name.strip() for name in lines[0].split(",")]
    name_col = header.index("商品名称") if "商品名称" in header else None
    result: list[BillLine] = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        if not line.startswith("`"):
            break  # the totals section
        fields = line.split(",")
        if len(fields) > len(header) and name_col is not None:
            # An unescaped comma in the product name: realign the columns after it.
            extra = len(fields) - len(header)
            fields = [
                *fields[:name_col],
                ",".join(fields[name_col : name_col + extra + 1]),
                *fields[name_col + extra + 1 :],
            ]
        if len(fields) != len(header):
            raise GatewayError(f"WeChat Pay bill line {number}: {len(fields)} fields, the header has {len(header)}")
        row = {name: value.strip().removeprefix("`") for name, value in zip(header, fields, strict=True)}
        state = row.get("交易状态", "")
        if state not in ("SUCCESS", "REFUND"):
            continue
        try:
            at = timezone.make_aware(datetime.strptime(row["交易时间"], "%Y-%m-%d %H:%M:%S"), BEIJING)
            if state == "SUCCESS":
                line_out = BillLine(
                    kind="payment",
                    order_number=row["商户订单号"],
                    trade_no=row["微信订单号"],
                    amount=parse_yuan(row.get("订单金额") or row["应结订单金额"]),
                    at=at,
                    raw=row,
                )
            else:
                line_out = BillLine(
                    kind="refund",
                    order_number=row["商户订单号"],
                    trade_no=row["微信订单号"],
                    amount=parse_yuan(row.get("申请退款金额") or row["退款金额"]),
                    refund_no=row["商户退款单号"],
                    at=at,
                    raw=row,
                )
        except (KeyError, ValueError) as exc:
            raise GatewayError(f"WeChat Pay bill line {number}: {exc}") from None
        result.append(line_out)
    return result


# --- the adapter ------------------------------------------------------------------------


class WeChatPayGateway(RemoteGateway):
    code = "wechat"
    name = _("WeChat Pay")

    @classmethod
    def is_enabled(cls) -> bool:
        required = (
            settings.WECHATPAY_MCHID,
            settings.WECHATPAY_APPID,
            settings.WECHATPAY_PRIVATE_KEY,
            settings.WECHATPAY_CERT_SERIAL_NO,
            settings.WECHATPAY_APIV3_KEY,
            settings.WECHATPAY_PUBLIC_KEY,
            settings.WECHATPAY_PUBLIC_KEY_ID,
        )
        if not all(required):
            return False
        if not _apiv3_key_ok(settings.WECHATPAY_APIV3_KEY):
            log.error(
                "WeChat Pay stays disabled: WECHATPAY_APIV3_KEY must be exactly 32 ASCII characters (it has %d)",
                len(settings.WECHATPAY_APIV3_KEY),
            )
            return False
        try:
            _client()
        except Exception as exc:  # the SDK raises bare Exceptions for keys it cannot load
            log.error("WeChat Pay stays disabled: the client cannot be built (%s)", exc)
            return False
        return True

    # --- notifications ----------------------------------------------------------------
    def verify(self, *, headers: Mapping[str, str], body: bytes) -> VerifiedNotification:
        wanted = _canonical_headers(headers)
        if wanted["Wechatpay-Serial"] != settings.WECHATPAY_PUBLIC_KEY_ID:
            # The SDK would go and download platform certificates for an unknown serial.
            raise NotificationRejected(f"Wechatpay-Serial {wanted['Wechatpay-Serial'][:64]!r} is not our public key id")
        if wanted["Wechatpay-Signature-Type"] != SIGNATURE_TYPE:
            raise NotificationRejected(f"Wechatpay-Signature-Type is not {SIGNATURE_TYPE}")
        try:
            sent_at = int(wanted["Wechatpay-Timestamp"])
        except ValueError:
            raise NotificationRejected("Wechatpay-Timestamp is not a number") from None
        skew = abs(time.time() - sent_at)
        if skew > settings.WECHATPAY_MAX_CLOCK_SKEW:
            raise NotificationRejected(f"Wechatpay-Timestamp is {int(skew)} s away from now (replay?)")
        try:
            event = _client().callback(wanted, body)
        except Exception as exc:
            log.debug("WeChat Pay callback() raised %s", type(exc).__name__)
            event = None
        if not isinstance(event, dict) or not isinstance(event.get("resource"), dict):
            raise NotificationRejected("bad signature or key")
        try:
            return self._notification(str(event.get("event_type", "")), event["resource"])
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise NotificationRejected(f"malformed resource: {exc}") from None

    def _notification(self, event_type: str, resource: dict) -> VerifiedNotification:
        if resource.get("mchid") != settings.WECHATPAY_MCHID:
            raise NotificationRejected("mchid is not ours")
        amount = resource.get("amount") or {}
        if event_type.startswith("REFUND."):
            for name in ("out_trade_no", "out_refund_no"):
                if not resource.get(name):
                    raise NotificationRejected(f"{name} is missing")
            return VerifiedNotification(
                order_number=str(resource["out_trade_no"]),
                trade_no=str(resource.get("transaction_id", "")),
                amount=_fen(amount["total"], "amount.total"),
                currency=str(amount.get("currency") or "CNY"),
                paid=False,
                state=event_type,
                refund_no=str(resource["out_refund_no"]),
                refund_amount=_fen(amount["refund"], "amount.refund"),
            )
        if event_type != "TRANSACTION.SUCCESS":
            # Genuine but not about a payment we handle: acknowledged and logged as ignored.
            return VerifiedNotification(
                order_number=str(resource.get("out_trade_no", "")),
                trade_no=str(resource.get("transaction_id", "")),
                amount=Decimal("0.00"),
                currency="CNY",
                paid=False,
                state=event_type or "unknown event",
            )
        if resource.get("appid") != settings.WECHATPAY_APPID:
            raise NotificationRejected("appid is not ours")
        state = str(resource.get("trade_state", ""))
        paid = state == "SUCCESS"
        if not resource.get("out_trade_no"):
            raise NotificationRejected("out_trade_no is missing")
        if paid and not resource.get("transaction_id"):
            raise NotificationRejected("transaction_id is missing")
        return VerifiedNotification(
            order_number=str(resource["out_trade_no"]),
            trade_no=str(resource.get("transaction_id", "")),
            amount=_fen(amount["total"], "amount.total"),
            currency=str(amount.get("currency") or "CNY"),
            paid=paid,
            state=state or "no trade_state",
            paid_at=_parse_time(resource.get("success_time")),
        )

    def reply(self, *, ok: bool) -> HttpResponse:
        if ok:
            return HttpResponse(status=204)
        return JsonResponse({"code": "FAIL", "message": "notification rejected"}, status=400)

    # --- calls to the gateway ---------------------------------------------------------
    def _call(self, op: str, method: str, **kwargs) -> tuple[int, Any]:
        """Run one SDK call: (status, parsed JSON dict, or the raw bytes of a file)."""
        client = _client()
        try:
            status, payload = getattr(client, method)(**kwargs)
        except requests.RequestException as exc:
            raise GatewayError(f"WeChat Pay {op}: gateway unreachable ({type(exc).__name__})") from exc
        except Exception as exc:  # the SDK raises bare Exceptions, e.g. on a bad reply signature
            if "verify the signature" in str(exc):
                raise GatewayError(f"WeChat Pay {op}: the reply is not signed by WeChat Pay's key") from exc
            raise GatewayError(f"WeChat Pay {op}: {exc}") from exc
        if not payload:
            return status, {}
        if isinstance(payload, str) or status >= 300:  # JSON, or an error sent without a JSON type
            try:
                payload = json.loads(payload)
            except ValueError:
                raise GatewayError(f"WeChat Pay {op}: HTTP {status}, the reply is not JSON") from None
            if not isinstance(payload, dict):
                raise GatewayError(f"WeChat Pay {op}: HTTP {status}, the reply is not a JSON object")
        return status, payload

    @staticmethod
    def _error(op: str, status: int, data: Any) -> GatewayError:
        if isinstance(data, dict):
            return GatewayError(f"WeChat Pay {op}: HTTP {status} {data.get('code', '')}: {data.get('message', '')}")
        return GatewayError(f"WeChat Pay {op}: HTTP {status}")

    def start_payment(
        self,
        *,
        order_number: str,
        amount: Decimal,
        subject: str,
        device: Device,
        client_ip: str,
        notify_url: str,
        return_url: str,
        expires_at: datetime,
    ) -> PaymentStart:
        kwargs: dict[str, Any] = {
            "description": (subject or order_number)[:DESCRIPTION_MAX],
            "out_trade_no": order_number,
            "amount": {"total": to_fen(amount), "currency": "CNY"},
            "time_expire": _rfc3339(expires_at),
            "notify_url": notify_url or _default_notify_url(),
        }
        if device == Device.MOBILE:
            kwargs["pay_type"] = WeChatPayType.H5
            kwargs["scene_info"] = {"payer_client_ip": client_ip, "h5_info": {"type": "Wap"}}
            field_name = "h5_url"
        else:
            kwargs["pay_type"] = WeChatPayType.NATIVE
            field_name = "code_url"
        status, data = self._call("pay", "pay", **kwargs)
        if status != 200 or not isinstance(data, dict):
            raise self._error("pay", status, data)
        url = data.get(field_name)
        if not url:
            raise GatewayError(f"WeChat Pay pay: the reply has no {field_name}")
        if field_name == "code_url":
            return PaymentStart(qr_text=url)
        if return_url:
            # Documented: WeChat's H5 cashier sends the buyer back to redirect_url afterwards.
            url += ("&" if "?" in url else "?") + "redirect_url=" + quote(return_url, safe="")
        return PaymentStart(redirect_url=url)

    def _check_ours(self, op: str, data: dict, order_number: str) -> None:
        if data.get("out_trade_no") not in (None, order_number):
            raise GatewayError(f"WeChat Pay {op}: the reply is about another order")
        if data.get("mchid") not in (None, settings.WECHATPAY_MCHID):
            raise GatewayError(f"WeChat Pay {op}: the reply is about another merchant")
        if data.get("appid") not in (None, settings.WECHATPAY_APPID):
            raise GatewayError(f"WeChat Pay {op}: the reply is about another app")

    def query(self, *, order_number: str) -> TradeStatus:
        status, data = self._call("query", "query", out_trade_no=order_number)
        if status == 404 and isinstance(data, dict) and data.get("code") == "ORDER_NOT_EXIST":
            return TradeStatus(exists=False)
        if status != 200 or not isinstance(data, dict):
            raise self._error("query", status, data)
        self._check_ours("query", data, order_number)
        state = str(data.get("trade_state", ""))
        amount = data.get("amount") or {}
        try:
            total = _fen(amount["total"], "amount.total") if "total" in amount else None
            paid_at = _parse_time(data.get("success_time"))
        except ValueError as exc:
            raise GatewayError(f"WeChat Pay query: {exc}") from None
        return TradeStatus(
            exists=True,
            paid=state == "SUCCESS",  # REFUND (paid, then refunded) is reported by state only
            closed=state in CLOSED_STATES,
            trade_no=str(data.get("transaction_id", "")),
            amount=total,
            state=state,
            paid_at=paid_at,
        )

    def close(self, *, order_number: str) -> None:
        status, data = self._call("close", "close", out_trade_no=order_number)
        if status in (200, 204):
            return
        code = data.get("code") if isinstance(data, dict) else None
        if code in ("ORDER_NOT_EXIST", "ORDER_CLOSED"):
            return
        raise self._error("close", status, data)

    def _refund_result(self, op: str, data: dict, refund_no: str, order_number: str) -> RefundResult:
        if data.get("out_refund_no") != refund_no:
            raise GatewayError(f"WeChat Pay {op}: the reply is about another refund")
        self._check_ours(op, data, order_number)
        state = str(data.get("status", ""))
        try:
            amount = _fen((data.get("amount") or {})["refund"], "amount.refund")
        except (KeyError, ValueError) as exc:
            raise GatewayError(f"WeChat Pay {op}: {exc}") from None
        return RefundResult(
            refund_no=refund_no,
            done=state == "SUCCESS",
            amount=amount,
            gateway_refund_id=str(data.get("refund_id", "")),
            state=state,
        )

    def refund(
        self, *, order_number: str, refund_no: str, amount: Decimal, total: Decimal, reason: str, notify_url: str
    ) -> RefundResult:
        kwargs: dict[str, Any] = {
            "out_refund_no": refund_no,
            "amount": {"refund": to_fen(amount), "total": to_fen(total), "currency": "CNY"},
            "out_trade_no": order_number,
            # Without it WeChat sends refund events to the URL set in the merchant platform.
            "notify_url": notify_url or _default_notify_url(),
        }
        if reason:
            kwargs["reason"] = reason[:REASON_MAX]
        status, data = self._call("refund", "refund", **kwargs)
        if status != 200 or not isinstance(data, dict):
            raise self._error("refund", status, data)
        return self._refund_result("refund", data, refund_no, order_number)

    def refund_query(self, *, order_number: str, refund_no: str) -> RefundResult:
        status, data = self._call("refund query", "query_refund", out_refund_no=refund_no)
        if status == 404 and isinstance(data, dict) and data.get("code") == "RESOURCE_NOT_EXISTS":
            # WeChat never saw it (e.g. the request was lost): asking refund() again is safe.
            return RefundResult(refund_no=refund_no, done=False, amount=Decimal("0.00"), state="NOT_FOUND")
        if status != 200 or not isinstance(data, dict):
            raise self._error("refund query", status, data)
        return self._refund_result("refund query", data, refund_no, order_number)

    def bill(self, *, day: date) -> list[BillLine]:
        status, data = self._call("trade bill", "trade_bill", bill_date=day.isoformat(), bill_type="ALL")
        if status in (400, 404) and isinstance(data, dict) and data.get("code") == "NO_STATEMENT_EXIST":
            return []  # no trades that day
        if status != 200 or not isinstance(data, dict):
            raise self._error("trade bill", status, data)
        url = str(data.get("download_url", ""))
        gate_way = _client()._core._gate_way
        if not url.startswith(gate_way + "/"):
            # The SDK signs and sends the request to its own host + this URL's path.
            raise GatewayError("WeChat Pay trade bill: the download URL is not on the gateway's host")
        status, payload = self._call("bill download", "download_bill", url=url)
        if status != 200 or not isinstance(payload, bytes):
            raise self._error("bill download", status, payload)
        try:
            raw = gzip.decompress(payload)
        except (OSError, EOFError) as exc:
            raise GatewayError(f"WeChat Pay bill download: not a gzip file ({exc})") from None
        hash_type, hash_value = str(data.get("hash_type", "")), str(data.get("hash_value", ""))
        if hash_type.upper() == "SHA1" and hashlib.sha1(raw, usedforsecurity=False).hexdigest() != hash_value.lower():
            raise GatewayError("WeChat Pay bill download: the file does not match its SHA1 hash")
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise GatewayError("WeChat Pay bill download: the file is not UTF-8") from None
        return parse_bill(text)
