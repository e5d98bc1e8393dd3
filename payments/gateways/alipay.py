"""Alipay (支付宝) through alipay-sdk-python. Every use of the SDK lives in this module.

The SDK signs requests, builds cashier URLs and verifies the gateway's reply signatures. Around
it this module fixes what PAYMENTS.md records as its pitfalls:

- the app private key must be PKCS#1 for the SDK: any RSA private key the operator pastes (PEM
  PKCS#1 or PKCS#8, or their bare base64, even with literal ``\\n``) is converted once, so a
  wrong format fails with a clear message instead of "Incorrect padding" at request time;
- its transport ignores the port in ``server_url`` and turns a non-200 reply into a TypeError:
  ``WebUtils.get_http_connection`` is replaced (once, at import) with one that honours scheme,
  host and port and raises the SDK's own ``ResponseException`` on a non-200 status;
- transport errors and bad reply signatures become ``GatewayError`` with a short message;
- it has no notification verifier and accepts SHA-1 signatures: notifications are verified here
  with ``cryptography``, RSA2 (SHA-256) only.

Nothing here logs keys, signatures or notification bodies; the SDK gets no logger (it would log
every request's full signed content at INFO).
"""

import base64
import binascii
import csv
import http.client
import io
import json
import logging
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from urllib.parse import parse_qsl, urlsplit
from urllib.request import Request, urlopen
from zoneinfo import ZoneInfo

from alipay.aop.api.AlipayClientConfig import AlipayClientConfig
from alipay.aop.api.DefaultAlipayClient import DefaultAlipayClient
from alipay.aop.api.exception.Exception import RequestException, ResponseException
from alipay.aop.api.request.AlipayDataDataserviceBillDownloadurlQueryRequest import (
    AlipayDataDataserviceBillDownloadurlQueryRequest,
)
from alipay.aop.api.request.AlipayFundTransCommonQueryRequest import AlipayFundTransCommonQueryRequest
from alipay.aop.api.request.AlipayFundTransUniTransferRequest import AlipayFundTransUniTransferRequest
from alipay.aop.api.request.AlipayTradeCloseRequest import AlipayTradeCloseRequest
from alipay.aop.api.request.AlipayTradeFastpayRefundQueryRequest import AlipayTradeFastpayRefundQueryRequest
from alipay.aop.api.request.AlipayTradePagePayRequest import AlipayTradePagePayRequest
from alipay.aop.api.request.AlipayTradePrecreateRequest import AlipayTradePrecreateRequest
from alipay.aop.api.request.AlipayTradeQueryRequest import AlipayTradeQueryRequest
from alipay.aop.api.request.AlipayTradeRefundRequest import AlipayTradeRefundRequest
from alipay.aop.api.request.AlipayTradeWapPayRequest import AlipayTradeWapPayRequest
from alipay.aop.api.util import WebUtils
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from django.conf import settings
from django.http import HttpResponse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from marketplace.money import parse_yuan, yuan_str

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

BEIJING = ZoneInfo("Asia/Shanghai")  # Alipay's times, in requests, replies and bills
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
PAID_STATES = {"TRADE_SUCCESS", "TRADE_FINISHED"}
SUCCESS_CODE = "10000"
TRADE_NOT_EXIST = "ACQ.TRADE_NOT_EXIST"
GBK_CHARSETS = {"gbk", "gb2312", "gb18030"}
MAX_BILL_BYTES = 64 * 1024 * 1024
# Transfers to an Alipay account (单笔转账, alipay.fund.trans.uni.transfer).
TRANSFER_PRODUCT = "TRANS_ACCOUNT_NO_PWD"
TRANSFER_SCENE = "DIRECT_TRANSFER"
TRANSFER_NOT_EXIST = "ORDER_NOT_EXIST"
# Answers after which nobody knows whether the money moved: ask the transfer query, never resend blindly.
TRANSFER_UNKNOWN_CODES = {"20000"}  # "Service Currently Unavailable"
TRANSFER_UNKNOWN_SUB_CODES = {"SYSTEM_ERROR", "aop.unknow-error", "isp.unknow-error", "PAYMENT_INFO_INCONSISTENCY"}
TRANSFER_DONE = {"SUCCESS"}
TRANSFER_FAILED = {"FAIL", "CLOSED", "REFUND"}  # REFUND: the receiving side sent the money back


