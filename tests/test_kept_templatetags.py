"""The builtins that replace Django's ``{% extends %}``, ``{% url %}`` and (as the ``i18n``
library) ``{% translate %}`` (marketplace/templatetags/kept.py, i18n_kept.py) render exactly
what Django's own render, while keeping what they look up."""

from datetime import UTC, date, datetime

import pytest
from django.template import Context, Engine, engines
from django.test import override_settings
from django.urls import NoReverseMatch, path, reverse, set_script_prefix
from django.utils import timezone, translation

from marketplace.templatetags import i18n_kept, kept


def _view(request, number=None):  # pragma: no cover (never called: only reversed)
    raise AssertionError


urlpatterns = [path("elsewhere/<str:number>/", _view, name="elsewhere")]

SOURCES = {
    "root.html": "<title>{% block title %}Root{% endblock %}</title>"
    "{% if x %}{% block body %}root body{% endblock %}{% endif %}"
    "{% for i in items %}{% block item %}[{{ i }}]{% endblock %}{% endfor %}{% block tail %}{% endblock %}",
    "middle.html": "{% extends 'root.html' %}{% block title %}Middle · {{ block.super }}{% endblock %}"
    "{% block body %}middle {{ block.super }}{% block inner %}inner{% endblock %}{% endblock %}",
    "leaf.html": "{% extends 'middle.html' %}{% block inner %}leaf {{ block.super }}{% endblock %}"
    "{% block item %}<{{ block.super }}>{% endblock %}",
    "direct.html": "{% extends 'root.html' %}{% block tail %}tail {{ x }}{% endblock %}",
    "dynamic.html": "{% extends parent %}{% block title %}Dyn {{ block.super }}{% endblock %}",
}


def _engines(sources: dict[str, str]) -> tuple[Engine, Engine]:
    """Django's engine and one with our builtins, both on the cached loader over ``sources``."""
    loaders = [("django.template.loaders.cached.Loader", [("django.template.loaders.locmem.Loader", sources)])]
    return Engine(loaders=loaders), Engine(loaders=loaders, builtins=["marketplace.templatetags.kept"])


@pytest.mark.parametrize("name", ["leaf.html", "middle.html", "direct.html", "root.html", "dynamic.html"])
def test_kept_extends_renders_as_django(name):
    django_engine, ours = _engines(dict(SOURCES))
    for x in (True, False):
        for parent in ("root.html", "middle.html"):
            values = {"x": x, "items": [1, 2], "parent": parent}
            expected = django_engine.get_template(name).render(Context(values))
            for _ in range(3):  # kept from the second render on
                assert ours.get_template(name).render(Context(values)) == expected
    if name != "root.html":
        assert type(ours.get_template(name).nodelist[0]) is kept.KeptExtendsNode


def test_kept_extends_follows_a_reloaded_parent():
    sources = dict(SOURCES)
    django_engine, ours = _engines(sources)
    assert "root body" in ours.get_template("leaf.html").render(Context({"x": True}))
    # A changed root, as Django's autoreloader sees it: the cached loaders are reset.
    sources["root.html"] = (
        "{% block title %}New{% endblock %}|{% block body %}new body{% endblock %}|{% block added %}added{% endblock %}"
    )
    for engine in (django_engine, ours):
        engine.template_loaders[0].reset()
    expected = django_engine.get_template("leaf.html").render(Context({"x": True}))
    assert "added" in expected and "Middle · New" in expected
    assert ours.get_template("leaf.html").render(Context({"x": True})) == expected


def test_the_project_engine_uses_the_kept_tags():
    template = engines["django"].from_string(
        "{% extends 'base.html' %}{% load i18n %}"
        "{% block content %}{% url 'orders:list' %}{% translate 'My orders' %}{% endblock %}"
    )
    extends = template.template.nodelist[0]
    assert type(extends) is kept.KeptExtendsNode
    kinds = {type(n) for n in extends.nodelist.get_nodes_by_type(object)}
    assert kept.KeptURLNode in kinds and i18n_kept.KeptTranslateNode in kinds


def test_kept_reverse_is_reverse():
    for name, args in [("orders:list", ()), ("orders:detail", ("ABC123",)), ("aftersales:ticket_new", ())]:
        for _ in range(2):
            assert kept.kept_reverse(name, args=args) == reverse(name, args=args)
    with pytest.raises(NoReverseMatch):
        kept.kept_reverse("orders:no-such-page")


def test_kept_reverse_follows_the_urlconf_and_the_script_prefix():
    assert kept.kept_reverse("orders:list") == reverse("orders:list")
    with override_settings(ROOT_URLCONF=__name__):
        assert kept.kept_reverse("elsewhere", args=["7"]) == "/elsewhere/7/"
        with pytest.raises(NoReverseMatch):
            kept.kept_reverse("orders:list")
    with pytest.raises(NoReverseMatch):
        kept.kept_reverse("elsewhere", args=["7"])
    set_script_prefix("/shop/")
    try:
        assert kept.kept_reverse("orders:list") == reverse("orders:list")
        assert kept.kept_reverse("orders:list").startswith("/shop/")
    finally:
        set_script_prefix("/")
    assert not kept.kept_reverse("orders:list").startswith("/shop/")


