"""Demo agents: four levels with platform prices, a three-level chain with markups, their operator
identities (two verified, one awaiting staff), a storefront.

Safe to run again: existing rows are kept. Run after ``seed_demo`` (it needs the catalogue and
the demo logins).
"""

import io
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management.base import BaseCommand
from django.db import transaction
from PIL import Image, ImageDraw

from agents.models import Agent, AgentLevel, OperatorIdentity, PriceKind, Storefront
from agents.services import agents as services
from agents.services import operators
from catalog.models import Category
from compliance.identity import id_check_char
from compliance.services import uscc_check_char

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


def _id_number(first17: str) -> str:
    return first17 + id_check_char(first17)


def _licence_png() -> SimpleUploadedFile:
    img = Image.new("RGB", (900, 620), "white")
    draw = ImageDraw.Draw(img)
    draw.rectangle((20, 20, 880, 600), outline=(160, 20, 20), width=6)
    draw.text((60, 60), "BUSINESS LICENCE (demo)", fill=(160, 20, 20))
    out = io.BytesIO()
    img.save(out, format="PNG")
    return SimpleUploadedFile("licence.png", out.getvalue(), content_type="image/png")


# The operators (网络交易监督管理办法 第二十四条): the top agent is a registered company, the second an
# individual, both verified; the third waits in the staff's queue.
DEMO_USCC = "91110105MA01XK7P3"
OPERATORS = {
    "agent@demo.local": dict(
        kind=OperatorIdentity.Kind.BUSINESS,
        legal_name="王金牌",
        company_name="北京金牌数码科技有限公司",
        credit_code=DEMO_USCC + uscc_check_char(DEMO_USCC),
        address="北京市朝阳区建国路 88 号 SOHO 现代城 2 号楼 1203 室",
        phone="010-65881234",
        verify=True,
    ),
    "agent2@demo.local": dict(
        kind=OperatorIdentity.Kind.INDIVIDUAL,
        legal_name="李银",
        id_number=_id_number("31010419880512302"),
        small_sales_declared=True,
        address="上海市徐汇区漕溪北路 398 号",
        phone="13912345678",
        verify=True,
    ),
    "agent3@demo.local": dict(
        kind=OperatorIdentity.Kind.INDIVIDUAL,
        legal_name="赵普",
        id_number=_id_number("44030519950820161"),
        small_sales_declared=True,
        address="广东省深圳市福田区深南大道 6008 号",
        phone="13600001111",
        verify=False,
    ),
}


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

        for email, details in OPERATORS.items():
            agent = agents[email]
            if OperatorIdentity.objects.filter(agent=agent).exists():
                continue
            fields = {k: v for k, v in details.items() if k != "verify"}
            if fields["kind"] == OperatorIdentity.Kind.BUSINESS:
                fields["licence_image"] = _licence_png()
            identity = operators.operator_identity_submit(agent=agent, **fields)
            if details["verify"]:
                operators.operator_identity_verify(identity_id=identity.pk, by=None)

        if not Storefront.objects.filter(agent=top).exists():
            Storefront.objects.create(  # its operator is verified above
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