@dataclass(frozen=True)
class TransferResult:
    """A transfer's state at Alipay: ``success``, ``failed`` (definitely not paid, ``error`` says
    why), ``processing`` (ask again later) or ``not_found`` (the query has never seen it)."""

    out_biz_no: str
    state: str
    order_id: str = ""
    fund_order_id: str = ""
    amount: Decimal | None = None
    paid_at: datetime | None = None
    error: str = ""


# --- transport: the SDK's http.client use, fixed ------------------------------------------


class _CheckedResponseMixin(http.client.HTTPConnection):
    """``getresponse`` that raises the SDK's ResponseException on a non-200 status.

    The SDK's own check builds its message as ``str + bytes`` and so raises TypeError instead.
    """

    def getresponse(self) -> http.client.HTTPResponse:
        response = super().getresponse()
        if response.status != 200:
            response.read(4096)
            response.close()
            raise ResponseException(f"the gateway answered HTTP {response.status} {response.reason}")
        return response


class _HTTPConnection(_CheckedResponseMixin, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_CheckedResponseMixin, http.client.HTTPSConnection):
    pass


def _http_connection(url, query_string, timeout):
    """Replaces ``WebUtils.get_http_connection``: honours scheme, host and port.

    The original always connects to port 80/443, and a URL with a port raises TypeError.
    """
    parts = urlsplit(url)
    connection: _CheckedResponseMixin
    if parts.scheme == "https":
        connection = _HTTPSConnection(parts.hostname, parts.port or 443, timeout=timeout)
    elif parts.scheme == "http":
        connection = _HTTPConnection(parts.hostname, parts.port or 80, timeout=timeout)
    else:
        raise RequestException(f"unsupported scheme in ALIPAY_SERVER_URL: {parts.scheme!r}")
    target = parts.path or "/"
    if query_string:
        target += "?" + query_string
    return target, connection


# The SDK is used by this module only, so the replacement is this module's concern. It is done once,
# at import: swapping it per call would race between threads.
WebUtils.get_http_connection = _http_connection


# --- keys --------------------------------------------------------------------------------


def _key_bytes(text: str) -> tuple[bool, bytes]:
    """(is_pem, bytes) of a key pasted as PEM or as the bare base64 the Alipay console shows."""
    text = text.strip().replace("\\n", "\n")
    if "-----BEGIN" in text:
        return True, text.encode()
    try:
        return False, base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return False, b""


