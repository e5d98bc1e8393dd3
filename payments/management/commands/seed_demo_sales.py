"""Demo sales: a few weeks of orders through the demo storefront and by the demo agents, paid in
the sandbox and delivered, so the agents' dashboards and reports have something to show.

Runs once (does nothing when storefront orders exist). Orders are backdated over 20 to 3 days
ago, the later an order was placed the more recent its date (lists come out in date order);
commissions of orders older than the refund window are made available, so the demo agent has a
balance to withdraw. Tasks run in place, so no delivery task is left for the worker. Needs the
sandbox gateway (development only).
"""

import random
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.test.utils import override_settings
from django.utils import timezone

from agents.models import Agent, Storefront
from agents.services import commissions
from catalog import selectors as stock
from catalog.models import Product
from marketplace.errors import ServiceError
from orders.models import Order
from orders.services.orders import order_fulfil, order_place

from ...services.payments import sandbox_pay
from ..demo import numbered_as_of, risk_relaxed, sale_backdate, tasks_inline

# A guest (no account) of the demo: bought twice, finds the orders with these at /orders/lookup/.
DEMO_GUEST_EMAIL = "guest@demo.local"
DEMO_GUEST_PASSWORD = "demo-chaxun"


class Command(BaseCommand):
    help = "Backdated demo sales through the demo storefront and agents (sandbox payments)."

    def handle(self, *args, **options):
        # The demo buyers' delivery emails would only flood the console.
        with (
            override_settings(EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend"),
            tasks_inline(),
            risk_relaxed(),
        ):
            self._sell()

    def _sell(self):
        if not settings.PAYMENTS_SANDBOX_ENABLED:
            self.stdout.write("sandbox payments are off: no demo sales")
            return
        if Order.objects.filter(channel=Order.Channel.STOREFRONT).exists():
            return
        shop = Storefront.objects.filter(slug="jinpai").select_related("agent").first()
        buyer = get_user_model().objects.filter(email="buyer@demo.local").first()
        if shop is None or buyer is None:
            self.stdout.write("run seed_demo and seed_demo_agents first")
            return
        rng = random.Random(2026)
        products = [p for p in Product.objects.filter(is_active=True).select_related("category")]
        sellers = list(Agent.objects.filter(user__email__in=["agent2@demo.local", "agent3@demo.local"]))
        now = timezone.now()
        # Oldest first: order numbers and dates rise together.
        days_ago = sorted((rng.uniform(3, 20) for _ in range(36)), reverse=True)
        made = 0
        for i in range(36):
            product = rng.choice(products)
            if stock.stock_count(product.pk) < 4:
                continue
            through_shop = i % 3 != 2
            user = buyer if through_shop else rng.choice(sellers).user
            when = now - timedelta(days=days_ago[i])
            try:
                with numbered_as_of(when):
                    order = order_place(
                        buyer=user,
                        product=product,
                        quantity=rng.choice([1, 1, 1, 2, 3]),
                        idempotency_key=f"demo-sale-{i}",
                        storefront=shop if through_shop else None,
                    )
            except ServiceError:  # sold out, not listed by the shop ...
                continue
            sandbox_pay(order_number=order.number)
            order_fulfil(order_id=order.pk)  # delivered now (a no-op if the inline task did): so it can be backdated
            sale_backdate(order_id=order.pk, when=when)
            made += 1
        settled = commissions.commissions_settle_due()
        self.stdout.write(self.style.SUCCESS(f"Demo sales: {made} orders delivered, {settled} commissions available."))
        self._sell_to_a_guest(shop, products, now)

    def _sell_to_a_guest(self, shop, products, now):
        """Two orders bought without an account (one on the platform, one at the demo shop), so
        the order lookup has something to find: the email and query password are printed."""
        made = []
        for i, (product, where) in enumerate(zip(products[:2], (None, shop), strict=False)):
            when = now - timedelta(days=3) + timedelta(hours=1 + i)  # after the sales, before after-sales
            try:
                with numbered_as_of(when):
                    order = order_place(
                        buyer=None,
                        guest_email=DEMO_GUEST_EMAIL,
                        query_password=DEMO_GUEST_PASSWORD,
                        product=product,
                        quantity=1,
                        idempotency_key=f"demo-guest-{i}",
                        storefront=where,
                    )
            except ServiceError:
                continue
            sandbox_pay(order_number=order.number)
            order_fulfil(order_id=order.pk)
            sale_backdate(order_id=order.pk, when=when)
            made.append(order.number)
        if made:
            self.stdout.write(
                f"  guest orders       {DEMO_GUEST_EMAIL} / query password {DEMO_GUEST_PASSWORD} "
                f"(find them at /orders/lookup/)"
            )
