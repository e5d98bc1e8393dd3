"""Anonymous visitors' pages kept a few seconds per process (marketplace/pagecache.py, issue 17):
the same page for every anonymous visitor except their own CSRF token and cookies, never for a
member, never older than PAGE_CACHE_SECONDS, and a poster's ?src= still noted for each visitor."""

import re
from decimal import Decimal

import pytest
from django.test import Client

from agents.models import PriceKind
from agents.services import agents as agent_services
from agents.services import storefronts
from marketplace import pagecache
from orders.views import share as share_views
from tests.builders import place
from tests.factories import ProductFactory, UserFactory, add_stock, verified_operator

D = Decimal
TTL = 3
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("english")]

TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="(\w+)"')


@pytest.fixture(autouse=True)
def _cached(settings):
    settings.PAGE_CACHE_SECONDS = TTL
    pagecache.pages_forget()


@pytest.fixture
def clock(monkeypatch):
    """The page cache's clock, moved by hand: clock.now += seconds."""

    class Clock:
        now = 1000.0

    monkeypatch.setattr(pagecache, "_now", lambda: Clock.now)
    return Clock


@pytest.fixture
def product(level):
    p = ProductFactory(price=D("120.00"), slug="steam-100", name="Steam 100")
    agent_services.level_price_set(level=level, product=p, kind=PriceKind.FIXED, value="92.00")
    add_stock(p, 3)
    return p


@pytest.fixture
def shop(level, product):
    agent = agent_services.agent_create(user=UserFactory(), level=level)
    verified_operator(agent)
    return storefronts.storefront_open(agent=agent, slug="lucky-star", name="Lucky star")


def without_tokens(html: str) -> str:
    return re.sub(r'"X-CSRFToken": "\w+"', "", TOKEN.sub("", html))


def test_two_anonymous_visitors_get_the_same_page_with_their_own_token(product, django_assert_num_queries):
    first, second = Client(), Client()
    a = first.get("/p/steam-100/")
    with django_assert_num_queries(0):  # served from the cache: the view did not run
        b = second.get("/p/steam-100/")
    assert a.status_code == b.status_code == 200
    html_a, html_b = a.content.decode(), b.content.decode()
    assert pagecache.PLACEHOLDER not in html_a + html_b
    assert "3 codes in stock" in html_b
    tokens_a, tokens_b = set(TOKEN.findall(html_a)), set(TOKEN.findall(html_b))
    assert len(tokens_a) == len(tokens_b) == 1 and tokens_a != tokens_b
    assert re.search(r'"X-CSRFToken": "(\w+)"', html_b).group(1) in tokens_b
    assert without_tokens(html_a) == without_tokens(html_b)
    assert "Cookie" in b["Vary"] and "Accept-Language" in b["Vary"]


def test_no_cookie_is_replayed_each_visitor_gets_its_own(product, settings):
    first, second = Client(), Client()
    a = first.get("/p/steam-100/")
    b = second.get("/p/steam-100/")  # a hit
    for name in (settings.CSRF_COOKIE_NAME, settings.RISK_DEVICE_COOKIE):
        assert a.cookies[name].value and b.cookies[name].value
        assert a.cookies[name].value != b.cookies[name].value
    again = second.get("/p/steam-100/")  # with its cookies now: no new device cookie
    assert settings.RISK_DEVICE_COOKIE not in again.cookies
    assert settings.SESSION_COOKIE_NAME not in again.cookies


def test_the_token_of_a_cached_page_posts_and_another_visitors_does_not(product):
    first = Client(enforce_csrf_checks=True)
    second = Client(enforce_csrf_checks=True)
    token_a = TOKEN.search(first.get("/p/steam-100/").content.decode()).group(1)
    token_b = TOKEN.search(second.get("/p/steam-100/").content.decode()).group(1)  # a hit
    form = {"language": "zh-hans", "next": "/p/steam-100/"}
    assert second.post("/i18n/setlang/", {**form, "csrfmiddlewaretoken": token_b}).status_code == 302
    third = Client(enforce_csrf_checks=True)
    third.get("/p/steam-100/")
    assert third.post("/i18n/setlang/", {**form, "csrfmiddlewaretoken": token_a}).status_code == 403


