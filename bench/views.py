import hashlib
import hmac
import json
import os
import time

from django.db import connection, transaction
from django.http import Http404, HttpResponse, HttpResponseForbidden, HttpResponseRedirect, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from catalog.models import Product
from marketplace.celery import publish
from marketplace.db import retry_once_if_connection_lost
from payments.gateways.base import NotificationRejected
from payments.gateways.sandbox import SandboxGateway

from .tasks import skeleton_deliver, skeleton_deliver_row


def product_price(request, slug):
    """The baseline: a trivial view doing one indexed query (a product by its unique slug)."""
    try:
        pk, price = Product.objects.values_list("pk", "price").get(slug=slug)
    except Product.DoesNotExist:
        raise Http404 from None
    return HttpResponse(f"{pk} {price}\n", content_type="text/plain")


# --- bench/skeleton.py: a purchase's shape (requests, transactions, a task) doing almost nothing.
# One row of ``bench_skeleton`` (created by the script) stands for the order, its payment, its
# history, its ledger entry and its codes. The transactions and the after-commit publish are the
# product's; so are the CSRF check, the session, the signature checks and the idempotency keys.

SKELETON_API_KEY = "skeleton"  # the one API key; its secret is BENCH_SKELETON_API_SECRET


def _insert(buyer_id: int | None, key: str, status: str) -> tuple[int, bool]:
    """One INSERT; a repeated idempotency key gives back the row it made the first time (and
    False: nothing new)."""
    paid = "now()" if status == "paid" else "NULL"
    with connection.cursor() as cur:
        cur.execute(
            "INSERT INTO bench_skeleton (buyer_id, idempotency_key, status, created_at, paid_at) "
            f"VALUES (%s, %s, %s, now(), {paid}) ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
            [buyer_id, key, status],
        )
        row = cur.fetchone()
        if row is None:
            cur.execute("SELECT id FROM bench_skeleton WHERE idempotency_key = %s", [key])
            return cur.fetchone()[0], False
        return row[0], True


@require_POST
@retry_once_if_connection_lost
def skeleton_place(request, slug):
    """POST 1 of the two-POST shape: a logged-in buyer (session, CSRF checked by the middleware)
    inserts one row in one transaction and is sent on with a 302, as the checkout does."""
    if not request.user.is_authenticated:
        return HttpResponseForbidden()
    with transaction.atomic():
        row_id, _new = _insert(request.user.pk, request.POST.get("idempotency_key", ""), "pending")
    return HttpResponseRedirect(f"/bench/skeleton/pay/{row_id}/")


@csrf_exempt
@require_POST
@retry_once_if_connection_lost
def skeleton_notify(request, inline=False):
    """POST 2: the sandbox gateway's notification, verified by the gateway's own code (RSA2), moves
    the row to paid in one transaction and publishes the delivery on commit; ``inline`` does the
    task's transaction here instead (no Celery). A replay changes nothing and publishes nothing."""
    gateway = SandboxGateway()
    try:
        note = gateway.verify(headers=request.headers, body=request.body)
    except NotificationRejected:
        return gateway.reply(ok=False)
    if not note.paid:
        return gateway.reply(ok=True)
    row_id = int(note.order_number)
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute(
            "UPDATE bench_skeleton SET status = 'paid', paid_at = now() WHERE id = %s AND status = 'pending'",
            [row_id],
        )
        moved = cur.rowcount == 1
        if moved and not inline:
            transaction.on_commit(lambda: publish(skeleton_deliver, row_id))
    if moved and inline:
        skeleton_deliver_row(row_id)
    return gateway.reply(ok=True)


def _api_signed(request) -> bool:
    """The integration API's HMAC check (api/schema_description.md's recipe) for the one key."""
    headers = request.headers
    try:
        fresh = abs(time.time() - int(headers.get("X-Timestamp", ""))) < 300
    except ValueError:
        return False
    message = "\n".join(
        [
            request.method,
            request.path,
            headers["X-Timestamp"],
            headers.get("X-Nonce", ""),
            hashlib.sha256(request.body).hexdigest(),
        ]
    )
    expected = hmac.new(os.environ["BENCH_SKELETON_API_SECRET"].encode(), message.encode(), hashlib.sha256).hexdigest()
    return (
        fresh
        and headers.get("X-Api-Key") == SKELETON_API_KEY
        and hmac.compare_digest(expected, headers.get("X-Signature", ""))
    )


@csrf_exempt
@require_POST
@retry_once_if_connection_lost
def skeleton_balance(request):
    """The balance shape: one signed POST inserts the row already paid in one transaction and
    publishes the delivery on commit; 201 as the API answers."""
    if not _api_signed(request):
        return JsonResponse({"detail": "bad signature"}, status=401)
    key = json.loads(request.body)["agent_order_no"]
    with transaction.atomic():
        row_id, new = _insert(None, key, "paid")
        if new:
            transaction.on_commit(lambda: publish(skeleton_deliver, row_id))
    return JsonResponse({"id": row_id}, status=201)
