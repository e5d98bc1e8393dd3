"""Issue 12, pages a customer trusts: one money filter and one order-number form on every page,
a Chinese interface with no English left in it, paging, and the staff dashboard.

The page tests load the demo data (``dev.py up``'s shop) and open the main pages of a buyer,
an agent and staff in zh-hans.
"""

import html
import re
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db.models import Sum
from django.template import Context, Template
from django.test import Client
from django.urls import reverse
from django.utils import translation

from marketplace.templatetags.display import money_format, order_no_format, order_no_parse

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
CATALOG = ROOT / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"


# --- the filters ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "arg", "shown"),
    [
        (Decimal("5612.76000000000"), "", "¥5,612.76"),  # the storefront page's 30-day sales, as it was
        (Decimal("0"), "", "¥0.00"),
        (Decimal("12.345"), "", "¥12.35"),  # half up, to the fen
        (Decimal("-12.3"), "", "-¥12.30"),  # the sign before the currency
        (Decimal("1234567.8"), "plain", "1,234,567.80"),
        (7, "", "¥7.00"),
        ("88.5", "", "¥88.50"),
        (0.1 + 0.2, "", "¥0.30"),  # a float that slipped through is shown as the amount it means
        (None, "", "—"),
    ],
)
def test_money_filter(value, arg, shown):
    assert money_format(value, arg) == shown


def test_money_filter_in_a_template_and_in_english():
    template = Template('{{ a|money }} {{ a|money:"plain" }}')
    for language in ("zh-hans", "en"):
        with translation.override(language):
            assert template.render(Context({"a": Decimal("5612.76000000000")})) == "¥5,612.76 5,612.76"


def test_order_numbers_are_shown_in_groups_of_four_and_read_back():
    number = "2612031508ABCDEFGHJKLMNPQRST"
    shown = order_no_format(number)
    assert shown == "2612 0315 08AB CDEF GHJK LMNP QRST"
    assert order_no_parse(shown) == number
    assert order_no_parse(" 2612-0315 08ab cdef ghjk lmnp qrst ") == number
    assert Template('{{ n|order_no:"text" }}').render(Context({"n": number})) == shown
    # On a page: the groups are set apart by CSS, so the text copied is the number itself.
    rendered = Template("{{ n|order_no }}").render(Context({"n": number}))
    assert rendered == (
        f'<span class="order-no" title="{number}"><span>2612</span><span>0315</span><span>08AB</span>'
        "<span>CDEF</span><span>GHJK</span><span>LMNP</span><span>QRST</span></span>"
    )
    assert Template("{{ n|order_no }}").render(Context({"n": "<b>"})).count("<b>") == 0  # escaped


def _blocks(text: str):
    """(inside a blocktranslate?, text) pieces of a template."""
    pattern = re.compile(r"\{% blocktranslate(.*?)%\}(.*?)\{% endblocktranslate %\}", re.S)
    last = 0
    for match in pattern.finditer(text):
        yield False, text[last : match.start()], ""
        yield True, match.group(2), match.group(1)
        last = match.end()
    yield False, text[last:], ""


def test_every_amount_in_every_template_goes_through_the_money_filter():
    """A "¥" in a template is followed by the money filter's output, or by a translated sentence
    whose amount was bound through ``|money:"plain"``; input-group labels are the only bare ones."""
    problems = []
    for path in sorted(TEMPLATES.rglob("*")):
        if not path.is_file() or path.suffix not in (".html", ".txt"):
            continue
        text = path.read_text()
        name = path.relative_to(TEMPLATES)
        if "|intcomma" in text or re.search(r"(amount|total|price|revenue|earnings|balance)\w*\|floatformat", text):
            problems.append(f"{name}: an amount formatted without the money filter")
        for inside, piece, head in _blocks(text):
            if inside:
                for var in re.findall(r"¥\{\{ (\w+) \}\}", piece):
                    if not re.search(rf'\b{var}=[\w.]+\|money:"plain"', head):
                        problems.append(f"{name}: ¥{{{{ {var} }}}} in a translated sentence is not bound with |money")
                continue
            for match in re.finditer(r"¥", piece):
                after = piece[match.end() : match.end() + 200]
                ok = after.startswith("</span>") or after.startswith('" +') or after.startswith("</small>{{")
                if after.startswith("</small>{{"):
                    ok = bool(re.match(r'</small>\{\{ [\w.]+\|money:"plain" \}\}', after))
                if not ok:
                    problems.append(f"{name}: a bare ¥ before {after[:30]!r}")
    assert problems == []