def test_kept_url_tag_as_django():
    django_engine = Engine(libraries={})
    ours = Engine(builtins=["marketplace.templatetags.kept"])
    source = "{% url 'orders:detail' n %}|{% url 'nothing-here' as gone %}[{{ gone }}]|{% url name n as u %}{{ u }}"
    values = {"n": "A&B", "name": "orders:detail"}
    expected = django_engine.from_string(source).render(Context(values))
    assert "&amp;" in expected or "A%26B" in expected
    for _ in range(2):
        assert ours.from_string(source).render(Context(values)) == expected
    with pytest.raises(NoReverseMatch):
        ours.from_string("{% url 'nothing-here' %}").render(Context())


TRANSLATED = (
    "{% load i18n %}{% translate 'My orders' %}|{% translate \"Tom & Jerry's\" %}|{% translate msg %}"
    "|{% translate 'My orders' as kept_var %}{{ kept_var }}|{% translate 'May' context 'month name' %}"
    "|{% translate 'My orders' noop %}|{% autoescape off %}{% translate \"Tom & Jerry's\" %}{% endautoescape %}"
)


def test_kept_translate_renders_as_django_in_both_languages():
    django_engine = Engine(libraries={"i18n": "django.templatetags.i18n"})
    ours = Engine(libraries={"i18n": "marketplace.templatetags.i18n_kept"})
    theirs_t, ours_t = django_engine.from_string(TRANSLATED), ours.from_string(TRANSLATED)
    seen = set()
    for language in ("zh-hans", "en", "zh-hans", "en", None):
        with translation.override(language):
            values = {"msg": "Log out"}
            expected = theirs_t.render(Context(values))
            assert ours_t.render(Context(values)) == expected
            assert ours_t.render(Context(values)) == expected  # kept
            seen.add(expected.split("|")[0])
    assert seen == {"我的订单", "My orders"}
    with translation.override("en"):
        assert ours_t.render(Context({})).split("|")[1] == "Tom & Jerry's"  # a template's literal is safe text


def test_kept_translate_forgets_when_the_catalogues_change(settings):
    ours = Engine(libraries={"i18n": "marketplace.templatetags.i18n_kept"})
    template = ours.from_string("{% load i18n %}{% translate 'My orders' %}")
    with translation.override("zh-hans"):
        assert template.render(Context()) == "我的订单"
    node = template.nodelist[-1]
    assert node.texts
    settings.LOCALE_PATHS = [*settings.LOCALE_PATHS]  # a change of the catalogues' settings
    assert not node.texts
    with translation.override("zh-hans"):
        assert template.render(Context()) == "我的订单"


DATE_SOURCE = (
    '{{ v|date:"Y-m-d H:i" }}|{{ v|date:"m-d H:i:s" }}|{{ v|date:"Y年m月d日" }}|{{ v|date:"N j, Y" }}'
    '|{{ v|date }}|{{ v|date:"SHORT_DATETIME_FORMAT" }}|{{ v|time:"H:i" }}|{{ v|time:"H:i:s" }}|{{ v|time }}'
    '|{{ v|date:"Y\\\\m" }}|{{ v|date:"{Y}" }}'
)


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),  # 11:04 in Shanghai
        datetime(2026, 12, 31, 23, 59, 59, tzinfo=UTC),
        datetime(999, 7, 8, 9, 10, 11),  # naive, a year of three digits
        date(2026, 3, 4),  # a date: Django's filter (time letters are refused there)
        None,
        "",
    ],
)
def test_date_and_time_filters_render_as_django(value):
    django_engine = Engine(libraries={})
    ours = Engine(builtins=["marketplace.templatetags.display"])
    source = DATE_SOURCE if not isinstance(value, date) or isinstance(value, datetime) else '{{ v|date:"Y-m-d" }}'
    for language in ("zh-hans", "en"):
        with translation.override(language):
            expected = django_engine.from_string(source).render(Context({"v": value}))
            assert ours.from_string(source).render(Context({"v": value})) == expected
    if isinstance(value, datetime) and value.tzinfo:
        with translation.override("en"):
            text = ours.from_string('{{ v|date:"Y-m-d H:i" }}').render(Context({"v": value}))
        assert text == timezone.localtime(value).strftime("%Y-%m-%d %H:%M")


def test_the_only_template_library_name_given_twice_is_the_replaced_i18n():
    """templates.W003 is silenced for the deliberate ``i18n`` replacement: the same comparison
    here (the installed templatetags modules against the engine's libraries) allows no other."""
    from collections import defaultdict

    from django.template import engines
    from django.template.backends.django import get_template_tag_modules

    libraries = defaultdict(set)
    for name, module in get_template_tag_modules():
        libraries[name].add(module)
    engine = engines["django"].engine
    for name, module in engine.libraries.items():
        libraries[name].add(module)
    given_twice = {name: paths for name, paths in libraries.items() if len(paths) > 1}
    assert given_twice == {"i18n": {"django.templatetags.i18n", "marketplace.templatetags.i18n_kept"}}
    assert engine.libraries["i18n"] == "marketplace.templatetags.i18n_kept"  # ours is the one loaded
