"""Demo data: categories, products of every kind with real imported stock, and three logins.

Safe to run again: existing rows are kept, stock is topped up to the target.
"""

import secrets
import string
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.management.base import BaseCommand
from django.db import transaction

from catalog import selectors, services, topup
from catalog.models import Category, Product, Supplier
from marketplace.randomness import random_chars

DEMO_PASSWORD = "demo-pass-2026"
USERS = [
    ("admin@demo.local", "staff superuser", {"is_staff": True, "is_superuser": True}),
    ("buyer@demo.local", "buyer", {}),
    ("agent@demo.local", "agent (reseller)", {}),
]

CATEGORIES = [
    ("games", "游戏点卡", [("netease", "网易游戏"), ("tencent", "腾讯游戏"), ("steam", "Steam")]),
    ("software", "软件激活码", [("office", "办公软件"), ("security", "安全软件")]),
    ("membership", "会员卡", [("video", "视频会员"), ("music", "音乐会员")]),
    ("topup", "直充代充", [("mobile", "话费直充"), ("game-direct", "游戏直充")]),
]

# No lookup links: the demo's certificate numbers are made up, and a link to a page that does
# not verify them would teach buyers to trust any link.
SUPPLIERS = [
    ("网易官方授权分销商", True, "NE-AUTH-2026-0153", ""),
    ("腾讯充值渠道商", True, "TX-QB-2026-8812", ""),
    ("正版软件总代理", True, "SW-LIC-2026-0042", ""),
    ("数字会员批发商", False, "", ""),
]

# slug, name, kind, category, supplier index, face value, price, min, max, stock, card-number style
PRODUCTS = [
    ("netease-50", "网易一卡通 50 点", "game_card", "netease", 0, "50", "48.50", 1, 10, 60, True),
    ("netease-100", "网易一卡通 100 点", "game_card", "netease", 0, "100", "96.80", 1, 10, 40, True),
    ("qq-coin-30", "Q币 30 元", "game_card", "tencent", 1, "30", "29.40", 1, 20, 80, True),
    ("qq-coin-100", "Q币 100 元", "game_card", "tencent", 1, "100", "97.90", 1, 20, 30, True),
    ("steam-wallet-100", "Steam 钱包充值卡 100 元", "game_card", "steam", 1, "100", "95.00", 1, 5, 25, False),
    ("office-2024-home", "Office 2024 家庭版 激活密钥", "licence_key", "office", 2, "748", "699.00", 1, 3, 12, False),
    ("wps-pro-1y", "WPS 超级会员 Pro 年卡", "licence_key", "office", 2, "299", "268.00", 1, 5, 20, False),
    ("antivirus-1y", "杀毒软件 1 年 3 设备", "licence_key", "security", 2, "199", "159.00", 1, 5, 15, False),
    ("video-vip-month", "视频会员 月卡", "membership", "video", 3, "25", "19.80", 1, 10, 100, False),
    ("video-vip-year", "视频会员 年卡", "membership", "video", 3, "248", "198.00", 1, 3, 20, False),
    ("music-vip-quarter", "音乐会员 季卡", "membership", "music", 3, "45", "39.00", 1, 10, 50, False),
    ("netease-500", "网易一卡通 500 点", "game_card", "netease", 0, "500", "485.00", 1, 2, 0, True),
    ("kings-topup-60", "王者荣耀 点券 60 元（游戏充值）", "game_card", "tencent", 1, "60", "58.80", 1, 5, 30, True),
    # Direct top-ups (代充): no codes; the buyer gives the account, staff top it up by hand (the
    # admin's 人工代充 queue, with its 30-minute SLA).
    ("mobile-topup-50", "手机话费直充 50 元", "direct_topup", "mobile", 1, "50", "49.50", 1, 1, 0, False),
    ("game-direct-qq-30", "QQ 会员直充 1 个月", "direct_topup", "game-direct", 1, "30", "28.00", 1, 3, 0, False),
]

# Direct top-ups: the fields the buyer gives (catalog.topup's presets) and what one costs us.
TOPUP_PRESETS = {"mobile-topup-50": "phone", "game-direct-qq-30": "qq"}

# A game top-up: a verified real name is needed, and minors' limits apply (compliance.realname,
# compliance.minors). In development the sandbox provider verifies any valid identity number.
GAME_TOPUPS = {"kings-topup-60"}