@lru_cache(maxsize=8)
def _app_private_key_pkcs1(text: str) -> str:
    """The app private key as the PKCS#1 PEM the SDK needs, from PKCS#1 or PKCS#8, PEM or base64."""
    is_pem, data = _key_bytes(text)
    try:
        if is_pem:
            key = serialization.load_pem_private_key(data, password=None)
        else:
            key = serialization.load_der_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise GatewayError(
            "ALIPAY_APP_PRIVATE_KEY is not an unencrypted private key (PEM, or the bare base64 of PKCS#1 or PKCS#8)"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise GatewayError("ALIPAY_APP_PRIVATE_KEY is not an RSA key")
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode()


@lru_cache(maxsize=8)
def _alipay_public_key(text: str) -> rsa.RSAPublicKey:
    """Alipay's public key, loaded once per process (per configured value)."""
    is_pem, data = _key_bytes(text)
    try:  # SubjectPublicKeyInfo (the console's form) or PKCS#1 ("RSA PUBLIC KEY")
        key = serialization.load_pem_public_key(data) if is_pem else serialization.load_der_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        key = None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("ALIPAY_PUBLIC_KEY is not an RSA public key (PEM or bare base64)")
    return key


def _alipay_public_key_pem(text: str) -> str:
    return (
        _alipay_public_key(text)
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@lru_cache(maxsize=8)
def _client(app_id: str, private_key: str, public_key: str, server_url: str, timeout: int) -> DefaultAlipayClient:
    """One SDK client per process and configuration (tests that change settings get their own)."""
    config = AlipayClientConfig()
    config.app_id = app_id
    config.app_private_key = _app_private_key_pkcs1(private_key)
    try:
        config.alipay_public_key = _alipay_public_key_pem(public_key)
    except ValueError as exc:
        raise GatewayError(str(exc)) from None
    config.sign_type = "RSA2"
    config.server_url = server_url
    config.timeout = timeout
    return DefaultAlipayClient(config, None)  # no logger: the SDK logs signed requests in full


# --- notifications --------------------------------------------------------------------------


def notify_sign_content(params: Mapping[str, str]) -> str:
    """What Alipay signs in a notification: ``k=v`` sorted by key, joined by ``&``, without
    ``sign``, ``sign_type`` and empty values.

    The Python SDK's ``get_sign_content`` keeps empty values (``k=``); Alipay's signing rules and
    its Java SDK (``AlipaySignature.getSignContent``, used by ``rsaCheckV1`` for notifications)
    leave them out, so a notification carrying an empty field only verifies this way.
    """
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k not in ("sign", "sign_type") and params[k] != "")


def _parse_form(body: bytes) -> dict[str, str]:
    # The charset field says how the percent-escapes decode (utf-8 unless configured otherwise).
    peek = dict(parse_qsl(body.decode("latin-1"), keep_blank_values=True))
    encoding = "gb18030" if peek.get("charset", "").strip().lower() in GBK_CHARSETS else "utf-8"
    try:
        pairs = parse_qsl(
            body.decode(encoding), keep_blank_values=True, strict_parsing=True, encoding=encoding, errors="strict"
        )
    except (UnicodeDecodeError, ValueError):
        raise NotificationRejected("body is not a form") from None
    params: dict[str, str] = {}
    for key, value in pairs:
        if key in params:
            raise NotificationRejected(f"field {key} is repeated")
        params[key] = value
    return params


def _beijing_time(text: str) -> datetime | None:
    text = (text or "").strip()
    if not text:
        return None
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=BEIJING)


def _beijing_str(moment: datetime) -> str:
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment)
    return moment.astimezone(BEIJING).strftime(TIME_FORMAT)


_SUBJECT_FORBIDDEN = re.compile(r"[/=&\x00-\x1f]+")


def _subject(text: str) -> str:
    """Alipay refuses ``/``, ``=`` and ``&`` in a subject (doc); at most 256 characters."""
    return _SUBJECT_FORBIDDEN.sub(" ", str(text)).strip()[:256] or "-"


# --- the adapter ---------------------------------------------------------------------------------