# --- the catalogue ----------------------------------------------------------------------------


def po_entries(path: Path) -> list[dict]:
    """Entries of a .po file: msgctxt, msgid, msgid_plural, msgstr (a list), flags. No obsolete ones."""
    entries, entry, key = [], None, None

    def unquote(s: str) -> str:
        return s.encode("latin-1", "backslashreplace").decode("unicode_escape") if "\\" in s else s

    def finish():
        if entry is not None and "msgid" in entry:
            entries.append(entry)

    for raw in [*path.read_text(encoding="utf-8").splitlines(), ""]:
        line = raw.strip()
        if not line:
            finish()
            entry, key = None, None
            continue
        if entry is None:
            entry = {"flags": set(), "msgstr": {}, "msgctxt": None, "msgid_plural": None}
        if line.startswith("#~"):
            entry["obsolete"] = True
        elif line.startswith("#,"):
            entry["flags"].update(f.strip() for f in line[2:].split(","))
        elif line.startswith("#"):
            continue
        else:
            m = re.match(r'(msgctxt|msgid_plural|msgid|msgstr(?:\[(\d+)\])?) "(.*)"$', line)
            if m:
                key = m.group(1)
                value = m.group(3)
                if key.startswith("msgstr"):
                    key = ("msgstr", int(m.group(2) or 0))
                    entry["msgstr"][key[1]] = value
                else:
                    entry[key] = value
            elif line.startswith('"') and key is not None:
                value = line[1:-1]
                if isinstance(key, tuple):
                    entry["msgstr"][key[1]] += value
                else:
                    entry[key] += value
    return [
        {**e, "msgid": e["msgid"].replace('\\"', '"').replace("\\n", "\n")} for e in entries if not e.get("obsolete")
    ]


def test_every_message_in_the_chinese_catalogue_is_translated():
    entries = [e for e in po_entries(CATALOG) if e["msgid"]]
    assert len(entries) > 1000
    untranslated = [e["msgid"] for e in entries if not all(e["msgstr"].values()) or not e["msgstr"]]
    fuzzy = [e["msgid"] for e in entries if "fuzzy" in e["flags"]]
    assert untranslated == [] and fuzzy == []


_PLACEHOLDER = re.compile(r"%\(\w+\)[sdf]|%[sd]|\{\{ *\w+ *\}\}|<[^>]+>|\n")


def english_fragments() -> set[str]:
    """Pieces of our catalogue's English that would betray an untranslated message: the literal
    parts of each msgid of two or more words, when the translation does not keep them."""
    fragments = set()
    for e in po_entries(CATALOG):
        translated = " ".join(e["msgstr"].values())
        for piece in _PLACEHOLDER.split(e["msgid"]):
            piece = " ".join(piece.split()).strip(" .,:;·()—-")
            if len(piece) >= 12 and " " in piece and re.search("[a-z]", piece) and piece not in translated:
                fragments.add(piece)
    return fragments


@pytest.fixture
def product(db):
    from tests.factories import ProductFactory, add_stock

    product = ProductFactory(max_per_order=5)
    add_stock(product, 30, numbered=True)
    return product


# --- the pages, with the demo shop --------------------------------------------------------------


def visible_text(page: str) -> str:
    page = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S | re.I)
    page = re.sub(r"<[^>]+>", " ", page)
    return " ".join(html.unescape(page).split())


def client_for(email: str | None) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE="zh-hans")
    if email:
        client.force_login(get_user_model().objects.get(email=email))
    return client