def test_a_member_never_gets_the_anonymous_page_nor_stores_one(product, buyer):
    anonymous = Client()
    assert b'data-testid="nav-signup"' in anonymous.get("/p/steam-100/").content
    member = Client()
    member.force_login(buyer)
    page = member.get("/p/steam-100/").content
    assert b'data-testid="nav-account"' in page and b'data-testid="nav-signup"' not in page
    pagecache.pages_forget()
    member.get("/c/" + product.category.slug + "/")  # a member's page is not kept for the others
    assert b'data-testid="nav-signup"' in Client().get("/c/" + product.category.slug + "/").content


def test_stock_and_price_are_never_older_than_the_ttl(product, buyer, clock):
    visitor = Client()
    assert b"3 codes in stock" in visitor.get("/p/steam-100/").content
    place(buyer, product, quantity=3)  # the last codes held: sold out
    product.price = D("110.00")
    product.save()
    clock.now += TTL - 0.5
    kept = visitor.get("/p/steam-100/").content
    assert b"3 codes in stock" in kept  # within the TTL: the kept page
    clock.now += 0.5
    fresh = visitor.get("/p/steam-100/").content
    assert b"3 codes in stock" not in fresh and b"Sold out" in fresh and b"110.00" in fresh
    category = f"/c/{product.category.slug}/"
    assert b"Sold out" in visitor.get(category).content


def test_language_is_in_the_key(product):
    english = Client(HTTP_ACCEPT_LANGUAGE="en").get("/p/steam-100/")
    chinese = Client(HTTP_ACCEPT_LANGUAGE="zh-hans").get("/p/steam-100/")
    assert b"codes in stock" in english.content and b"codes in stock" not in chinese.content
    assert english["Content-Language"] == "en" and chinese["Content-Language"] == "zh-hans"


def test_a_visitor_with_a_session_or_pending_messages_is_not_served_from_the_cache(product, settings):
    Client().get("/p/steam-100/")
    messaged = Client()
    messaged.cookies["messages"] = "anything"
    with_session = Client()
    with_session.cookies[settings.SESSION_COOKIE_NAME] = "x" * 32
    for visitor in (messaged, with_session):
        pagecache_before = dict(pagecache._pages)
        response = visitor.get("/p/steam-100/")
        assert response.status_code == 200 and pagecache.PLACEHOLDER.encode() not in response.content
        assert dict(pagecache._pages) == pagecache_before


def test_a_poster_visit_is_noted_for_every_visitor(shop, product):
    first, second = Client(), Client()
    for visitor in (first, second):
        assert visitor.get("/s/lucky-star/?src=s").status_code == 200
        assert share_views.SESSION_KEY in visitor.session  # the view ran: the landing is noted
    assert not any("src=s" in key[3] for key in pagecache._pages)
    plain = Client().get("/s/lucky-star/")
    assert plain.status_code == 200 and any(key[3] == "/s/lucky-star/" for key in pagecache._pages)


def test_only_successful_answers_are_kept(product, shop):
    assert Client().get("/s/no-such-shop/").status_code == 404
    assert Client().get("/p/no-such-product/").status_code == 404
    assert not pagecache._pages


def test_head_is_answered_like_get(product, django_assert_num_queries):
    head = Client().head("/p/steam-100/")
    assert head.status_code == 200 and head.content == b""
    with django_assert_num_queries(0):
        page = Client().get("/p/steam-100/")
    assert b"3 codes in stock" in page.content and pagecache.PLACEHOLDER.encode() not in page.content


def test_the_store_is_bounded(product, monkeypatch):
    monkeypatch.setattr(pagecache, "MAX_BYTES", 1)
    Client().get("/p/steam-100/")
    Client().get("/p/steam-100/?page=2")
    assert not pagecache._pages and pagecache._bytes == 0  # a page larger than the bound is not kept


def test_off_when_the_setting_is_zero(product, settings):
    settings.PAGE_CACHE_SECONDS = 0
    Client().get("/p/steam-100/")
    assert not pagecache._pages
