"""A fake Alipay open-platform gateway on 127.0.0.1, for the adapter's tests.

It does what Alipay's servers do, as far as the adapter can tell: it checks each request's RSA2
signature with the app's public key, keeps trades and refunds in memory, answers
``{"<method with dots as underscores>_response": {...}, "sign": "..."}`` signed with its own key
over the exact inner JSON text, serves daily bills (a zip of GBK CSV files in Alipay's layout) and
signs asynchronous notifications. Tests script it: add trades in any state, count refunds, make it
answer HTTP 500 or sign with the wrong key.
"""

import base64
import csv
import io
import json
import secrets
import threading
import time
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlencode, urlsplit
from zoneinfo import ZoneInfo

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

BEIJING = ZoneInfo("Asia/Shanghai")
APP_ID = "2021004100000001"  # what the tests configure the adapter with (the fake checks it)
SELLER_ID = "2088102100000001"
NOTIFY = "/payments/notify/alipay/"  # where the project takes Alipay's notifications
PKCS1 = serialization.PrivateFormat.TraditionalOpenSSL
FORMAT = "%Y-%m-%d %H:%M:%S"


def sign_content(params: Mapping[str, str], *, exclude=("sign",)) -> str:
    """Alipay's rule: sorted ``k=v`` joined by ``&``, without the excluded keys and empty values.

    Requests exclude only ``sign``; notifications exclude ``sign`` and ``sign_type``.
    """
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k not in exclude and params[k] != "")


def rsa2_sign(key: rsa.RSAPrivateKey, content: str, algorithm=None) -> str:
    signature = key.sign(content.encode(), padding.PKCS1v15(), algorithm or hashes.SHA256())
    return base64.b64encode(signature).decode()


def request_signature_ok(params: Mapping[str, str], public_key: rsa.RSAPublicKey) -> bool:
    """How Alipay checks a merchant's request (and how tests check a cashier URL)."""
    if params.get("sign_type") != "RSA2":
        return False
    try:
        public_key.verify(
            base64.b64decode(params.get("sign", ""), validate=True),
            sign_content(params).encode(),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )
    except (InvalidSignature, ValueError):
        return False
    return True


def now_beijing() -> str:
    return datetime.now(BEIJING).strftime(FORMAT)


@dataclass
class Trade:
    out_trade_no: str
    total_amount: Decimal
    status: str = "TRADE_SUCCESS"
    trade_no: str = field(default_factory=lambda: f"2024{secrets.randbelow(10**24):024d}")
    subject: str = "商品"
    created: str = field(default_factory=now_beijing)
    paid: str = field(default_factory=now_beijing)
    refunded: Decimal = Decimal("0.00")


@dataclass
class Transfer:
    out_biz_no: str
    amount: Decimal
    payee: str
    name: str
    order_id: str = field(default_factory=lambda: f"2024{secrets.randbelow(10**24):024d}")
    fund_order_id: str = field(default_factory=lambda: f"2025{secrets.randbelow(10**24):024d}")
    status: str = "SUCCESS"
    at: str = field(default_factory=now_beijing)


@dataclass
class Refund:
    out_trade_no: str
    out_request_no: str
    amount: Decimal
    at: str = field(default_factory=now_beijing)


