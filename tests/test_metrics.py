"""/metrics for Prometheus (issue 17): protected, request latency and the sale's figures."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from aftersales.models import Ticket
from orders.models import Order
from payments.models import Mismatch, ReconciliationRun, Refund
from tests.builders import delivered_order, place
from tests.factories import ProductFactory, UserFactory, add_stock

pytestmark = pytest.mark.django_db
TOKEN = "s3cret-metrics-token"


@pytest.fixture
def token(settings):
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_IPS = []
    return TOKEN


def scrape(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_refused_without_token_or_allowed_address(client, token):
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION=TOKEN).status_code == 404  # not a bearer header


def test_allowed_address_needs_no_token(client, settings):
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_IPS = ["10.0.0.0/8"]
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="192.168.1.1").status_code == 404
    settings.METRICS_ALLOWED_IPS = []
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 404


def test_probes_by_a_containers_address_are_answered_other_paths_refused(token, settings):
    """Prometheus' service discovery and a load balancer's health check ask each container by
    its address (Host: 10.0.3.7:8000), which no DJANGO_ALLOWED_HOSTS lists: /metrics and the
    health endpoints answer them; every other path keeps Django's 400."""
    from django.test import Client

    settings.ALLOWED_HOSTS = ["shop.example.com", ".example.com"]
    settings.SECURE_SSL_REDIRECT = True  # as in production: plain HTTP from inside is not redirected
    client = Client()
    by_address = {"HTTP_HOST": "10.0.3.7:8000", "HTTP_AUTHORIZATION": f"Bearer {TOKEN}"}
    assert client.get("/metrics", **by_address).status_code == 200
    assert client.get("/healthz", **by_address).status_code == 200
    assert client.get("/health/", **by_address).status_code in (200, 503)  # a heartbeat's age decides
    # docker-compose.yml's health check of a web container: plain HTTP, no Host of the shop's.
    assert client.get("/health/web/", HTTP_HOST="127.0.0.1:8000", HTTP_ACCEPT="application/json").status_code == 200
    assert client.get("/", **by_address).status_code == 400
    assert client.get("/metricsx", **by_address).status_code == 400
    assert client.get("/accounts/login/", **by_address).status_code == 400
    # The token is still wanted; an allowed Host is left as it is.
    assert client.get("/metrics", HTTP_HOST="10.0.3.7:8000").status_code == 404
    assert client.get("/metrics", HTTP_HOST="shop.example.com", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200


@pytest.mark.django_db(transaction=True)  # fulfilment runs on commit
def test_the_sale_figures(client, token):
    buyer = UserFactory()
    delivered_order(buyer, quantity=1)  # placed, paid, delivered
    product = ProductFactory()
    add_stock(product, 3)
    place(buyer, product)  # placed, pending
    waiting = place(buyer, product)
    paid_at = timezone.now() - timedelta(seconds=300)
    Order.objects.filter(pk=waiting.pk).update(status=Order.Status.PAID, paid_at=paid_at)  # paid, not delivered

    now = timezone.now()
    Ticket.objects.create(
        user=buyer,
        kind=Ticket.Kind.OTHER,
        subject="late",
        warn_at=now - timedelta(minutes=5),
        first_response_due_at=now + timedelta(hours=1),
        resolution_due_at=now + timedelta(days=3),
    )
    Ticket.objects.create(
        user=buyer,
        kind=Ticket.Kind.OTHER,
        subject="fine",
        warn_at=now + timedelta(hours=1),
        first_response_due_at=now + timedelta(hours=2),
        resolution_due_at=now + timedelta(days=3),
    )
    payment = Order.objects.get(status=Order.Status.DELIVERED).payments.get()
    refund = Refund.objects.create(payment=payment, amount=Decimal("1.00"), reason="t", idempotency_key="m1")
    Refund.objects.filter(pk=refund.pk).update(status=Refund.Status.FAILED)
    run = ReconciliationRun.objects.create(gateway="alipay", day=date(2026, 12, 1))
    Mismatch.objects.create(run=run, kind=Mismatch.Kind.MISSING_HERE, order_number="N-1", trade_no="T1")
    Mismatch.objects.create(
        run=run, kind=Mismatch.Kind.MISSING_HERE, order_number="N-2", trade_no="T2", resolved_at=now
    )

    samples = scrape(client)
    assert samples[("kamarket_orders_placed_total", ())] == 3
    assert samples[("kamarket_orders_paid_total", ())] == 2
    assert samples[("kamarket_orders_delivered_total", ())] == 1
    assert samples[("kamarket_orders", (("status", "pending"),))] == 1
    assert samples[("kamarket_orders", (("status", "paid"),))] == 1
    assert samples[("kamarket_orders", (("status", "refunded"),))] == 0
    assert 299 <= samples[("kamarket_oldest_undelivered_paid_order_age_seconds", ())] < 400
    assert samples[("kamarket_sla_tickets_at_risk", ())] == 1
    assert samples[("kamarket_sla_tickets_overdue", ())] == 0
    assert samples[("kamarket_refunds_failed", ())] == 1
    assert samples[("kamarket_reconciliation_mismatches_open", ())] == 1
    # Upstream supply: nothing open in this test.
    assert samples[("kamarket_upstream_orders_open", (("state", "placing"),))] == 0
    assert samples[("kamarket_upstream_oldest_open_age_seconds", ())] == 0
    assert samples[("kamarket_manual_topups_waiting", ())] == 0
    assert samples[("kamarket_supply_mismatches_open", ())] == 0
    # The embedded filesystem broker: every queue reported (the eager tests queue nothing).
    for queue in ("fulfilment", "notifications", "callbacks", "reports", "default"):
        assert (("kamarket_celery_queue_length", (("queue", queue),))) in samples
    # django-prometheus' request latency histogram, labelled by view.
    assert any(name == "django_http_requests_latency_seconds_by_view_method_count" for name, _ in samples)


def test_nothing_waiting_is_age_zero(client, token):
    samples = scrape(client)
    assert samples[("kamarket_oldest_undelivered_paid_order_age_seconds", ())] == 0
    assert samples[("kamarket_orders_placed_total", ())] == 0


def test_queue_length_from_redis(settings, redis_url):
    """With a Redis broker: LLEN of each queue (and of its priority lists)."""
    import redis

    from ops.metrics import queue_lengths

    settings.CELERY_BROKER_URL = redis_url
    client = redis.Redis.from_url(redis_url)
    client.delete(*settings.QUEUE_NAMES, "notifications\x06\x163")
    client.rpush("fulfilment", "a", "b")
    client.rpush("notifications\x06\x163", "c")
    try:
        lengths = queue_lengths()
    finally:
        client.delete(*settings.QUEUE_NAMES, "notifications\x06\x163")
    assert lengths == {"fulfilment": 2, "notifications": 1, "callbacks": 0, "reports": 0, "default": 0}


def test_the_supply_figures(client, token):
    """Supplier orders not finished, manual top-ups waiting and overdue, supplier differences."""
    from orders.models import ManualTopup, UpstreamOrder
    from supply.models import SupplierConnection, SupplyMismatch, SupplyReconciliation
    from tests.factories import SupplierFactory

    buyer = UserFactory()
    product = ProductFactory()
    add_stock(product, 3)
    first, second, third = (place(buyer, product) for _ in range(3))
    connection = SupplierConnection.objects.create(
        supplier=SupplierFactory(), name="up", base_url="https://supplier.example", app_id="a"
    )
    now = timezone.now()
    UpstreamOrder.objects.create(order=first, connection=connection, supplier_ref="1", quantity=1, state="placing")
    UpstreamOrder.objects.create(order=second, connection=connection, supplier_ref="1", quantity=1, state="done")
    UpstreamOrder.objects.filter(order=first).update(created_at=now - timedelta(seconds=600))
    ManualTopup.objects.create(order=third, due_at=now - timedelta(minutes=1))
    run = SupplyReconciliation.objects.create(connection=connection, day=date(2026, 12, 1))
    SupplyMismatch.objects.create(reconciliation=run, kind="state", our_number=first.number)

    samples = scrape(client)
    assert samples[("kamarket_upstream_orders_open", (("state", "placing"),))] == 1
    assert samples[("kamarket_upstream_orders_open", (("state", "pending"),))] == 0
    assert 599 <= samples[("kamarket_upstream_oldest_open_age_seconds", ())] < 700
    assert samples[("kamarket_manual_topups_waiting", ())] == 1
    assert samples[("kamarket_manual_topups_overdue", ())] == 1
    assert samples[("kamarket_supply_mismatches_open", ())] == 1
