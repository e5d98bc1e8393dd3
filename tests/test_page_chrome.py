"""The page chrome (base.html's head, navigation and scripts) is kept per process, per language
and kind of viewer (``{% localcache %}``): what is the viewer's own is drawn on every page
(``{% percall %}``), so a kept navigation never shows another user's email, another language,
another page's path or search, or links for another kind of viewer."""

import re

import pytest
from django.conf import settings
from django.contrib import messages
from django.contrib.messages.storage.cookie import CookieStorage
from django.http import HttpResponse
from django.template import Context, Template, TemplateSyntaxError
from django.test import Client, RequestFactory

from agents.services import agents as agent_services
from marketplace import localcache
from tests.factories import ProductFactory, UserFactory

pytestmark = pytest.mark.django_db


def page(user, path="/", lang="zh-hans") -> str:
    client = Client()
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = lang
    if user is not None:
        client.force_login(user)
    response = client.get(path)
    assert response.status_code == 200
    return response.content.decode()


def nav(html: str) -> str:
    return html[html.index('<nav class="navbar') : html.index("</nav>")]


def test_the_navigation_is_kept_and_shows_each_viewer_their_own_email(buyer, other_buyer):
    first = page(buyer)
    assert any(k.startswith(localcache.FRAGMENT + "page:zh-hans:True") for k in localcache._store)  # kept in the frame
    second = page(other_buyer)
    assert other_buyer.email in nav(second) and buyer.email not in second
    assert buyer.email in nav(first) and other_buyer.email not in first
    assert 'data-testid="nav-account"' in second and 'data-testid="nav-signup"' not in second
    anonymous = page(None)
    assert buyer.email not in anonymous and other_buyer.email not in anonymous
    assert 'data-testid="nav-signup"' in anonymous and 'data-testid="nav-account"' not in anonymous


def test_the_kept_navigation_follows_the_language(buyer, other_buyer):
    chinese = nav(page(buyer, lang="zh-hans"))
    english = nav(page(other_buyer, lang="en"))
    assert "我的订单" in chinese and "My orders" not in chinese and 'value="en"' in chinese
    assert "My orders" in english and "我的订单" not in english and 'value="zh-hans"' in english
    assert other_buyer.email in english and buyer.email not in english
    again = nav(page(buyer, lang="zh-hans"))
    assert "我的订单" in again and buyer.email in again and other_buyer.email not in again


def test_agent_and_staff_links_only_for_their_viewers(buyer, staff, level):
    agent = UserFactory()
    agent_services.agent_create(user=agent, level=level)
    agent.refresh_from_db()
    assert 'data-testid="nav-agent"' in page(agent)
    assert 'href="/admin/"' in nav(page(staff))
    plain = nav(page(buyer))
    assert 'data-testid="nav-agent"' not in plain and 'href="/admin/"' not in plain
    assert 'data-testid="nav-agent"' in page(agent)  # the agent's kept version still has its link


def test_path_search_and_csrf_token_are_each_requests_own(client, buyer):
    product = ProductFactory()
    client.force_login(buyer)
    client.get("/")
    html = client.get("/search/?q=steam+card").content.decode()
    assert 'name="q" value="steam card"' in html
    assert 'name="next" type="hidden" value="/search/?q=steam+card"' in html
    other = client.get(f"/p/{product.slug}/").content.decode()
    assert 'name="q" value=""' in other and 'value="steam card"' not in other
    assert f'name="next" type="hidden" value="/p/{product.slug}/"' in other
    tokens = re.findall(r'name="csrfmiddlewaretoken" value="([^"]+)"', nav(other))
    earlier = re.findall(r'name="csrfmiddlewaretoken" value="([^"]+)"', nav(html))
    header = re.search(r'"X-CSRFToken": "([^"]+)"', other).group(1)
    assert len(tokens) == 2 and set(tokens) == {header} and header not in earlier  # drawn for this request
    logout = client.post("/accounts/logout/", {"csrfmiddlewaretoken": tokens[0]})
    assert logout.status_code == 302 and "_auth_user_id" not in client.session