DESCRIPTIONS = {
    "game_card": "官方渠道点卡，付款后自动发货。请在对应游戏的官方充值页面使用卡号和密码充值。",
    "licence_key": "正版激活密钥，一码一机（或以产品说明为准）。请在软件的“激活”页面输入密钥。",
    "membership": "会员兑换码，在官方 App 或网站的“兑换中心”输入即可开通。",
    "direct_topup": (
        "直接充值到您填写的账号，无需卡密。付款后由客服人工充值，30 分钟内到账；充值成功后不支持7天无理由退款。"
    ),
}


def _random_code(groups: int = 4, size: int = 4) -> str:
    alphabet = string.ascii_uppercase + string.digits
    return "-".join(random_chars(size, alphabet) for _ in range(groups))


class Command(BaseCommand):
    help = "Load demo categories, products with real stock, and demo logins (printed)."

    def add_arguments(self, parser):
        parser.add_argument("--quiet", action="store_true", help="do not print the logins")

    @transaction.atomic
    def _catalog(self):
        parents = {}
        for i, (slug, name, children) in enumerate(CATEGORIES):
            top, _ = Category.objects.get_or_create(slug=slug, defaults={"name": name, "sort_order": i})
            for j, (child_slug, child_name) in enumerate(children):
                parents[child_slug], _ = Category.objects.get_or_create(
                    slug=child_slug, defaults={"name": child_name, "parent": top, "sort_order": j}
                )
        suppliers = []
        for name, authorised, cert, url in SUPPLIERS:
            supplier, _ = Supplier.objects.get_or_create(
                name=name,
                defaults={"is_authorised": authorised, "authorisation_cert_no": cert, "authorisation_lookup_url": url},
            )
            if supplier.authorisation_lookup_url.startswith("https://example.com/"):  # an older demo's
                Supplier.objects.filter(pk=supplier.pk).update(authorisation_lookup_url="")
            suppliers.append(supplier)
        products = []
        for i, (slug, name, kind, cat, sup, face, price, lo, hi, stock, numbered) in enumerate(PRODUCTS):
            product, _ = Product.objects.get_or_create(
                slug=slug,
                defaults={
                    "name": name,
                    "kind": kind,
                    "category": parents[cat],
                    "supplier": suppliers[sup],
                    "face_value": Decimal(face),
                    "price": Decimal(price),
                    "min_per_order": lo,
                    "max_per_order": hi,
                    "description": DESCRIPTIONS[kind],
                    "sort_order": i,
                    **(
                        {
                            "supply_mode": Product.SupplyMode.MANUAL,
                            "topup_fields": topup.preset_fields(TOPUP_PRESETS[slug]),
                            "supply_cost": (Decimal(price) * Decimal("0.95")).quantize(Decimal("0.01")),
                        }
                        if kind == Product.Kind.DIRECT_TOPUP
                        else {}
                    ),
                },
            )
            if slug in GAME_TOPUPS and not (product.is_game_topup and product.requires_real_name):
                Product.objects.filter(pk=product.pk).update(is_game_topup=True, requires_real_name=True)
            if product.name != name and product.name.startswith(name):  # an older demo's "sold-out example"
                Product.objects.filter(pk=product.pk).update(name=name)
            products.append((product, stock, numbered))
        return products

    def handle(self, *args, quiet=False, **options):
        User = get_user_model()
        users = {}
        for email, _role, flags in USERS:
            user = User.objects.filter(email=email).first()
            if user is None:
                user = User.objects.create_user(
                    username=email.split("@")[0], email=email, password=DEMO_PASSWORD, **flags
                )
            users[email] = user
        agents, _ = Group.objects.get_or_create(name="agents")
        users["agent@demo.local"].groups.add(agents)
        staff_group, _ = Group.objects.get_or_create(name="stock managers")
        staff_group.permissions.add(
            *Permission.objects.filter(codename__in=["import_stock", "reveal_cardcode", "view_stockbatch"])
        )
        admin = users["admin@demo.local"]
        for product, target, numbered in self._catalog():
            missing = target - selectors.stock_count(product.pk)
            if missing <= 0:
                continue
            lines = [
                (f"{secrets.randbelow(10**12):012d}----{_random_code()}" if numbered else _random_code(5, 5))
                for _ in range(missing)
            ]
            services.batch_create(
                request=services.ImportRequest(
                    product=product,
                    supplier=product.supplier,
                    cost_price=(product.price * Decimal("0.9")).quantize(Decimal("0.01")),
                    text="\n".join(lines),
                    source_name="demo data",
                    csv_format=False,
                ),
                user=admin,
                run_now=True,
            )
        if not quiet:
            self.stdout.write(self.style.SUCCESS(f"Demo data ready. Logins (password for all: {DEMO_PASSWORD}):"))
            for email, role, _flags in USERS:
                self.stdout.write(f"  {role:<18} {email}")