@pytest.fixture
def demo_shop(db, settings):
    settings.PAYMENTS_SANDBOX_ENABLED = True
    for command in ("seed_demo", "seed_demo_agents", "seed_demo_sales", "seed_demo_aftersales"):
        call_command(command, "--quiet") if command in ("seed_demo", "seed_demo_agents") else call_command(command)
    call_command("seed_demo_compliance", verbosity=0)
    call_command("trust_compute", verbosity=0)


def main_pages():
    from aftersales.models import Ticket
    from catalog.models import Product
    from compliance.models import Qualification
    from orders.models import Order

    buyer_order = Order.objects.filter(buyer__email="buyer@demo.local").order_by("-id").first()
    ticket = Ticket.objects.order_by("id").first()
    product = Product.objects.filter(is_active=True).order_by("id").first()
    qualification = Qualification.objects.order_by("id").first()
    return {
        None: [
            "/",
            reverse("catalog:product", args=[product.slug]),
            "/s/jinpai/",
            "/accounts/login/",
            "/accounts/signup/",
            reverse("compliance:qualifications"),
            reverse("trust:index"),
            reverse("trust:certificate_lookup") + "?number=NO-SUCH-CERT",
            reverse("rights:notice_list"),
        ],
        "buyer@demo.local": [
            "/",
            reverse("orders:list"),
            reverse("orders:list") + "?page=99",
            buyer_order.get_absolute_url(),
            reverse("wallet:home"),
            reverse("wallet:home") + "?payments_page=2",
            reverse("aftersales:tickets"),
            reverse("aftersales:ticket", args=[ticket.number]),
            reverse("profile"),
            "/s/jinpai/",
        ],
        "agent@demo.local": [
            reverse("agents:home"),
            reverse("agents:reports"),
            reverse("agents:downline"),
            reverse("agents:pricing"),
            reverse("agents:storefront"),
            reverse("agents:storefront_prices"),
            reverse("agents:posters"),
            reverse("agents:coupons"),
            reverse("agents:reports_sources"),
            reverse("agents:withdrawals"),
        ],
        "admin@demo.local": [
            reverse("admin:index"),
            reverse("admin:ledger_account_changelist"),
            reverse("admin:ledger_trial_balance"),
            reverse("admin:aftersales_slaevent_changelist"),
            reverse("admin:aftersales_ticket_changelist"),
            reverse("admin:aftersales_ticket_change", args=[ticket.pk]),
            reverse("admin:payments_channels"),
            reverse("admin:catalog_stockbatch_import"),
            reverse("admin:orders_order_changelist"),
            reverse("admin:marketing_coupon_changelist"),
            reverse("admin:marketing_coupon_add"),
            reverse("admin:payments_refund_changelist"),
            reverse("admin:compliance_qualification_changelist"),
            reverse("admin:compliance_qualification_change", args=[qualification.pk]),
        ],
    }


@pytest.mark.django_db
def test_main_pages_show_money_one_way_and_no_english_in_chinese(demo_shop):
    fragments = english_fragments()
    assert len(fragments) > 300
    bad_money, english, seen = [], [], 0
    for email, urls in main_pages().items():
        client = client_for(email)
        for url in urls:
            response = client.get(url)
            assert response.status_code == 200, (email, url, response.status_code)
            text = visible_text(response.content.decode())
            seen += text.count("¥")
            # Every amount: ¥, digits grouped by commas, exactly two decimals.
            for match in re.finditer(r"¥\s*([0-9][0-9,]*(?:\.[0-9]+)?)", text):
                if not re.fullmatch(r"[0-9]{1,3}(,[0-9]{3})*\.[0-9]{2}", match.group(1)):
                    bad_money.append((url, match.group(0)))
            for number in re.findall(r"(?<![0-9.])[0-9]+\.[0-9]{3,}(?![0-9.])", text):  # not an IP address
                bad_money.append((url, number))
            english += [(url, f) for f in fragments if f in text]
    assert seen > 100
    assert bad_money == []
    assert english == []
    # The check can see English: the same home page in English shows some of these fragments.
    home = visible_text(Client(HTTP_ACCEPT_LANGUAGE="en").get("/").content.decode())
    assert any(f in home for f in fragments)