class AlipayGateway(RemoteGateway):
    code = "alipay"
    name = _("Alipay")

    @classmethod
    def is_enabled(cls) -> bool:
        return all(
            (
                settings.ALIPAY_APP_ID,
                settings.ALIPAY_SELLER_ID,
                settings.ALIPAY_APP_PRIVATE_KEY,
                settings.ALIPAY_PUBLIC_KEY,
            )
        )

    # --- notifications -------------------------------------------------------------------

    def verify(self, *, headers: Mapping[str, str], body: bytes) -> VerifiedNotification:
        params = _parse_form(body)
        # The SDK's verify_with_rsa also accepts SHA-1 ("RSA") signatures: only RSA2 is ours.
        if params.get("sign_type") != "RSA2":
            raise NotificationRejected("sign_type is not RSA2")
        try:
            signature = base64.b64decode(params.get("sign", ""), validate=True)
        except (binascii.Error, ValueError):
            raise NotificationRejected("signature is not base64") from None
        if not signature:
            raise NotificationRejected("signature is missing")
        try:
            public_key = _alipay_public_key(settings.ALIPAY_PUBLIC_KEY)
        except ValueError as exc:
            raise NotificationRejected(str(exc)) from None
        try:
            public_key.verify(signature, notify_sign_content(params).encode(), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise NotificationRejected("bad signature") from None
        if params.get("app_id") != settings.ALIPAY_APP_ID:
            raise NotificationRejected("app_id is not ours")
        if params.get("seller_id") != settings.ALIPAY_SELLER_ID:
            raise NotificationRejected("seller_id is not ours")
        for name in ("out_trade_no", "trade_no", "trade_status"):
            if not params.get(name):
                raise NotificationRejected(f"{name} is missing")
        try:
            amount = parse_yuan(params.get("total_amount", ""))
        except ValueError:
            raise NotificationRejected("total_amount is not an amount") from None
        refund_amount = None
        if params.get("refund_fee"):
            # A refund's notification: refund_fee is the trade's total refunded so far.
            try:
                refund_amount = parse_yuan(params["refund_fee"])
            except ValueError:
                raise NotificationRejected("refund_fee is not an amount") from None
        try:
            paid_at = _beijing_time(params.get("gmt_payment", ""))
        except ValueError:
            raise NotificationRejected("gmt_payment is not a time") from None
        return VerifiedNotification(
            order_number=params["out_trade_no"],
            trade_no=params["trade_no"],
            amount=amount,
            # Present only when the merchant priced in another currency; total_amount is then in it.
            currency=params.get("trans_currency") or "CNY",
            paid=params["trade_status"] in PAID_STATES,
            state=params["trade_status"],
            paid_at=paid_at,
            refund_no=params.get("out_biz_no", "") if refund_amount is not None else "",
            refund_amount=refund_amount,
        )

    def reply(self, *, ok: bool) -> HttpResponse:
        # Alipay stops resending only on the plain body "success".
        return HttpResponse("success" if ok else "failure", content_type="text/plain", status=200 if ok else 400)

    # --- the SDK -----------------------------------------------------------------------------

    def _client(self) -> DefaultAlipayClient:
        return _client(
            settings.ALIPAY_APP_ID,
            settings.ALIPAY_APP_PRIVATE_KEY,
            settings.ALIPAY_PUBLIC_KEY,
            settings.ALIPAY_SERVER_URL,
            settings.PAYMENTS_GATEWAY_TIMEOUT,
        )

    def _execute(self, method: str, request) -> dict:
        """Call the gateway; the reply's signature is checked by the SDK. Errors are GatewayError."""
        client = self._client()
        try:
            text = client.execute(request)
        except ResponseException as exc:
            message = str(exc)
            if "sign verify failed" in message:
                reason = "the reply's signature does not verify with ALIPAY_PUBLIC_KEY"
            elif "shape maybe illegal" in message:
                reason = "the reply is not a signed Alipay response"
            else:
                reason = message[:200]
            log.warning("alipay %s failed: %s", method, reason)
            raise GatewayError(f"{method}: {reason}") from None
        except RequestException as exc:
            reason = re.sub(r"^\[[^\]]*\]", "", str(exc))[:200]
            log.warning("alipay %s failed: %s", method, reason)
            if "sign failed" in reason:
                raise GatewayError(f"{method}: cannot sign the request with ALIPAY_APP_PRIVATE_KEY") from None
            raise GatewayError(f"{method}: cannot reach the gateway: {reason}") from None
        except (OSError, http.client.HTTPException) as exc:
            log.warning("alipay %s failed: %s", method, exc.__class__.__name__)
            raise GatewayError(f"{method}: cannot reach the gateway: {exc.__class__.__name__} {exc}") from None
        except (UnicodeDecodeError, ValueError) as exc:
            raise GatewayError(f"{method}: unreadable reply ({exc.__class__.__name__})") from None
        try:
            reply = json.loads(text)
        except ValueError:
            raise GatewayError(f"{method}: the reply is not JSON") from None
        if not isinstance(reply, dict):
            raise GatewayError(f"{method}: the reply is not a JSON object")
        return reply

    @staticmethod
    def _failed(method: str, reply: Mapping) -> GatewayError:
        parts = [reply.get("code", ""), reply.get("msg", ""), reply.get("sub_code", ""), reply.get("sub_msg", "")]
        log.warning("alipay %s refused: %s %s", method, reply.get("code", ""), reply.get("sub_code", ""))
        return GatewayError(f"{method}: " + " ".join(str(p) for p in parts if p))

    @staticmethod
    def _ok(reply: Mapping) -> bool:
        return reply.get("code") == SUCCESS_CODE and not reply.get("sub_code")

    @staticmethod
    def _same(method: str, reply: Mapping, field: str, expected: str) -> None:
        """The SDK accepts any signed ``*_response``: make sure this one answers our question."""
        if reply.get(field) and reply[field] != expected:
            raise GatewayError(f"{method}: the reply is about {field} {reply[field]!r}, not {expected!r}")

    @staticmethod
    def _amount(method: str, text) -> Decimal | None:
        if text in (None, ""):
            return None
        try:
            return parse_yuan(str(text))
        except ValueError:
            raise GatewayError(f"{method}: {text!r} is not an amount") from None

    @staticmethod
    def _time(method: str, text) -> datetime | None:
        try:
            return _beijing_time(text or "")
        except ValueError:
            raise GatewayError(f"{method}: {text!r} is not a time") from None

    # --- paying --------------------------------------------------------------------------------

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
        """The signed cashier URL (no network): PC cashier on a computer, the wap cashier on a phone;
        or, asked for a QR code, a face-to-face trade whose code we show (alipay.trade.precreate)."""
        if device == Device.QR:
            return self.precreate(
                order_number=order_number, amount=amount, subject=subject, notify_url=notify_url, expires_at=expires_at
            )
        biz = {
            "out_trade_no": order_number,
            "total_amount": yuan_str(amount),
            "subject": _subject(subject),
            "time_expire": _beijing_str(expires_at),
        }
        if device == Device.MOBILE:
            request = AlipayTradeWapPayRequest()
            biz.update(product_code="QUICK_WAP_WAY", quit_url=return_url)
        else:
            request = AlipayTradePagePayRequest()
            biz.update(product_code="FAST_INSTANT_TRADE_PAY")
        request.biz_content = biz
        request.notify_url = notify_url
        request.return_url = return_url
        client = self._client()
        try:
            url = client.page_execute(request, http_method="GET")
        except RequestException:
            raise GatewayError("cannot sign the cashier URL with ALIPAY_APP_PRIVATE_KEY") from None
        return PaymentStart(redirect_url=url)

    def precreate(
        self, *, order_number: str, amount: Decimal, subject: str, notify_url: str, expires_at: datetime
    ) -> PaymentStart:
        """Face-to-face QR payment (alipay.trade.precreate): show ``qr_text`` as a QR code."""
        method = "alipay.trade.precreate"
        request = AlipayTradePrecreateRequest()
        request.biz_content = {
            "out_trade_no": order_number,
            "total_amount": yuan_str(amount),
            "subject": _subject(subject),
            "time_expire": _beijing_str(expires_at),
        }
        request.notify_url = notify_url
        reply = self._execute(method, request)
        if not self._ok(reply):
            raise self._failed(method, reply)
        self._same(method, reply, "out_trade_no", order_number)
        if not reply.get("qr_code"):
            raise GatewayError(f"{method}: the reply has no qr_code")
        return PaymentStart(qr_text=reply["qr_code"])

    def query(self, *, order_number: str) -> TradeStatus:
        method = "alipay.trade.query"
        request = AlipayTradeQueryRequest()
        request.biz_content = {"out_trade_no": order_number}
        reply = self._execute(method, request)
        if reply.get("sub_code") == TRADE_NOT_EXIST:
            return TradeStatus(exists=False)
        if not self._ok(reply):
            raise self._failed(method, reply)
        self._same(method, reply, "out_trade_no", order_number)
        state = reply.get("trade_status", "")
        return TradeStatus(
            exists=True,
            paid=state in PAID_STATES,
            closed=state == "TRADE_CLOSED",
            trade_no=reply.get("trade_no", ""),
            amount=self._amount(method, reply.get("total_amount")),
            state=state,
            paid_at=self._time(method, reply.get("send_pay_date")) if state in PAID_STATES else None,
        )

    def close(self, *, order_number: str) -> None:
        method = "alipay.trade.close"
        request = AlipayTradeCloseRequest()
        request.biz_content = {"out_trade_no": order_number}
        reply = self._execute(method, request)
        if self._ok(reply) or reply.get("sub_code") == TRADE_NOT_EXIST:
            return
        if reply.get("sub_code") == "ACQ.TRADE_STATUS_ERROR":
            # Already closed is fine; already paid is not (the caller must not expire the order quietly).
            status = self.query(order_number=order_number)
            if not status.exists or status.closed:
                return
            if status.paid:
                raise GatewayError(f"{method}: trade {status.trade_no} is already paid ({status.state})")
        raise self._failed(method, reply)

    # --- refunds -------------------------------------------------------------------------------

    def refund(
        self, *, order_number: str, refund_no: str, amount: Decimal, total: Decimal, reason: str, notify_url: str
    ) -> RefundResult:
        """Idempotent on ``refund_no`` (Alipay's out_request_no).

        alipay.trade.refund takes no notify_url: Alipay notifies refunds at the payment's notify_url.
        """
        method = "alipay.trade.refund"
        request = AlipayTradeRefundRequest()
        request.biz_content = {
            "out_trade_no": order_number,
            "out_request_no": refund_no,
            "refund_amount": yuan_str(amount),
        }
        if reason.strip():
            request.biz_content.refund_reason = _subject(reason)
        reply = self._execute(method, request)
        if not self._ok(reply):
            raise self._failed(method, reply)
        self._same(method, reply, "out_trade_no", order_number)
        if reply.get("fund_change") == "Y":
            return RefundResult(
                refund_no=refund_no, done=True, amount=amount, gateway_refund_id="", state="REFUND_SUCCESS"
            )
        # fund_change N (or absent) is also the answer to a repeated request: Alipay's doc says to
        # confirm with the refund query.
        return self.refund_query(order_number=order_number, refund_no=refund_no)

    def refund_query(self, *, order_number: str, refund_no: str) -> RefundResult:
        method = "alipay.trade.fastpay.refund.query"
        request = AlipayTradeFastpayRefundQueryRequest()
        request.biz_content = {"out_trade_no": order_number, "out_request_no": refund_no}
        reply = self._execute(method, request)
        if not self._ok(reply):
            raise self._failed(method, reply)
        self._same(method, reply, "out_trade_no", order_number)
        self._same(method, reply, "out_request_no", refund_no)
        amount = self._amount(method, reply.get("refund_amount"))
        if amount is None:
            # No such refund (yet): not received, failed, or asked too soon after the refund.
            return RefundResult(refund_no=refund_no, done=False, amount=Decimal("0.00"), state="NOT_FOUND")
        state = reply.get("refund_status", "")
        return RefundResult(refund_no=refund_no, done=state == "REFUND_SUCCESS", amount=amount, state=state)

    # --- payouts: transfers to an Alipay account ------------------------------------------------

    def transfer(
        self, *, out_biz_no: str, amount: Decimal, payee_account: str, payee_name: str, title: str, remark: str = ""
    ) -> TransferResult:
        """Pay ``amount`` to the Alipay account (login id: phone or email) of ``payee_name``.

        Idempotent on ``out_biz_no``: Alipay pays one transfer per number, so asking again after a
        timeout cannot pay twice. Raises GatewayError when the outcome is unknown (no answer, a
        system error): the caller asks ``transfer_query`` before anything else. A refusal (payee
        unknown, name mismatch, our balance short ...) is a ``failed`` result: no money moved.
        """
        method = "alipay.fund.trans.uni.transfer"
        request = AlipayFundTransUniTransferRequest()
        biz = {
            "out_biz_no": out_biz_no,
            "trans_amount": yuan_str(amount),
            "product_code": TRANSFER_PRODUCT,
            "biz_scene": TRANSFER_SCENE,
            "order_title": _subject(title)[:64],
            "payee_info": {"identity": payee_account, "identity_type": "ALIPAY_LOGON_ID", "name": payee_name},
        }
        if remark.strip():
            biz["remark"] = _subject(remark)[:200]
        request.biz_content = biz
        reply = self._execute(method, request)
        if not self._ok(reply):
            if reply.get("code") in TRANSFER_UNKNOWN_CODES or reply.get("sub_code") in TRANSFER_UNKNOWN_SUB_CODES:
                raise self._failed(method, reply)  # unknown: query before doing anything else
            error = self._failed(method, reply)
            return TransferResult(out_biz_no=out_biz_no, state="failed", error=str(error))
        self._same(method, reply, "out_biz_no", out_biz_no)
        return self._transfer_result(method, out_biz_no, reply, reply.get("trans_date"))

    def transfer_query(self, *, out_biz_no: str) -> TransferResult:
        """Where the transfer ``out_biz_no`` stands (alipay.fund.trans.common.query)."""
        method = "alipay.fund.trans.common.query"
        request = AlipayFundTransCommonQueryRequest()
        request.biz_content = {"out_biz_no": out_biz_no, "product_code": TRANSFER_PRODUCT, "biz_scene": TRANSFER_SCENE}
        reply = self._execute(method, request)
        if reply.get("sub_code") == TRANSFER_NOT_EXIST:
            return TransferResult(out_biz_no=out_biz_no, state="not_found")
        if not self._ok(reply):
            raise self._failed(method, reply)
        self._same(method, reply, "out_biz_no", out_biz_no)
        return self._transfer_result(method, out_biz_no, reply, reply.get("pay_date"))

    def _transfer_result(self, method: str, out_biz_no: str, reply: Mapping, paid_text) -> TransferResult:
        status = str(reply.get("status", "")).upper()
        if status in TRANSFER_DONE:
            state = "success"
        elif status in TRANSFER_FAILED:
            state = "failed"
        else:  # DEALING, WAIT_PAY, INIT: not finished
            state = "processing"
        error = ""
        if state == "failed":
            parts = [status, reply.get("error_code", ""), reply.get("fail_reason", "")]
            error = f"{method}: " + " ".join(str(p) for p in parts if p)
        return TransferResult(
            out_biz_no=out_biz_no,
            state=state,
            order_id=str(reply.get("order_id", "")),
            fund_order_id=str(reply.get("pay_fund_order_id", "")),
            amount=self._amount(method, reply.get("trans_amount") or reply.get("amount")),
            paid_at=self._time(method, paid_text) if state == "success" else None,
            error=error,
        )

    # --- the daily bill ----------------------------------------------------------------------

    def bill(self, *, day: date) -> list[BillLine]:
        method = "alipay.data.dataservice.bill.downloadurl.query"
        request = AlipayDataDataserviceBillDownloadurlQueryRequest()
        request.biz_content = {"bill_type": "trade", "bill_date": day.isoformat()}
        reply = self._execute(method, request)
        if not self._ok(reply):
            raise self._failed(method, reply)  # isp.bill_not_exist: not generated yet
        url = reply.get("bill_download_url", "")
        if urlsplit(url).scheme not in ("http", "https"):
            raise GatewayError(f"{method}: the reply has no download URL")
        return parse_bill(_download(url))


def _download(url: str) -> bytes:
    try:
        with urlopen(Request(url), timeout=settings.PAYMENTS_GATEWAY_TIMEOUT) as response:  # noqa: S310 (scheme checked)
            data = response.read(MAX_BILL_BYTES + 1)
    except (OSError, http.client.HTTPException) as exc:
        raise GatewayError(f"bill download failed: {exc.__class__.__name__} {exc}") from None
    if len(data) > MAX_BILL_BYTES:
        raise GatewayError("bill download is too large")
    return data


# --- parsing the bill -------------------------------------------------------------------------

TRADE_NO, ORDER_NO, KIND, FINISHED, ORDER_AMOUNT, REFUND_AMOUNT, REFUND_NO = (
    "支付宝交易号",
    "商户订单号",
    "业务类型",
    "完成时间",
    "订单金额",
    "退款金额",
    "退款批次号/请求号",
)


def _decode(data: bytes) -> str:
    # Real bills are GBK; a UTF-8 one (with or without BOM) is taken as such. GBK text is
    # practically never valid UTF-8, so trying UTF-8 first is safe.
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("gb18030", errors="replace")


def _column(name: str) -> str:
    """Header names without the unit: "订单金额（元）" -> "订单金额"."""
    return re.sub(r"[（(][^）)]*[）)]$", "", name.strip())


def parse_bill(data: bytes) -> list[BillLine]:
    """The trade bill: a zip of GBK CSV files; the detail file (业务明细) has one line per trade or
    refund, between '#' comment lines. Found by its header, not by its (GBK-encoded) file name."""
    texts: list[str] = []
    if data[:2] == b"PK":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                for info in archive.infolist():
                    if not info.is_dir() and info.file_size <= MAX_BILL_BYTES:
                        texts.append(_decode(archive.read(info)))
        except zipfile.BadZipFile:
            raise GatewayError("the bill is not a readable zip file") from None
    else:
        texts.append(_decode(data))
    for text in texts:
        lines = _detail_lines(text)
        if lines is not None:
            return lines
    raise GatewayError("the bill has no detail (业务明细) table")


def _detail_lines(text: str) -> list[BillLine] | None:
    header: list[str] | None = None
    lines: list[BillLine] = []
    for number, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or row[0].lstrip().startswith("#") or not any(cell.strip() for cell in row):
            if header is not None and row and row[0].lstrip().startswith("#"):
                break  # the footer after the table
            continue
        cells = [cell.strip() for cell in row]
        if header is None:
            names = [_column(cell) for cell in cells]
            if TRADE_NO in names and ORDER_NO in names and KIND in names:
                header = names
            continue
        record = dict(zip(header, cells, strict=False))
        line = _bill_line(record, number)
        if line is not None:
            lines.append(line)
    return lines if header is not None else None


def _bill_amount(text: str, number: int) -> Decimal:
    try:
        return parse_yuan(text.strip().removeprefix("-"))
    except ValueError:
        raise GatewayError(f"bill line {number}: {text!r} is not an amount") from None


def _bill_line(record: dict[str, str], number: int) -> BillLine | None:
    kind_text = record.get(KIND, "")
    if "退款" in kind_text:
        kind = "refund"
        amount_text = record.get(REFUND_AMOUNT) or record.get(ORDER_AMOUNT, "")
    elif "交易" in kind_text:
        kind = "payment"
        amount_text = record.get(ORDER_AMOUNT, "")
    else:
        log.info("alipay bill line %s: business type %r skipped", number, kind_text)
        return None
    try:
        at = _beijing_time(record.get(FINISHED, ""))
    except ValueError:
        at = None
    return BillLine(
        kind=kind,
        order_number=record.get(ORDER_NO, ""),
        trade_no=record.get(TRADE_NO, ""),
        amount=_bill_amount(amount_text, number),
        refund_no=record.get(REFUND_NO, "") if kind == "refund" else "",
        at=at,
        raw=record,
    )
