"""Demo sales: a few weeks of orders through the demo storefront and by the demo agents, paid in
the sandbox and delivered, so the agents' dashboards and reports have something to show.

Runs once (does nothing when storefront orders exist). Orders are backdated over the last 20
days; commissions of orders older than the refund window are made available, so the demo agent
has a balance to withdraw. Needs the sandbox gateway (development only).
"""

import random
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.test.utils import override_settings
from django.utils import timezone

from agents.models import Agent, Commission, Storefront
from agents.services import commissions
from catalog import selectors as stock
from catalog.models import Product
from marketplace.errors import ServiceError
from orders.models import Order
from orders.services.orders import order_fulfil, order_place

from ...services.payments import sandbox_pay


class Command(BaseCommand):
    help = "Backdated demo sales through the demo storefront and agents (sandbox payments)."

    def handle(self, *args, **options):
        # The demo buyers' delivery emails would only flood the console.
        with override_settings(EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend"):
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
        made = 0
        for i in range(36):
            product = rng.choice(products)
            if stock.stock_count(product.pk) < 4:
                continue
            through_shop = i % 3 != 2
            user = buyer if through_shop else rng.choice(sellers).user
            try:
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
            order_fulfil(order_id=order.pk)  # now, not when the worker starts: so it can be backdated
            when = now - timedelta(days=rng.uniform(0, 20))
            Order.objects.filter(pk=order.pk).update(
                created_at=when, paid_at=when + timedelta(minutes=1), delivered_at=when + timedelta(minutes=1)
            )
            window = timedelta(days=settings.REFUND_WINDOW_DAYS)
            Commission.objects.filter(order_id=order.pk).update(created_at=when, available_at=when + window)
            made += 1
        settled = commissions.commissions_settle_due()
        self.stdout.write(self.style.SUCCESS(f"Demo sales: {made} orders delivered, {settled} commissions available."))
