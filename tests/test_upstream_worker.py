"""A real Celery worker process killed while the fake supplier holds our order placement (the
supplier has the order, we have no answer): after a restart (with beat) the supplier order is
queried, found, and delivered: exactly one supplier order, exactly one delivery."""

import sys
import time

import pytest

from catalog.models import CardCode
from orders.models import Order, OrderStatusChange, UpstreamOrder
from payments.services.payments import sandbox_pay
from tests.builders import place
from tests.fake_supplier import FakeSupplier, running
from tests.test_upstream import upstream_product
from tests.test_worker import VISIBILITY_TIMEOUT, broker_redis  # noqa: F401 (a fixture)
from tests.worker_utils import FULFILMENT_POOL, wait_for, workers_started

pytestmark = [
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(sys.platform == "win32", reason="Celery workers and process groups are POSIX"),
]


@pytest.fixture
def workers(request, redis_url, broker_redis):  # noqa: F811

    # The supplier is called by the delivery task: production's fulfilment worker's pool.
    with workers_started(request) as start:
        yield lambda label, *, beat=False: start(
            broker_url=redis_url, visibility_timeout=VISIBILITY_TIMEOUT, label=label, beat=beat, pool=FULFILMENT_POOL
        )


def test_worker_killed_during_the_supplier_call_gives_one_supplier_order_and_one_delivery(buyer, workers):
    with running(FakeSupplier()) as fake:
        product = upstream_product(fake, timeout_seconds=5)
        order = place(buyer, product, quantity=2)
        fake.timeout_next = 4.0  # the supplier places it at once and holds its answer
        assert sandbox_pay(order_number=order.number).outcome == "applied"  # fulfil_order waits in Redis

        first = workers("killed")
        wait_for(lambda: fake.placed(), timeout=60, what="the worker to call the supplier")
        first.kill()  # mid-call: no answer read, nothing acknowledged
        assert len(fake.orders) == 1
        up = UpstreamOrder.objects.get(order=order)
        assert (up.state, up.attempts) == (UpstreamOrder.State.PLACING, 1)
        order.refresh_from_db()
        assert order.status == Order.Status.PAID

        time.sleep(VISIBILITY_TIMEOUT + 0.5)  # so the unacknowledged message comes back at once
        second = workers("restarted", beat=True)

        def delivered():
            order.refresh_from_db()
            return order.status == Order.Status.DELIVERED

        wait_for(delivered, timeout=120, what="the order to be delivered after the restart")
        time.sleep(3)  # any duplicate step would show now
        print(f"\n[upstream worker test] delivered {time.monotonic() - second.started_at:.1f}s after the restart")

        assert len(fake.placed()) == 1 and len(fake.orders) == 1  # one supplier order
        assert any(path == "/order/query" for path, _ in fake.requests)  # asked before any retry
        up.refresh_from_db()
        assert (
            up.state == UpstreamOrder.State.DONE and up.supplier_order_no == fake.orders[order.number].supplier_order_no
        )
        assert OrderStatusChange.objects.filter(order=order, to_status=Order.Status.DELIVERED).count() == 1
        assert order.codes.filter(released_at__isnull=True).count() == 2
        assert CardCode.objects.filter(product=product).count() == 2  # one batch of codes, no copies
        assert set(CardCode.objects.filter(product=product).values_list("status", flat=True)) == {"sold"}
