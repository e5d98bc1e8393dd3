"""A fake supplier on 127.0.0.1 speaking a generic signed-HTTP API, for supply's adapter tests.

It checks every request's signature for real with its own implementation of the rule (sorted
``k=v`` joined by ``&``, MD5 with the key appended or HMAC-SHA256, upper or lower hex), written
here independently of the adapter, and refuses a bad one. It signs its replies and its callbacks
the same way, keeps orders by our order number (placing the same number twice returns the
first order, charged once), and can be scripted: time out once (it still places the order, then
answers too late), answer HTTP 500 once, refuse for a low balance.
"""

import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return str(value)


@dataclass
class Rule:
    secret: str = "s3cr3t-supplier-key"
    algorithm: str = "md5"  # or "hmac_sha256"
    key_placement: str = "key_param"  # or "raw"
    uppercase: bool = True
    sign_field: str = "sign"
    body: str = "json"  # or "form": how requests come and callbacks go

    def sign(self, params: dict) -> str:
        pairs = sorted((k, _text(v)) for k, v in params.items() if k != self.sign_field)
        content = "&".join(f"{k}={v}" for k, v in pairs if v != "")
        if self.algorithm == "hmac_sha256":
            digest = hmac.new(self.secret.encode(), content.encode(), hashlib.sha256).hexdigest()
        else:
            tail = f"&key={self.secret}" if self.key_placement == "key_param" else self.secret
            digest = hashlib.md5((content + tail).encode()).hexdigest()
        return digest.upper() if self.uppercase else digest.lower()


@dataclass
class FakeOrder:
    order_no: str
    product_id: str
    quantity: int
    cost: Decimal
    supplier_order_no: str = field(default_factory=lambda: "SUP" + secrets.token_hex(6).upper())
    status: str = "success"
    codes: list[dict] = field(default_factory=list)
    extra: dict = field(default_factory=dict)