def test_percall_parts_are_drawn_each_time_and_plain_text_is_kept():
    template = Template(
        '{% load localcache %}{% localcache "t" on %}'
        "[{{ who }}|{% percall %}{{ who }}{% endpercall %}]{% endlocalcache %}"
    )
    assert template.render(Context({"on": True, "who": "a"})) == "[a|a]"
    assert template.render(Context({"on": True, "who": "<b>"})) == "[a|&lt;b&gt;]"  # kept text, own escaped part
    assert template.render(Context({"on": False, "who": "c"})) == "[c|c]"  # another flag: its own copy
    with pytest.raises(TemplateSyntaxError):
        Template("{% load localcache %}{% percall x %}{% endpercall %}")


def test_the_page_frame_is_kept_per_language_and_viewer_with_each_pages_own_blocks(client, buyer, other_buyer, staff):
    product = ProductFactory(name="Frame card")
    zh_home = page(buyer)
    assert any(k.startswith(localcache.FRAGMENT + "page:zh-hans:True:False:False") for k in localcache._store)
    zh_product = page(other_buyer, f"/p/{product.slug}/")  # the same frame, another page and viewer
    assert "Frame card" in zh_product.split("<title>")[1].split("</title>")[0]  # the page's own title block
    assert "Frame card" not in zh_home.split("</title>")[0] and buyer.email not in zh_product
    assert 'lang="zh-hans"' in zh_product and 'lang="en"' in page(buyer, lang="en")  # the language is in the key
    assert 'href="/admin/"' in nav(page(staff)) and 'href="/admin/"' not in nav(page(buyer))  # and the viewer's kind
    assert 'data-testid="nav-signup"' in page(None) and 'data-testid="nav-signup"' not in page(buyer)
    # Messages are each request's own: shown once, on the next page.
    client.force_login(buyer)
    client.get("/")
    request = RequestFactory().get("/")
    request.session = client.session
    request._messages = CookieStorage(request)
    messages.success(request, "<b>Saved</b> once")
    response = HttpResponse()
    request._messages.update(response)
    client.cookies["messages"] = response.cookies["messages"].value
    shown = client.get("/").content.decode()
    assert "&lt;b&gt;Saved&lt;/b&gt; once" in shown and 'class="alert alert-success' in shown
    assert "Saved" not in client.get("/").content.decode()


class Counter:
    def __init__(self):
        self.n = 0

    @property
    def next(self):
        self.n += 1
        return self.n


def test_parts_of_one_pure_source_are_drawn_once_per_call_and_others_each_time():
    template = Template(
        '{% load localcache %}{% localcache "dedupe" %}'
        "{% percall %}{{ c.next }}{% endpercall %}|{% percall %}{{ c.next }}{% endpercall %}|"
        "{% percall %}{% if c %}{{ c.next }}{% endif %}{% endpercall %}|{% percall %}{% csrf_token %}{% endpercall %}"
        "{% percall %}{% csrf_token %}{% endpercall %}{% endlocalcache %}"
    )
    counter = Counter()
    assert template.render(Context({"c": counter, "csrf_token": "t1"})) == (
        '1|1|2|<input type="hidden" name="csrfmiddlewaretoken" value="t1">'
        '<input type="hidden" name="csrfmiddlewaretoken" value="t1">'
    )
    assert template.render(Context({"c": counter, "csrf_token": "t2"})).startswith("3|3|4|")  # drawn again per call
    assert 'value="t2"><input' in template.render(Context({"c": counter, "csrf_token": "t2"}))


def test_a_fragment_inside_a_fragment_being_kept_keeps_its_percall_parts_per_call():
    template = Template(
        '{% load localcache %}{% localcache "outer" on %}<{% localcache "inner" on %}'
        "[{% percall %}{{ who }}{% endpercall %}]{% endlocalcache %}{{ who }}>{% endlocalcache %}"
    )
    assert template.render(Context({"on": True, "who": "a"})) == "<[a]a>"
    assert template.render(Context({"on": True, "who": "b"})) == "<[b]a>"  # the inner part is drawn per call
    assert any(k.startswith(localcache.FRAGMENT + "outer:") for k in localcache._store)
