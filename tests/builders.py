"""Plain builders the tests share (not fixtures): a sale taken to delivery, balances read back,
a runner that starts threads at one moment for the race tests, and a thread that holds a
transaction open (its row locks) while the test acts.

Fixtures live in ``tests/conftest.py``; model factories in ``tests/factories.py``.
"""

import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from django.db import connections, transaction
from django.utils import translation

from aftersales.services import no_reason
from agents.models import PriceKind
from agents.services import agents as agent_services
from ledger import services as ledger
from ledger.selectors import balance_of
from orders.models import CodeReveal, Order, OrderCode
from orders.services.orders import order_place
from payments.services import payments
from tests.factories import ProductFactory, UserFactory, add_stock, storefront_create

# --- threads that start together -------------------------------------------------------------


def run_concurrently(n: int, fn: Callable[[int], Any], *, timeout: float = 60) -> list:
    """Run ``fn(i)`` for ``i`` in ``range(n)``, in ``n`` threads released at the same moment.

    Each thread opens its own database connection before the barrier (so connecting does not
    spread the start) and closes its connections at the end; it speaks the caller's language.
    Returns, in order of ``i``, what each call returned or the exception it raised. Fails if a
    thread is still running after ``timeout`` seconds.
    """
    language = translation.get_language()
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def worker(i: int) -> None:
        try:
            with translation.override(language):
                connections["default"].ensure_connection()
                barrier.wait(timeout=30)
                results[i] = fn(i)
        except BaseException as exc:
            results[i] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    return results


def values_and_errors(results: list) -> tuple[list, list[BaseException]]:
    """``run_concurrently``'s results split into what the calls returned and what they raised."""
    values = [r for r in results if not isinstance(r, BaseException)]
    errors = [r for r in results if isinstance(r, BaseException)]
    return values, errors


class Held:
    """What ``transaction_held`` yields: ``value`` (what its function returned) and ``release()``."""

    def __init__(self):
        self.value: Any = None
        self.error: BaseException | None = None
        self.ready, self.released = threading.Event(), threading.Event()

    def release(self) -> None:
        self.released.set()


@contextmanager
def transaction_held(fn: Callable[[], Any], *, timeout: float = 10) -> Iterator[Held]:
    """Run ``fn()`` in another thread, in a transaction that stays open (its locks held, its rows
    uncommitted) while the with-block runs, until the block ends or ``held.release()`` is called;
    then it commits and the thread is joined. Raises what ``fn`` raised."""
    held = Held()

    def hold() -> None:
        try:
            with transaction.atomic():
                held.value = fn()
                held.ready.set()
                held.released.wait(timeout)
        except BaseException as exc:
            held.error = exc
        finally:
            held.ready.set()
            connections.close_all()

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    try:
        assert held.ready.wait(timeout), "the holding thread did not get going"
        if held.error is not None:
            raise held.error
        yield held
    finally:
        held.release()
        thread.join(timeout)
    assert not thread.is_alive(), "the holding thread hung"
    if held.error is not None:
        raise held.error


# --- sales -------------------------------------------------------------------------------------


def place(buyer, product, quantity: int = 1) -> Order:
    """An order placed (pending payment) with a fresh idempotency key."""
    return order_place(buyer=buyer, product_id=product.pk, quantity=quantity, idempotency_key=uuid.uuid4().hex)


def delivered_order(buyer, *, price: str = "30.00", quantity: int = 3, spare: int = 0, pay=None) -> Order:
    """A product at ``price`` with ``quantity`` codes, all bought by ``buyer``, paid (through the
    sandbox unless ``pay`` is given) and delivered; ``spare`` more codes stay on sale after it."""
    product = ProductFactory(price=Decimal(price))
    add_stock(product, quantity)
    order = order_place(buyer=buyer, product_id=product.pk, quantity=quantity, idempotency_key=f"k{product.pk}")
    (pay or payments.sandbox_pay)(order_number=order.number)
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED
    if spare:
        add_stock(product, spare)
    return order


def pay_and_deliver(order: Order) -> Order:
    payments.sandbox_pay(order_number=order.number)
    order.refresh_from_db()
    assert order.status == Order.Status.DELIVERED
    return order


def chain_of(depth: int, level) -> list:
    """``depth`` agents at ``level``, each the upline of the next."""
    chain, upline = [], None
    for _ in range(depth):
        upline = agent_services.agent_create(user=UserFactory(), level=level, upline=upline)
        chain.append(upline)
    return chain


def storefront_order(level, buyer, *, depth: int = 3, quantity: int = 3):
    """A chain of ``depth`` agents (7.5% markup each), the last one's storefront selling a
    40.00 product to ``buyer``; returns the chain and the delivered order."""
    product = ProductFactory(price=Decimal("40.00"))
    add_stock(product, quantity)
    chain = chain_of(depth, level)
    for upline in chain[:-1]:
        agent_services.markup_set(agent=upline, kind=PriceKind.PERCENT, value="7.5")
    shop = storefront_create(agent=chain[-1], slug="shop", name="Shop", default_markup_value=Decimal(20))
    order = order_place(buyer=buyer, product=product, quantity=quantity, idempotency_key="k", storefront=shop)
    return chain, pay_and_deliver(order)


def codes_of(order: Order, *, live: bool = False) -> list[OrderCode]:
    """The order's codes in order; with ``live``, only those not released (refunded) since."""
    qs = OrderCode.objects.filter(order=order).order_by("pk")
    return list(qs.filter(released_at__isnull=True) if live else qs)


def reveal(order_code: OrderCode, user) -> None:
    CodeReveal.objects.create(order_code=order_code, user=user, ip="127.0.0.1")


def ask(buyer, order: Order, codes: list[OrderCode], key: str = "key-1", reason: str = ""):
    """The buyer asks for ``codes`` back without a reason (aftersales.services.no_reason)."""
    return no_reason.refund_request_create(
        user=buyer, order=order, order_code_ids=[c.pk for c in codes], reason=reason, idempotency_key=key
    )


# --- money ---------------------------------------------------------------------------------------

__all__ = ["balance_of"]  # the tests read balances as the pages do: ledger.selectors.balance_of


def wallet_balance(user) -> Decimal:
    return balance_of(ledger.wallet(user))