class FakeSupplier:
    APP_ID = "app-10086"

    def __init__(self, rule: Rule | None = None, names: dict[str, str] | None = None):
        self.rule = rule or Rule()
        self.names = names or {}  # our field name -> the name this supplier uses
        self.products = {
            "P100": {"name": "游戏点卡 100 元", "cost": Decimal("95.50"), "stock": 20},
            "P50": {"name": "游戏点卡 50 元", "cost": Decimal("48.00"), "stock": 0},
            # Accepted, then failed at the supplier (its state "failed").
            "PFAIL": {"name": "总是失败的商品", "cost": Decimal("10.00"), "stock": 50, "status": "failed"},
            # Accepted and still processing: finished later (``finish``) and called back.
            "PSLOW": {"name": "慢速商品", "cost": Decimal("10.00"), "stock": 50, "status": "processing"},
        }
        self.balance = Decimal("1000.00")
        self.orders: dict[str, FakeOrder] = {}
        self.requests: list[tuple[str, dict]] = []
        self.bad_signatures = 0
        self.timeout_next = 0.0  # seconds to sleep before answering the next order placement
        self.fail_next = 0  # answer this many requests with HTTP 500 (nothing done)
        self.sign_replies_with = ""  # a wrong key to sign replies with (a forged reply)
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None

    def n(self, name: str) -> str:
        return self.names.get(name, name)

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    # --- what the supplier answers -----------------------------------------------------------

    def reply(self, code: str, message: str = "", data: Any = None) -> dict:
        body = {
            self.n("code"): code,
            self.n("message"): message,
            self.n("data"): data,
            "timestamp": str(int(time.time())),
        }
        rule = self.rule
        if self.sign_replies_with:
            rule = Rule(**{**rule.__dict__, "secret": self.sign_replies_with})
        body[self.rule.sign_field] = rule.sign(body)
        return body

    def order_data(self, order: FakeOrder) -> dict:
        return {
            self.n("order_no"): order.order_no,
            self.n("supplier_order_no"): order.supplier_order_no,
            self.n("status"): order.status,
            self.n("cost"): str(order.cost),
            self.n("codes"): order.codes,
        }

    def handle(self, path: str, params: dict) -> tuple[int, dict, float]:
        """(HTTP status, reply, seconds to wait before answering)."""
        if self.fail_next:
            self.fail_next -= 1
            return 500, {"error": "internal"}, 0.0
        if params.get(self.n("app_id")) != self.APP_ID:
            return 200, self.reply("40001", "unknown app_id"), 0.0
        if not hmac.compare_digest(self.rule.sign(params), str(params.get(self.rule.sign_field, ""))):
            self.bad_signatures += 1
            return 200, self.reply("40002", "invalid sign"), 0.0
        if abs(time.time() - int(params.get(self.n("timestamp"), "0"))) > 300:
            return 200, self.reply("40003", "stale timestamp"), 0.0
        if path == "/products":
            rows = [
                {
                    self.n("product_id"): ref,
                    self.n("name"): p["name"],
                    self.n("cost"): str(p["cost"]),
                    self.n("stock"): p["stock"],
                }
                for ref, p in self.products.items()
            ]
            return 200, self.reply("0", "ok", {self.n("products"): rows}), 0.0
        if path == "/balance":
            return 200, self.reply("0", "ok", {self.n("balance"): str(self.balance)}), 0.0
        if path == "/order/query":
            order = self.orders.get(str(params.get(self.n("order_no"))))
            if order is None:
                return 200, self.reply("404", "no such order"), 0.0
            return 200, self.reply("0", "ok", self.order_data(order)), 0.0
        if path == "/order/place":
            return self.place(params)
        return 404, {"error": "no such path"}, 0.0

    def place(self, params: dict) -> tuple[int, dict, float]:
        number = str(params.get(self.n("order_no")))
        with self.lock:
            order = self.orders.get(number)
            if order is None:
                product = self.products.get(str(params.get(self.n("product_id"))))
                quantity = int(params.get(self.n("quantity"), "0"))
                if product is None or quantity < 1:
                    return 200, self.reply("40004", "no such product"), 0.0
                if product["stock"] < quantity:
                    return 200, self.reply("40005", "out of stock"), 0.0
                cost = product["cost"] * quantity
                if cost > self.balance:
                    return 200, self.reply("40006", "insufficient balance"), 0.0
                product["stock"] -= quantity
                self.balance -= cost
                known = {self.n(k) for k in ("app_id", "timestamp", "nonce", "order_no", "product_id", "quantity")}
                order = FakeOrder(
                    order_no=number,
                    product_id=str(params.get(self.n("product_id"))),
                    quantity=quantity,
                    cost=cost,
                    status=product.get("status", "success"),
                    codes=[
                        {
                            self.n("card_number"): f"CN{secrets.token_hex(4)}",
                            self.n("card_secret"): secrets.token_hex(8),
                        }
                        for _ in range(quantity)
                    ],
                    extra={k: v for k, v in params.items() if k not in known and k != self.rule.sign_field},
                )
                self.orders[number] = order
            delay, self.timeout_next = self.timeout_next, 0.0
        return 200, self.reply("0", "ok", self.order_data(order)), delay

    def finish(self, order_no: str, status: str = "success") -> None:
        """A processing order finished at the supplier (then ``callback`` tells us)."""
        self.orders[order_no].status = status

    def placed(self) -> list[dict]:
        """The order placements this supplier received (answered or not)."""
        return [params for path, params in self.requests if path == "/order/place"]

    def callback(self, order_no: str, *, notify_id: str = "", nonce: str = "", timestamp: int | None = None) -> bytes:
        """The signed notification the supplier would POST about one order."""
        order = self.orders[order_no]
        params = {
            self.n("app_id"): self.APP_ID,
            self.n("timestamp"): str(timestamp if timestamp is not None else int(time.time())),
            self.n("nonce"): nonce or secrets.token_hex(12),
            self.n("notify_id"): notify_id or f"N{order.supplier_order_no}",
            **self.order_data(order),
        }
        params[self.rule.sign_field] = self.rule.sign(params)
        if self.rule.body == "form":
            return urlencode({k: _text(v) for k, v in params.items()}).encode()
        return json.dumps(params, ensure_ascii=False).encode()


def _handler(fake: FakeSupplier):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            kind = self.headers.get("Content-Type", "")
            try:
                if kind.startswith("application/json"):
                    params = json.loads(raw)
                    if fake.rule.body != "json":
                        raise ValueError("expected a form")
                else:
                    params = dict(parse_qsl(raw.decode()))
                    if fake.rule.body != "form":
                        raise ValueError("expected JSON")
            except ValueError as exc:
                self._send(400, {"error": str(exc)})
                return
            fake.requests.append((self.path, params))
            status, body, delay = fake.handle(self.path, params)
            if delay:
                time.sleep(delay)
            self._send(status, body)

        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body, ensure_ascii=False).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up waiting (a timeout test)

    return Handler


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the race tests connect by the dozen at once (the default is 5)


@contextmanager
def running(fake: FakeSupplier) -> Iterator[FakeSupplier]:
    server = _Server(("127.0.0.1", 0), _handler(fake))
    server.daemon_threads = True
    fake.server = server
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
