"""A fake WeChat Pay APIv3 server on 127.0.0.1, and signed callbacks, for tests.

The fake checks every request's merchant signature (``Authorization:
WECHATPAY2-SHA256-RSA2048 ...`` over ``METHOD\\nURL\\nts\\nnonce\\nbody\\n`` with the merchant's
public key) and signs every reply with the platform private key (``Wechatpay-*`` headers, over
``ts\\nnonce\\nbody\\n``), as WeChat Pay does. Trades, refunds and bills live in memory and
can be scripted. All keys are generated here, in the test process.
"""

import base64
import gzip
import hashlib
import json
import re
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

BEIJING = ZoneInfo("Asia/Shanghai")
SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
JSON_TYPE = "application/json; charset=utf-8"


# --- keys -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Keys:
    merchant: rsa.RSAPrivateKey  # the merchant's API key (we sign requests with it)
    platform: rsa.RSAPrivateKey  # WeChat Pay's key (it signs replies and callbacks)
    forger: rsa.RSAPrivateKey  # someone else's key
    mchid: str = "1900000109"
    appid: str = "wxd678efh567hg6787"
    cert_serial_no: str = "444F4864EA9B34415E5D7A6A5A2A3B1F2C3D4E5F"
    public_key_id: str = "PUB_KEY_ID_0119000001092024010200112233000001"
    apiv3_key: str = "a12d3924fd499edac8a5efc0Abcd1234"  # 32 ASCII characters


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@cache
def generated_keys() -> Keys:
    """Generated once per test process."""
    return Keys(merchant=new_key(), platform=new_key(), forger=new_key())


def private_pem(key: rsa.RSAPrivateKey, fmt=serialization.PrivateFormat.PKCS8) -> str:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()


