"""Demo agents: four levels with platform prices, a three-level chain with markups, a storefront.

Safe to run again: existing rows are kept. Run after ``seed_demo`` (it needs the catalogue and
the demo logins).
"""

from decimal import Decimal

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from agents.models import Agent, AgentLevel, PriceKind, Storefront
from agents.services import agents as services
from catalog.models import Category

PASSWORD = "demo-pass-2026"
LEVELS = [("普通", 1), ("铜牌", 2), ("银牌", 3), ("金牌", 4)]
# Platform price of each level, a percentage of the public price, per top category.
LEVEL_PERCENT = {
    "games": {"普通": "99", "铜牌": "98", "银牌": "97", "金牌": "96"},
    "software": {"普通": "97", "铜牌": "96", "银牌": "94.5", "金牌": "93"},
    "membership": {"普通": "98", "铜牌": "96", "银牌": "95", "金牌": "93"},
}
# email, level, upline email
CHAIN = [
    ("agent@demo.local", "金牌", None),
    ("agent2@demo.local", "银牌", "agent@demo.local"),
    ("agent3@demo.local", "普通", "agent2@demo.local"),
]


class Command(BaseCommand):
    help = "Load demo agent levels, a chain of three agents with markups, and a storefront."

    def add_arguments(self, parser):
        parser.add_argument("--quiet", action="store_true", help="do not print the logins")

    @transaction.atomic
    def handle(self, *args, quiet=False, **options):
        levels = {}
        for name, rank in LEVELS:
            levels[name], _ = AgentLevel.objects.get_or_create(rank=rank, defaults={"name": name, "sort": rank})
        for slug, percents in LEVEL_PERCENT.items():
            category = Category.objects.filter(slug=slug).first()
            if category is None:
                continue
            for name, value in percents.items():
                services.level_price_set(level=levels[name], category=category, kind=PriceKind.PERCENT, value=value)

        User = get_user_model()
        agents = {}
        for email, level, upline in CHAIN:
            user = User.objects.filter(email=email).first() or User.objects.create_user(
                username=email.split("@")[0], email=email, password=PASSWORD
            )
            agent = Agent.objects.filter(user=user).first() or services.agent_create(
                user=user, level=levels[level], upline=agents.get(upline)
            )
            agents[email] = agent

        top, middle = agents["agent@demo.local"], agents["agent2@demo.local"]
        services.markup_set(agent=top, kind=PriceKind.PERCENT, value="3")
        services.markup_set(agent=top, kind=PriceKind.PERCENT, value="2", downline_level=levels["银牌"])
        games = Category.objects.filter(slug="games").first()
        services.markup_set(agent=middle, kind=PriceKind.PERCENT, value="2.5")
        if games is not None:
            services.markup_set(agent=middle, kind=PriceKind.FIXED, value="1.00", category=games)

        if not Storefront.objects.filter(agent=top).exists():
            Storefront.objects.create(
                agent=top,
                slug="jinpai",
                name="金牌数码卡铺",
                notice="官方授权货源，自动发货；7 天内未查看的卡密可无理由退款。工作时间 9:00–23:00 在线客服。",
                contact="QQ 800012345 · 微信 jinpai-shop",
                default_markup_kind=PriceKind.PERCENT,
                default_markup_value=Decimal("8"),
            )
        if not quiet:
            self.stdout.write(self.style.SUCCESS("Demo agents ready (same password):"))
            for email, level, upline in CHAIN:
                under = f"under {upline}" if upline else "under the platform"
                self.stdout.write(f"  agent {level:<4} {email:<20} {under}")
            self.stdout.write("  storefront: /s/jinpai/")