class FakeAlipay:
    def __init__(
        self, *, gateway_key: rsa.RSAPrivateKey, app_public_key: rsa.RSAPublicKey, app_id: str, seller_id: str
    ):
        self.key = gateway_key
        self.app_public_key = app_public_key
        self.app_id = app_id
        self.seller_id = seller_id
        self.trades: dict[str, Trade] = {}
        self.refunds: dict[tuple[str, str], Refund] = {}
        self.refunds_executed = 0  # money that actually moved back: once per out_request_no
        self.calls: list[tuple[str, dict]] = []  # (method, params) of every gateway.do request
        self.fail_status: int | None = None  # answer every request with this HTTP status
        self.reply_key: rsa.RSAPrivateKey | None = None  # sign replies with this key instead
        self.bill_files: dict[str, bytes] = {}
        self.bill_downloads = 0
        # Payouts (alipay.fund.trans.*): transfers made, once per out_biz_no.
        self.transfers: dict[str, Transfer] = {}
        self.transfers_executed = 0  # money that actually left: once per out_biz_no
        self.transfer_error: tuple[str, str] | None = None  # (sub_code, sub_msg) to answer transfers with
        self.transfer_error_processed = False  # with transfer_error: the money moved all the same
        self.stall: dict[str, float] = {}  # method -> seconds to wait before replying (a timeout)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # --- keys and addresses ----------------------------------------------------------------
    @property
    def public_key_b64(self) -> str:
        """The gateway's public key as the Alipay console shows it: bare base64."""
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode()

    @property
    def port(self) -> int:
        assert self._server is not None, "the fake is not running"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/gateway.do"

    # --- scripting -------------------------------------------------------------------------
    def add_trade(self, out_trade_no: str, total_amount, status: str = "TRADE_SUCCESS", **kwargs) -> Trade:
        trade = Trade(out_trade_no=out_trade_no, total_amount=Decimal(str(total_amount)), status=status, **kwargs)
        with self._lock:
            self.trades[out_trade_no] = trade
        return trade

    def methods(self) -> list[str]:
        return [method for method, _ in self.calls]

    # --- notifications (the gateway's side) -----------------------------------------------
    def notification_params(
        self, *, out_trade_no: str, total_amount: str, trade_no: str | None = None, **overrides
    ) -> dict[str, str]:
        now = now_beijing()
        params = {
            "gmt_create": now,
            "charset": "utf-8",
            "seller_id": self.seller_id,
            "subject": "游戏点卡 100元",
            "buyer_id": "2088102177846875",
            "invoice_amount": total_amount,
            "notify_id": secrets.token_hex(16),
            "fund_bill_list": json.dumps([{"amount": total_amount, "fundChannel": "ALIPAYACCOUNT"}]),
            "notify_type": "trade_status_sync",
            "trade_status": "TRADE_SUCCESS",
            "receipt_amount": total_amount,
            "buyer_pay_amount": total_amount,
            "app_id": self.app_id,
            "point_amount": "0.00",
            "notify_time": now,
            "gmt_payment": now,
            "version": "1.0",
            "out_trade_no": out_trade_no,
            "total_amount": total_amount,
            "trade_no": trade_no or f"2024{secrets.randbelow(10**24):024d}",
            "auth_app_id": self.app_id,
            "buyer_logon_id": "abc***@example.com",
        }
        params.update(overrides)
        return {k: v for k, v in params.items() if v is not None}

    def sign_notification(
        self, params: Mapping[str, str], *, key: rsa.RSAPrivateKey | None = None, algorithm=None, sign_type="RSA2"
    ) -> dict[str, str]:
        content = sign_content(params, exclude=("sign", "sign_type"))
        return {**params, "sign_type": sign_type, "sign": rsa2_sign(key or self.key, content, algorithm)}

    def notification(self, *, encoding: str = "utf-8", **kwargs) -> bytes:
        """A genuine, signed notification body (form-encoded, as Alipay POSTs it)."""
        return urlencode(self.sign_notification(self.notification_params(**kwargs)), encoding=encoding).encode()

    # --- the server ------------------------------------------------------------------------
    @contextmanager
    def running(self) -> Iterator["FakeAlipay"]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                fake._handle_post(self)

            def do_GET(self):
                fake._handle_get(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-alipay", daemon=True
        )
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join(timeout=5)

    def _send(self, handler: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _handle_get(self, handler: BaseHTTPRequestHandler) -> None:
        path = urlsplit(handler.path).path
        data = self.bill_files.get(path)
        if data is None:
            self._send(handler, 404, b"not found", "text/plain")
            return
        self.bill_downloads += 1
        self._send(handler, 200, data, "application/zip")

    def _handle_post(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        charset = "utf-8"
        params = dict(parse_qsl(parts.query, keep_blank_values=True, encoding=charset))
        params.update(parse_qsl(handler.rfile.read(length).decode(), keep_blank_values=True, encoding=charset))
        method = params.get("method", "")
        with self._lock:
            self.calls.append((method, params))
        if self.fail_status:
            self._send(handler, self.fail_status, b"<html>Internal Server Error</html>", "text/html")
            return
        if parts.path != "/gateway.do":
            self._send(handler, 404, b"not found", "text/plain")
            return
        if not request_signature_ok(params, self.app_public_key):
            payload = _error("40002", "Invalid Arguments", "isv.invalid-signature", "验签出错")
        elif params.get("app_id") != self.app_id:
            payload = _error("40002", "Invalid Arguments", "isv.invalid-app-id", "无效的AppID参数")
        else:
            try:
                biz = json.loads(params.get("biz_content") or "{}")
            except ValueError:
                biz = None
            action = self.ACTIONS.get(method)
            if biz is None or action is None:
                payload = _error("40002", "Invalid Arguments", "isv.invalid-method", "不存在的方法名")
            else:
                with self._lock:
                    payload = action(self, biz)
        delay = self.stall.get(method)
        if delay:  # the work is done; the answer comes too late for the caller (or never)
            time.sleep(delay)
            with suppress(OSError):  # the caller may have hung up
                self._send(handler, 200, self._signed_reply(method, payload), f"text/html;charset={charset}")
            return
        self._send(handler, 200, self._signed_reply(method, payload), f"text/html;charset={charset}")

    def _signed_reply(self, method: str, payload: dict) -> bytes:
        inner = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        sign = rsa2_sign(self.reply_key or self.key, inner)
        name = (method or "error").replace(".", "_") + "_response"
        return f'{{"{name}":{inner},"sign":"{sign}"}}'.encode()

    # --- the API -----------------------------------------------------------------------------
    def _precreate(self, biz: dict) -> dict:
        out_trade_no = biz["out_trade_no"]
        existing = self.trades.get(out_trade_no)
        if existing and existing.status != "WAIT_BUYER_PAY":
            return _error("40004", "Business Failed", "ACQ.TRADE_HAS_SUCCESS", "交易已被支付")
        self.trades[out_trade_no] = Trade(out_trade_no, Decimal(biz["total_amount"]), status="WAIT_BUYER_PAY")
        return {"code": "10000", "msg": "Success", "out_trade_no": out_trade_no, "qr_code": self.qr_code(out_trade_no)}

    @staticmethod
    def qr_code(out_trade_no: str) -> str:
        return "https://qr.alipay.com/bax" + out_trade_no.lower()

    def _query(self, biz: dict) -> dict:
        trade = self.trades.get(biz.get("out_trade_no", ""))
        if trade is None:
            return _error("40004", "Business Failed", "ACQ.TRADE_NOT_EXIST", "交易不存在")
        reply = {
            "code": "10000",
            "msg": "Success",
            "buyer_logon_id": "abc***@example.com",
            "buyer_pay_amount": "0.00",
            "out_trade_no": trade.out_trade_no,
            "total_amount": f"{trade.total_amount:.2f}",
            "trade_no": trade.trade_no,
            "trade_status": trade.status,
            "buyer_user_id": "2088102177846875",
        }
        if trade.status in ("TRADE_SUCCESS", "TRADE_FINISHED"):
            reply["send_pay_date"] = trade.paid
        return reply

    def _close(self, biz: dict) -> dict:
        trade = self.trades.get(biz.get("out_trade_no", ""))
        if trade is None:
            return _error("40004", "Business Failed", "ACQ.TRADE_NOT_EXIST", "交易不存在")
        if trade.status != "WAIT_BUYER_PAY":
            return _error("40004", "Business Failed", "ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
        trade.status = "TRADE_CLOSED"
        return {"code": "10000", "msg": "Success", "out_trade_no": trade.out_trade_no, "trade_no": trade.trade_no}

    def _refund(self, biz: dict) -> dict:
        trade = self.trades.get(biz.get("out_trade_no", ""))
        if trade is None:
            return _error("40004", "Business Failed", "ACQ.TRADE_NOT_EXIST", "交易不存在")
        request_no = biz.get("out_request_no") or trade.out_trade_no
        amount = Decimal(biz["refund_amount"])
        existing = self.refunds.get((trade.out_trade_no, request_no))
        fund_change = "N"
        if existing is not None:
            if existing.amount != amount:
                return _error("40004", "Business Failed", "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额与原请求不一致")
        else:
            if trade.status not in ("TRADE_SUCCESS", "TRADE_CLOSED") or (
                trade.status == "TRADE_CLOSED" and trade.refunded == 0
            ):
                return _error("40004", "Business Failed", "ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
            if trade.refunded + amount > trade.total_amount:
                return _error("40004", "Business Failed", "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限")
            self.refunds[(trade.out_trade_no, request_no)] = Refund(trade.out_trade_no, request_no, amount)
            self.refunds_executed += 1
            trade.refunded += amount
            if trade.refunded == trade.total_amount:
                trade.status = "TRADE_CLOSED"
            fund_change = "Y"
        return {
            "code": "10000",
            "msg": "Success",
            "buyer_logon_id": "abc***@example.com",
            "fund_change": fund_change,
            "gmt_refund_pay": now_beijing(),
            "out_trade_no": trade.out_trade_no,
            "refund_fee": f"{trade.refunded:.2f}",
            "send_back_fee": f"{trade.refunded:.2f}",
            "trade_no": trade.trade_no,
            "buyer_user_id": "2088102177846875",
        }

    def _refund_query(self, biz: dict) -> dict:
        out_trade_no = biz.get("out_trade_no", "")
        refund = self.refunds.get((out_trade_no, biz.get("out_request_no") or out_trade_no))
        if refund is None:
            return {"code": "10000", "msg": "Success"}  # Alipay: an empty answer for an unknown refund
        trade = self.trades[out_trade_no]
        return {
            "code": "10000",
            "msg": "Success",
            "out_request_no": refund.out_request_no,
            "out_trade_no": out_trade_no,
            "refund_amount": f"{refund.amount:.2f}",
            "refund_status": "REFUND_SUCCESS",
            "total_amount": f"{trade.total_amount:.2f}",
            "trade_no": trade.trade_no,
        }

    def _bill_url(self, biz: dict) -> dict:
        if biz.get("bill_type") != "trade":
            return _error("40004", "Business Failed", "isp.bill_type_not_support", "账单类型不支持")
        try:
            day = date.fromisoformat(biz.get("bill_date", ""))
        except ValueError:
            return _error("40004", "Business Failed", "isv.invalid-arguments", "日期格式错误")
        path = f"/downloadBillFile.resource/{secrets.token_hex(8)}.zip"
        self.bill_files[path] = self.bill_zip(day)
        return {"code": "10000", "msg": "Success", "bill_download_url": f"http://127.0.0.1:{self.port}{path}"}

    def _transfer(self, biz: dict) -> dict:
        out_biz_no = biz.get("out_biz_no", "")
        payee = biz.get("payee_info") or {}
        if (
            not out_biz_no
            or biz.get("product_code") != "TRANS_ACCOUNT_NO_PWD"
            or biz.get("biz_scene") != "DIRECT_TRANSFER"
            or payee.get("identity_type") != "ALIPAY_LOGON_ID"
            or not payee.get("identity")
        ):
            return _error("40004", "Business Failed", "INVALID_PARAMETER", "参数有误")
        try:
            amount = Decimal(biz.get("trans_amount", ""))
        except ArithmeticError:
            return _error("40004", "Business Failed", "INVALID_PARAMETER", "参数有误")
        existing = self.transfers.get(out_biz_no)
        if existing is not None:  # the same out_biz_no again: the first transfer's answer, paid once
            if existing.amount != amount or existing.payee != payee["identity"]:
                return _error("40004", "Business Failed", "PAYMENT_INFO_INCONSISTENCY", "两次请求参数不一致")
            return self._transfer_reply(existing)
        if amount < Decimal("0.10"):
            return _error("40004", "Business Failed", "EXCEED_LIMIT_SM_MIN_AMOUNT", "单笔最低转账金额0.1元")
        if self.transfer_error is not None and not self.transfer_error_processed:
            return _error("40004", "Business Failed", *self.transfer_error)
        transfer = Transfer(out_biz_no, amount, payee["identity"], payee.get("name", ""))
        self.transfers[out_biz_no] = transfer
        self.transfers_executed += 1
        if self.transfer_error is not None:
            return _error("40004", "Business Failed", *self.transfer_error)
        return self._transfer_reply(transfer)

    @staticmethod
    def _transfer_reply(transfer: Transfer) -> dict:
        return {
            "code": "10000",
            "msg": "Success",
            "out_biz_no": transfer.out_biz_no,
            "order_id": transfer.order_id,
            "pay_fund_order_id": transfer.fund_order_id,
            "status": transfer.status,
            "trans_date": transfer.at,
        }

    def _transfer_query(self, biz: dict) -> dict:
        transfer = self.transfers.get(biz.get("out_biz_no", ""))
        if transfer is None:
            return _error("40004", "Business Failed", "ORDER_NOT_EXIST", "转账订单不存在")
        return {
            "code": "10000",
            "msg": "Success",
            "out_biz_no": transfer.out_biz_no,
            "order_id": transfer.order_id,
            "pay_fund_order_id": transfer.fund_order_id,
            "status": transfer.status,
            "trans_amount": f"{transfer.amount:.2f}",
            "pay_date": transfer.at,
        }

    ACTIONS = {
        "alipay.trade.precreate": _precreate,
        "alipay.trade.query": _query,
        "alipay.trade.close": _close,
        "alipay.trade.refund": _refund,
        "alipay.trade.fastpay.refund.query": _refund_query,
        "alipay.data.dataservice.bill.downloadurl.query": _bill_url,
        "alipay.fund.trans.uni.transfer": _transfer,
        "alipay.fund.trans.common.query": _transfer_query,
    }

    # --- the daily bill, in Alipay's layout ----------------------------------------------------
    DETAIL_HEADER = (
        "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,"
        "订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,"
        "券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注"
    )

    def bill_zip(self, day: date) -> bytes:
        """Every paid trade and every refund (the fake does not look at the day)."""
        rows = []
        for trade in self.trades.values():
            if trade.status == "WAIT_BUYER_PAY" or (trade.status == "TRADE_CLOSED" and not trade.refunded):
                continue
            rows.append(self._bill_row(trade, "交易", trade.total_amount, "", trade.paid))
        for refund in self.refunds.values():
            trade = self.trades[refund.out_trade_no]
            rows.append(self._bill_row(trade, "退款", -refund.amount, refund.out_request_no, refund.at))
        start = datetime.combine(day, datetime.min.time())
        detail = io.StringIO()
        detail.write("#支付宝业务明细查询\n")
        detail.write(f"#账号：[{self.seller_id}0156]\n")
        end = start + timedelta(days=1)
        detail.write(f"#起始日期：[{start:%Y年%m月%d日} 00:00:00]   终止日期：[{end:%Y年%m月%d日} 00:00:00]\n")
        detail.write("#-----------------------------------------业务明细列表----------------------------------------\n")
        detail.write(self.DETAIL_HEADER + "\n")
        writer = csv.writer(detail, lineterminator="\n")
        writer.writerows(rows)
        detail.write("#-----------------------------------------业务明细列表结束------------------------------------\n")
        payments = sum(1 for row in rows if row[2] == "交易\t")
        detail.write(f"#交易合计：{payments}笔，退款合计：{len(rows) - payments}笔\n")
        detail.write(f"#导出时间：[{datetime.now(BEIJING):%Y年%m月%d日 %H:%M:%S}]\n")
        summary = (
            "#支付宝业务汇总查询\n"
            f"#账号：[{self.seller_id}0156]\n"
            "#-----------------------------------------业务汇总列表----------------------------------------\n"
            "门店编号,门店名称,交易订单总笔数,退款订单总笔数,订单金额（元）,商家实收（元）,支付宝优惠（元）,服务费（元）\n"
            f"合计,,{payments},{len(rows) - payments},0.00,0.00,0.00,0.00\n"
            "#-----------------------------------------业务汇总列表结束------------------------------------\n"
        )
        stem = f"{self.seller_id}0156_{day:%Y%m%d}"
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            # Summary first: the adapter must find the detail table by its header, not its position.
            archive.writestr(f"{stem}_业务明细(汇总).csv", summary.encode("gbk"))
            archive.writestr(f"{stem}_业务明细.csv", detail.getvalue().encode("gbk"))
        return buffer.getvalue()

    @staticmethod
    def _bill_row(trade: Trade, kind: str, amount: Decimal, request_no: str, finished: str) -> list[str]:
        money = f"{amount:.2f}"
        # Real bills end the number columns with a tab (so spreadsheets keep them as text).
        return [
            f"{trade.trade_no}\t",
            f"{trade.out_trade_no}\t",
            f"{kind}\t",
            trade.subject,
            trade.created,
            finished,
            "",
            "",
            "",
            "",
            "abc***@example.com",
            money,
            money,
            "0.00",
            "0.00",
            "0.00",
            "0.00",
            "0.00",
            "",
            "0.00",
            "0.00",
            f"{request_no}\t" if request_no else "",
            "-0.58" if kind == "交易" else "0.58",
            "0.00",
            "",
        ]


def _error(code: str, msg: str, sub_code: str, sub_msg: str) -> dict:
    return {"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg}


def pem(key: rsa.RSAPrivateKey, fmt) -> str:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()


def notify(client, body: bytes, content_type="application/x-www-form-urlencoded; charset=utf-8"):
    """Post a notification to the project as Alipay would."""
    return client.post(NOTIFY, data=body, content_type=content_type)
