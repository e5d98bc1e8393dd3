"""Test helpers for the integration API: agents with keys and balance, and signed requests.

The signature is computed here from the documented recipe (hmac/hashlib directly, and the
canonical path and query as the docs' Python example computes them), not with the code under
test, so a mistake in the server's canonical string fails the tests.
"""

import hashlib
import hmac
import json
import re
import secrets
import time
from decimal import Decimal
from urllib.parse import quote, unquote_to_bytes

from django.test import Client

from agents.models import AgentLevel, PriceKind
from agents.services import agents as services
from agents.services import api_keys
from payments.services import payments
from tests.factories import UserFactory


def _query_escape(match: re.Match) -> bytes:
    token = match.group()
    if len(token) == 3:
        char = bytes([int(token[1:], 16)])
        return char if re.fullmatch(rb"[-A-Za-z0-9._~]", char) else b"%" + token[1:].upper()
    return b"%%%02X" % token[0]


def canonical(target: str) -> str:
    """The path and query to sign, as api/schema_description.md defines them: the path
    percent-decoded then re-encoded (all but A-Z a-z 0-9 - . _ ~ /, capital hex); the query with
    escapes of unreserved characters decoded, other escapes in capitals, and any character
    outside the unreserved and reserved sets encoded."""
    path, _sep, query = target.partition("?")
    path = quote(unquote_to_bytes(path), safe="/")
    query = re.sub(rb"%[0-9A-Fa-f]{2}|[^-A-Za-z0-9._~!$&'()*+,;=:@/?]", _query_escape, query.encode()).decode()
    return path + ("?" + query if query else "")


def sign(secret: str, method: str, path: str, timestamp: str, nonce: str, body: bytes) -> str:
    message = "\n".join([method, path, timestamp, nonce, hashlib.sha256(body).hexdigest()])
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


class Signed:
    """A shop calling the API with one key."""

    def __init__(self, key_id: str, secret: str, client: Client | None = None, ip: str = "127.0.0.1"):
        self.key_id, self.secret, self.client, self.ip = key_id, secret, client or Client(), ip

    def call(
        self,
        method: str,
        path: str,
        payload=None,
        *,
        timestamp: str | None = None,
        nonce: str | None = None,
        sign_path: str | None = None,
        sign_body: bytes | None = None,
        secret: str | None = None,
        key_id: str | None = None,
        ip: str | None = None,
        headers: dict | None = None,
        raw_body: bytes | None = None,
        content_type: str = "application/json",
    ):
        body = raw_body if raw_body is not None else json.dumps(payload).encode() if payload is not None else b""
        timestamp = timestamp or str(int(time.time()))
        nonce = nonce or secrets.token_urlsafe(18)
        signature = sign(
            secret or self.secret,
            method,
            sign_path if sign_path is not None else canonical(path),
            timestamp,
            nonce,
            sign_body if sign_body is not None else body,
        )
        sent = {
            "X-Api-Key": key_id or self.key_id,
            "X-Timestamp": timestamp,
            "X-Nonce": nonce,
            "X-Signature": signature,
        }
        sent.update(headers or {})
        return self.client.generic(
            method, path, data=body, content_type=content_type, headers=sent, REMOTE_ADDR=ip or self.ip
        )

    def get(self, path: str, **kw):
        return self.call("GET", path, **kw)

    def post(self, path: str, payload, **kw):
        return self.call("POST", path, payload, **kw)


def level(name: str, rank: int) -> AgentLevel:
    return AgentLevel.objects.get_or_create(rank=rank, defaults={"name": name, "sort": rank})[0]


def make_agent(*, level_obj=None, upline=None, user=None):
    return services.agent_create(user=user or UserFactory(), level=level_obj or level("普通", 1), upline=upline)


def issue_key(agent, **kw) -> Signed:
    key, secret = api_keys.apikey_create(agent=agent, name=kw.pop("name", "shop"), **kw)
    return Signed(key.key_id, secret)


def top_up(user, amount) -> None:
    """Credit a wallet the way a buyer does: a recharge paid through the sandbox gateway."""
    r = payments.recharge_create(user=user, amount=amount)
    result = payments.sandbox_pay(order_number=r.number)
    assert result.ok, result.reason


def set_level_price(level_obj, product, price) -> None:
    services.level_price_set(level=level_obj, kind=PriceKind.FIXED, value=Decimal(price), product=product)


def commission_credit(agent, amount, *, reference: str = "") -> None:
    """Available commission for ``agent`` (as if a sale's refund window had closed)."""
    from django.db import transaction

    from ledger import services as ledger

    with transaction.atomic():
        ledger.transfer(
            debit=ledger.COMMISSIONS,
            credit=ledger.commission_available(agent.user),
            amount=Decimal(amount),
            kind="test_commission",
            reference=reference,
        )


def withdrawal_with_commission(agent, *, earned: str = "100", amount: str = "50", idempotency_key: str = "w1"):
    """``earned`` of commission credited to the agent (``commission_credit``), and a bank
    withdrawal of ``amount`` of it requested."""
    from agents.models import Withdrawal
    from agents.services import withdrawals

    commission_credit(agent, earned)
    return withdrawals.withdrawal_request(
        agent=agent,
        amount=amount,
        method=Withdrawal.Method.BANK,
        payee_name="张三",
        payee_account="6222020200001234567",
        bank_name="工商银行",
        idempotency_key=idempotency_key,
    )