def guest_pages(on_commit) -> tuple[Client, list[str]]:
    """A guest's browser (no account) and every page it reaches: the checkouts, the cashier's
    choice, the lookup, the order page proved with the query password and its after-sales."""
    import uuid

    from aftersales.services import no_reason, tickets
    from catalog.models import Product
    from orders.services import guest as guest_services
    from orders.services.orders import order_place
    from payments.services.payments import sandbox_pay

    product = Product.objects.filter(is_active=True).order_by("id").first()

    def bought(password: str, pay: bool = True):
        order = order_place(
            buyer=None,
            guest_email="lookup.me@demo.local",
            query_password=password,
            product_id=product.pk,
            quantity=2,
            idempotency_key=uuid.uuid4().hex,
        )
        if pay:
            with on_commit(execute=True):  # payment, then delivery, as after their commits
                sandbox_pay(order_number=order.number)
        order.refresh_from_db()
        return order

    order, waiting = bought("cha-xun-1"), bought("", pay=False)
    assert order.status == "delivered"
    ticket = tickets.ticket_open(user=None, kind="other", subject="到账了吗", body="你好", order=order)
    code = order.codes.order_by("id").first()
    request = no_reason.refund_request_create(
        user=None, order=order, order_code_ids=[str(code.pk)], idempotency_key=uuid.uuid4().hex
    )
    client = client_for(None)
    for o in (order, waiting):
        assert client.get(reverse("orders:guest_link", args=[guest_services.guest_link_token(number=o.number)]))
    client.post(reverse("orders:guest_unlock", args=[order.number]), {"query_password": "cha-xun-1"})
    guest = "aftersales_guest:"
    return client, [
        reverse("orders:checkout", args=[product.slug]),
        f"/s/jinpai/p/{product.slug}/",
        reverse("orders:guest_lookup"),
        reverse("payments:choose", args=[waiting.number]),
        reverse("orders:guest_detail", args=[waiting.number]),
        reverse("orders:guest_detail", args=[order.number]),
        reverse(guest + "refund_new", kwargs={"number": order.number}),
        reverse(guest + "refund_detail", kwargs={"number": order.number, "public_id": request.public_id}),
        reverse(guest + "ticket_new", kwargs={"number": order.number}),
        reverse(guest + "ticket", kwargs={"number": order.number, "ticket": ticket.number}),
    ]


@pytest.mark.django_db
def test_a_guests_pages_say_everything_in_chinese(demo_shop, django_capture_on_commit_callbacks):
    fragments = english_fragments()
    client, urls = guest_pages(django_capture_on_commit_callbacks)
    for url in urls:
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        text = visible_text(response.content.decode())
        assert [f for f in fragments if f in text] == [], url
        assert re.search("[\u4e00-\u9fff]{4}", text), url  # Chinese, not an empty page


@pytest.mark.django_db
def test_storefront_page_shows_its_30_day_sales_through_the_filter(demo_shop):
    """The page that showed ``¥5612.76000000000``: a sum of a product of decimals."""
    from agents.models import Agent

    agent = Agent.objects.get(user__email="agent@demo.local")
    assert agent.sales.filter(channel="storefront", status="delivered").aggregate(s=Sum("total"))["s"] > 0
    page = client_for("agent@demo.local").get(reverse("agents:storefront")).content.decode()
    assert re.search(r'<div class="stat-value">¥[0-9]{1,3}(,[0-9]{3})*\.[0-9]{2}</div>', page)


@pytest.mark.django_db
def test_signup_password_errors_are_in_chinese(db):
    response = client_for(None).post(
        "/accounts/signup/", {"email": "new@example.cn", "password1": "1234", "password2": "1234"}
    )
    text = visible_text(response.content.decode())
    assert "密码太短，至少需要 8 个字符。" in text and "这个密码太常见了。" in text
    assert "too short" not in text and "too common" not in text