def public_pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def sign(key: rsa.RSAPrivateKey, message: str) -> str:
    return base64.b64encode(key.sign(message.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()


def configure(settings, keys: Keys, *, gateway_url: str = "") -> None:
    """The project's WECHATPAY_* settings for these keys (pytest-django ``settings``)."""
    settings.WECHATPAY_MCHID = keys.mchid
    settings.WECHATPAY_APPID = keys.appid
    settings.WECHATPAY_PRIVATE_KEY = private_pem(keys.merchant)
    settings.WECHATPAY_CERT_SERIAL_NO = keys.cert_serial_no
    settings.WECHATPAY_APIV3_KEY = keys.apiv3_key
    settings.WECHATPAY_PUBLIC_KEY = public_pem(keys.platform)
    settings.WECHATPAY_PUBLIC_KEY_ID = keys.public_key_id
    settings.WECHATPAY_GATEWAY_URL = gateway_url
    settings.WECHATPAY_MAX_CLOCK_SKEW = 300
    settings.PAYMENTS_GATEWAY_TIMEOUT = 5


# --- signed callbacks -------------------------------------------------------------------


def rfc3339(moment: datetime | None = None) -> str:
    return (moment or datetime.now(BEIJING)).astimezone(BEIJING).isoformat(timespec="seconds")


def transaction_resource(
    keys: Keys, *, order_number: str, total_fen: int, trade_state: str = "SUCCESS", **overrides
) -> dict[str, Any]:
    resource = {
        "appid": keys.appid,
        "mchid": keys.mchid,
        "out_trade_no": order_number,
        "transaction_id": "42000" + secrets.token_hex(12)[:23].upper() if trade_state == "SUCCESS" else "",
        "trade_type": "NATIVE",
        "trade_state": trade_state,
        "trade_state_desc": "支付成功" if trade_state == "SUCCESS" else trade_state,
        "bank_type": "OTHERS",
        "attach": "",
        "success_time": rfc3339() if trade_state == "SUCCESS" else "",
        "payer": {"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
        "amount": {"total": total_fen, "payer_total": total_fen, "currency": "CNY", "payer_currency": "CNY"},
    }
    resource.update(overrides)
    return resource


def refund_resource(
    keys: Keys, *, order_number: str, refund_no: str, total_fen: int, refund_fen: int, status: str = "SUCCESS"
) -> dict[str, Any]:
    return {
        "mchid": keys.mchid,
        "out_trade_no": order_number,
        "transaction_id": "4200000" + secrets.token_hex(10).upper()[:21],
        "out_refund_no": refund_no,
        "refund_id": "50000" + secrets.token_hex(12).upper()[:24],
        "refund_status": status,
        "success_time": rfc3339(),
        "user_received_account": "支付用户零钱",
        "amount": {"total": total_fen, "refund": refund_fen, "payer_total": total_fen, "payer_refund": refund_fen},
    }


def callback(
    keys: Keys,
    resource: dict[str, Any],
    *,
    event_type: str = "TRANSACTION.SUCCESS",
    sign_key: rsa.RSAPrivateKey | None = None,
    apiv3_key: str | None = None,
    serial: str | None = None,
    timestamp: int | None = None,
    signature_type: str = SIGNATURE_TYPE,
) -> tuple[bytes, dict[str, str]]:
    """A notification as WeChat Pay sends it: (body, the five Wechatpay-* headers)."""
    associated_data = "refund" if event_type.startswith("REFUND.") else "transaction"
    nonce = secrets.token_hex(6)  # 12 characters: AES-GCM's 96-bit nonce
    ciphertext = AESGCM((apiv3_key or keys.apiv3_key).encode()).encrypt(
        nonce.encode(), json.dumps(resource, ensure_ascii=False).encode(), associated_data.encode()
    )
    event = {
        "id": "EV-" + secrets.token_hex(10),
        "create_time": rfc3339(),
        "resource_type": "encrypt-resource",
        "event_type": event_type,
        "summary": "支付成功" if event_type == "TRANSACTION.SUCCESS" else "退款成功",
        "resource": {
            "original_type": associated_data,
            "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": base64.b64encode(ciphertext).decode(),
            "associated_data": associated_data,
            "nonce": nonce,
        },
    }
    body = json.dumps(event, ensure_ascii=False)
    ts = str(int(time.time()) if timestamp is None else timestamp)
    header_nonce = secrets.token_hex(16)
    headers = {
        "Wechatpay-Signature": sign(sign_key or keys.platform, f"{ts}\n{header_nonce}\n{body}\n"),
        "Wechatpay-Timestamp": ts,
        "Wechatpay-Nonce": header_nonce,
        "Wechatpay-Serial": keys.public_key_id if serial is None else serial,
        "Wechatpay-Signature-Type": signature_type,
    }
    return body.encode(), headers


def as_meta(headers: dict[str, str]) -> dict[str, str]:
    """Headers as Django's test client takes them (HTTP_WECHATPAY_SIGNATURE=...)."""
    return {"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers.items()}


# --- bills ------------------------------------------------------------------------------

BILL_HEADER = (
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,"
    "货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,"
    "商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注"
)


def bill_row(keys: Keys, **values: str) -> str:
    """One bill row; every field starts with a backtick, as in WeChat Pay's bills."""
    columns = BILL_HEADER.split(",")
    row = dict.fromkeys(columns, "")
    row.update({"公众账号ID": keys.appid, "商户号": keys.mchid, "特约商户号": "0", "货币种类": "CNY"})
    row.update({"代金券金额": "0.00", "充值券退款金额": "0.00", "手续费": "0.00000", "费率": "0.60%"})
    row.update(values)
    return ",".join("`" + row[c] for c in columns)


def bill_text(rows: list[str], totals: str = "`0,`0.00,`0.00,`0.00,`0.00000,`0.00,`0.00") -> str:
    summary = "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
    return "\n".join([BILL_HEADER, *rows, summary, totals]) + "\n"


# --- the server -------------------------------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    body: Any
    authorized: bool
    reason: str = ""


@dataclass
class FakeWeChatPay:
    keys: Keys
    trades: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    refund_requests: Counter = field(default_factory=Counter)
    bills: dict[str, bytes] = field(default_factory=dict)  # bill_date -> the bill's text (UTF-8)
    seen: list[Seen] = field(default_factory=list)
    # Scripting
    fail_status: int = 0  # answer every request with this HTTP status (e.g. 500)
    reply_key: rsa.RSAPrivateKey | None = None  # sign replies with another key
    new_refund_status: str = "PROCESSING"
    bill_hash_override: str = ""

    def __post_init__(self):
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    # --- lifecycle
    def start(self) -> "FakeWeChatPay":
        handler = type("Handler", (_Handler,), {"fake": self})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    # --- scripting helpers
    def add_trade(self, order_number: str, total_fen: int, state: str = "NOTPAY") -> dict[str, Any]:
        with self.lock:
            trade = self.trades.setdefault(order_number, {"out_trade_no": order_number, "total": total_fen})
            trade["state"] = state
            if state in ("SUCCESS", "REFUND") and not trade.get("transaction_id"):
                trade["transaction_id"] = "4200" + secrets.token_hex(12).upper()
                trade["success_time"] = rfc3339()
            return trade

    def set_bill(self, day: str, text: str) -> None:
        self.bills[day] = text.encode("utf-8")

    def requests_to(self, prefix: str) -> list[Seen]:
        return [s for s in self.seen if s.path.startswith(prefix)]

    # --- request checks
    def check_authorization(self, method: str, path: str, body: str, headers) -> str:
        """'' when the merchant's signature is good, otherwise why not."""
        auth = headers.get("Authorization", "")
        scheme, _, rest = auth.partition(" ")
        if scheme != SIGNATURE_TYPE:
            return "bad scheme"
        params = dict(re.findall(r'(\w+)="([^"]*)"', rest))
        if params.get("mchid") != self.keys.mchid:
            return "mchid"
        if params.get("serial_no") != self.keys.cert_serial_no:
            return "serial_no"
        if headers.get("Wechatpay-Serial") != self.keys.public_key_id:
            return "Wechatpay-Serial"
        try:
            if abs(time.time() - int(params.get("timestamp", ""))) > 300:
                return "timestamp"
            signature = base64.b64decode(params.get("signature", ""), validate=True)
        except ValueError:
            return "malformed"
        message = f"{method}\n{path}\n{params['timestamp']}\n{params.get('nonce_str', '')}\n{body}\n"
        try:
            self.keys.merchant.public_key().verify(signature, message.encode(), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return "signature"
        return ""

    # --- the API
    def route(self, method: str, path: str, body: dict) -> tuple[int, Any]:
        url = urlsplit(path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        route = url.path
        with self.lock:
            if method == "POST" and route in ("/v3/pay/transactions/native", "/v3/pay/transactions/h5"):
                return self._pay(route.rsplit("/", 1)[1], body)
            if method == "GET" and (m := re.fullmatch(r"/v3/pay/transactions/out-trade-no/([^/]+)", route)):
                if query.get("mchid") != self.keys.mchid:
                    return 400, {"code": "PARAM_ERROR", "message": "mchid"}
                return self._query(m.group(1))
            if method == "POST" and (m := re.fullmatch(r"/v3/pay/transactions/out-trade-no/([^/]+)/close", route)):
                return self._close(m.group(1), body)
            if route == "/v3/refund/domestic/refunds" and method == "POST":
                return self._refund(body)
            if m := re.fullmatch(r"/v3/refund/domestic/refunds/([^/]+)", route):
                refund = self.refunds.get(m.group(1))
                if refund is None:
                    return 404, {"code": "RESOURCE_NOT_EXISTS", "message": "退款单不存在"}
                return 200, refund
            if route == "/v3/bill/tradebill" and method == "GET":
                return self._trade_bill(query)
            if route == "/v3/billdownload/file" and method == "GET":
                day = query.get("token", "")
                if day not in self.bills:
                    return 404, {"code": "RESOURCE_NOT_EXISTS", "message": "账单不存在"}
                return 200, gzip.compress(self.bills[day])
        return 404, {"code": "NOT_FOUND", "message": f"no route {method} {route}"}

    def _pay(self, kind: str, body: dict) -> tuple[int, Any]:
        if body.get("mchid") != self.keys.mchid or body.get("appid") != self.keys.appid:
            return 400, {"code": "PARAM_ERROR", "message": "mchid or appid"}
        total = (body.get("amount") or {}).get("total")
        if not isinstance(total, int) or total <= 0 or not body.get("notify_url") or not body.get("description"):
            return 400, {"code": "PARAM_ERROR", "message": "amount.total, notify_url or description"}
        if kind == "h5" and (body.get("scene_info") or {}).get("h5_info", {}).get("type") != "Wap":
            return 400, {"code": "PARAM_ERROR", "message": "scene_info.h5_info"}
        trade = self.trades.get(body["out_trade_no"])
        if trade is not None and trade["state"] != "NOTPAY":
            return 400, {"code": "ORDERPAID" if trade["state"] == "SUCCESS" else "ORDER_CLOSED", "message": "x"}
        self.trades[body["out_trade_no"]] = {"out_trade_no": body["out_trade_no"], "total": total, "state": "NOTPAY"}
        token = secrets.token_hex(8)
        if kind == "native":
            return 200, {"code_url": f"weixin://wxpay/bizpayurl?pr={token}"}
        prepay = "wx" + token
        return 200, {"h5_url": f"https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?prepay_id={prepay}&package=1"}

    def _query(self, order_number: str) -> tuple[int, Any]:
        trade = self.trades.get(order_number)
        if trade is None:
            return 404, {"code": "ORDER_NOT_EXIST", "message": "订单不存在"}
        reply = {
            "appid": self.keys.appid,
            "mchid": self.keys.mchid,
            "out_trade_no": order_number,
            "trade_state": trade["state"],
            "trade_state_desc": trade["state"],
            "amount": {"total": trade["total"], "currency": "CNY"},
        }
        if trade.get("transaction_id"):
            reply.update(
                transaction_id=trade["transaction_id"],
                success_time=trade["success_time"],
                trade_type="NATIVE",
                bank_type="OTHERS",
                payer={"openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
            )
            reply["amount"].update(payer_total=trade["total"], payer_currency="CNY")
        return 200, reply

    def _close(self, order_number: str, body: dict) -> tuple[int, Any]:
        if body.get("mchid") != self.keys.mchid:
            return 400, {"code": "PARAM_ERROR", "message": "mchid"}
        trade = self.trades.get(order_number)
        if trade is None:
            return 404, {"code": "ORDER_NOT_EXIST", "message": "订单不存在"}
        if trade["state"] in ("SUCCESS", "REFUND"):
            return 400, {"code": "ORDERPAID", "message": "订单已支付"}
        trade["state"] = "CLOSED"
        return 204, None

    def _refund(self, body: dict) -> tuple[int, Any]:
        refund_no = body.get("out_refund_no", "")
        self.refund_requests[refund_no] += 1
        if refund_no in self.refunds:  # idempotent on out_refund_no
            return 200, self.refunds[refund_no]
        trade = self.trades.get(body.get("out_trade_no", ""))
        if trade is None:
            return 404, {"code": "RESOURCE_NOT_EXISTS", "message": "订单不存在"}
        amount = body.get("amount") or {}
        if trade["state"] not in ("SUCCESS", "REFUND") or amount.get("total") != trade["total"]:
            return 400, {"code": "INVALID_REQUEST", "message": "订单未支付或金额不符"}
        if not isinstance(amount.get("refund"), int) or not 0 < amount["refund"] <= trade["total"]:
            return 400, {"code": "PARAM_ERROR", "message": "amount.refund"}
        trade["state"] = "REFUND"
        self.refunds[refund_no] = {
            "refund_id": "50300" + secrets.token_hex(12).upper(),
            "out_refund_no": refund_no,
            "transaction_id": trade["transaction_id"],
            "out_trade_no": trade["out_trade_no"],
            "channel": "ORIGINAL",
            "user_received_account": "支付用户零钱",
            "create_time": rfc3339(),
            "status": self.new_refund_status,
            "amount": {
                "total": trade["total"],
                "refund": amount["refund"],
                "payer_total": trade["total"],
                "payer_refund": amount["refund"],
                "currency": "CNY",
            },
            "notify_url": body.get("notify_url", ""),  # not in WeChat's reply; kept for the tests
        }
        return 200, self.refunds[refund_no]

    def _trade_bill(self, query: dict) -> tuple[int, Any]:
        day = query.get("bill_date", "")
        if query.get("bill_type") != "ALL" or query.get("tar_type") != "GZIP":
            return 400, {"code": "PARAM_ERROR", "message": "bill_type or tar_type"}
        if day not in self.bills:
            return 400, {"code": "NO_STATEMENT_EXIST", "message": "账单不存在"}
        return 200, {
            "hash_type": "SHA1",
            "hash_value": self.bill_hash_override or hashlib.sha1(self.bills[day]).hexdigest(),
            "download_url": f"{self.url}/v3/billdownload/file?token={day}",
        }


class _Handler(BaseHTTPRequestHandler):
    fake: FakeWeChatPay
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # quiet
        pass

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def _handle(self, method: str) -> None:
        fake = self.fake
        text = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        try:
            body = json.loads(text) if text else {}
        except ValueError:
            body = text
        reason = fake.check_authorization(method, self.path, text, self.headers)
        with fake.lock:
            fake.seen.append(Seen(method, self.path, body, authorized=not reason, reason=reason))
        if reason:
            self._send(401, {"code": "SIGN_ERROR", "message": f"签名错误 ({reason})"})
        elif fake.fail_status:
            self._send(fake.fail_status, {"code": "SYSTEM_ERROR", "message": "系统错误"})
        else:
            self._send(*fake.route(method, self.path, body if isinstance(body, dict) else {}))

    def _send(self, status: int, payload: Any) -> None:
        if isinstance(payload, bytes):  # a bill file: not signed, like WeChat's downloads
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        text = "" if payload is None else json.dumps(payload, ensure_ascii=False)
        ts, nonce = str(int(time.time())), secrets.token_hex(16)
        self.send_response(status)
        if text:
            self.send_header("Content-Type", JSON_TYPE)
        self.send_header("Content-Length", str(len(text.encode())))
        self.send_header("Request-ID", secrets.token_hex(16))
        self.send_header("Wechatpay-Nonce", nonce)
        self.send_header("Wechatpay-Timestamp", ts)
        self.send_header("Wechatpay-Serial", self.fake.keys.public_key_id)
        self.send_header("Wechatpay-Signature-Type", SIGNATURE_TYPE)
        key = self.fake.reply_key or self.fake.keys.platform
        self.send_header("Wechatpay-Signature", sign(key, f"{ts}\n{nonce}\n{text}\n"))
        self.end_headers()
        self.wfile.write(text.encode())