@pytest.mark.django_db
def test_order_list_pages_by_twenty_and_shows_grouped_numbers(client, buyer, product):
    from orders.models import Order
    from orders.services.orders import order_place

    for i in range(23):
        order_place(buyer=buyer, product=product, quantity=1, idempotency_key=f"page-{i}")
    client.force_login(buyer)
    first = client.get(reverse("orders:list")).content.decode()
    assert first.count('data-testid="order-row"') == 20 and 'data-testid="page-position">1 / 2<' in first
    newest = Order.objects.order_by("-id").first()
    assert f'<span class="order-no" title="{newest.number}"><span>{newest.number[:4]}</span>' in first
    last = client.get(reverse("orders:list") + "?page=2").content.decode()
    assert last.count('data-testid="order-row"') == 3
    beyond = client.get(reverse("orders:list") + "?page=99")
    assert beyond.status_code == 200 and beyond.content.decode().count('data-testid="order-row"') == 3
    assert client.get(reverse("orders:list") + "?page=abc").status_code == 200


@pytest.mark.django_db
def test_admin_search_finds_an_order_by_the_number_as_shown(client, staff, buyer, product):
    from orders.services.orders import order_place

    order = order_place(buyer=buyer, product=product, quantity=1, idempotency_key="search-me")
    order_place(buyer=buyer, product=product, quantity=1, idempotency_key="not-me")
    client.force_login(staff)
    page = client.get(reverse("admin:orders_order_changelist"), {"q": order_no_format(order.number)})
    assert page.status_code == 200
    assert page.context["cl"].result_count == 1 and page.context["cl"].result_list[0] == order


@pytest.mark.django_db
def test_wallet_export_speaks_chinese_to_a_chinese_reader(client, buyer):
    import csv
    import io

    from tests.test_wallet import recharge

    recharge(buyer, "88.50")
    client.force_login(buyer)
    body = client.get(reverse("wallet:export"), HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(body)))
    assert rows[0] == ["时间", "类型", "单号", "支付渠道", "渠道交易号", "金额", "状态"]
    kinds = {row[1] for row in rows[1:]}
    assert "充值" in kinds and "余额:充值" in kinds
    for row in rows[1:]:
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", row[0])  # no microseconds, no offset
    statuses = {row[6] for row in rows[1:] if row[6]}
    assert statuses and all(not re.search("[a-z]", s) for s in statuses)


def test_sla_event_details_and_ledger_account_names_are_said_in_chinese():
    from aftersales.admin.sla_text import sla_detail_text
    from aftersales.models import SlaEvent
    from ledger.models import Account
    from ledger.names import account_name

    events = [
        (
            SlaEvent.Kind.WARNED,
            "first response due 2026-12-03 18:00 (in 1h05m)",
            "首次响应截止 2026-12-03 18:00（还剩 1 小时 05 分）",
        ),
        (
            SlaEvent.Kind.BREACHED,
            "due 2026-12-03 18:00, seen 0h03m late",
            "截止 2026-12-03 18:00，发现时已超时 0 小时 03 分",
        ),
        (
            SlaEvent.Kind.ESCALATED,
            "priority normal -> urgent; group supervisors",
            "优先级 普通 → 紧急；升级至 supervisors 组",
        ),
        (SlaEvent.Kind.WARNED, "written by hand", "written by hand"),  # any other form: as stored
    ]
    accounts = [
        (Account(code="liability:wallet:7", name="Wallet of buyer@demo.local"), "buyer@demo.local 的余额账户"),
        (Account(code="revenue:sales", name="Sales of card codes"), "卡密销售收入"),
        (Account(code="asset:clearing:alipay", name="Gateway clearing: alipay"), "支付渠道待结算：alipay"),
        (Account(code="liability:other", name="Something new"), "Something new"),
    ]
    with translation.override("zh-hans"):
        assert [sla_detail_text(SlaEvent(kind=k, detail=d)) for k, d, _ in events] == [z for _, _, z in events]
        assert [account_name(a) for a, _ in accounts] == [z for _, z in accounts]
    with translation.override("en"):
        assert (
            sla_detail_text(SlaEvent(kind=events[0][0], detail=events[0][1]))
            == "first response due 2026-12-03 18:00 (in 1h 05m)"
        )
