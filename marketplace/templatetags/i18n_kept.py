"""Django's ``i18n`` library, with ``{% translate "literal" %}`` kept per language: registered
under the ``i18n`` label (``TEMPLATES["OPTIONS"]["libraries"]``), so ``{% load i18n %}`` loads
it; every other tag and filter is Django's own.

Django's ``{% translate "Text" %}`` builds a lazy translation, casts it, looks the active
language up through asgiref's ``Local`` and escapes the result on every render (about 12 µs;
a page has 20-40 of them). A literal's text depends only on the active translation and on
autoescaping, so the rendered text is kept on the node per language (``get_language()``: None
when translation is off, ``deactivate_all``, whose text is the message itself) and autoescape
flag, computed by Django's own ``render`` the first time. Kept texts are dropped when the
catalogues can change: a ``.mo`` file changed under the autoreloader, or the settings that
select catalogues (LANGUAGES, LANGUAGE_CODE, LOCALE_PATHS, INSTALLED_APPS) changed in a test.
Not kept: a variable or filtered message, ``noop``, ``context`` and ``as var``.
"""

import weakref

from django import template
from django.core.signals import setting_changed
from django.templatetags import i18n as django_i18n
from django.utils.autoreload import file_changed
from django.utils.translation import get_language, gettext

register = template.Library()
register.tags.update(django_i18n.register.tags)
register.filters.update(django_i18n.register.filters)

# Every node holding texts, to forget them (weakly: a reloaded template's old nodes go).
_kept_nodes: "weakref.WeakSet[KeptTranslateNode]" = weakref.WeakSet()


class KeptTranslateNode(django_i18n.TranslateNode):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        fe = self.filter_expression
        self.keep = (
            not self.noop
            and self.asvar is None
            and self.message_context is None
            and not fe.filters
            and getattr(fe.var, "literal", None) is not None
        )
        self.texts: dict[tuple[str | None, bool], str] = {}

    def render(self, context):
        if not self.keep:
            return super().render(context)
        key = (get_language(), context.autoescape)
        try:
            return self.texts[key]
        except KeyError:
            pass
        text = super().render(context)
        if not self.texts:
            _kept_nodes.add(self)
        self.texts[key] = text
        return text


def forget_texts() -> None:
    for node in list(_kept_nodes):
        node.texts.clear()
    _kept_nodes.clear()
    _tables.clear()


class Texts(dict):
    """One language's ``gettext`` of literal messages, each looked up the first time asked."""

    def __missing__(self, message: str) -> str:
        text = self[message] = gettext(message)
        return text


_tables: dict[str | None, Texts] = {}


def texts() -> Texts:
    """The active language's texts (``texts()["Total"]`` is ``gettext("Total")``), kept per
    process and forgotten with the templates' kept texts (above). For parts of a page drawn in
    Python with many fixed texts: one language look-up for them all, where each ``gettext`` looks
    the language up through asgiref's ``Local`` again (about 3 µs). Literal messages only: the
    table keeps every message it is asked for."""
    language = get_language()
    table = _tables.get(language)
    if table is None:
        table = _tables[language] = Texts()
    return table


@register.tag("translate")
@register.tag("trans")
def do_translate(parser, token):
    node = django_i18n.do_translate(parser, token)
    return KeptTranslateNode(node.filter_expression, node.noop, node.asvar, node.message_context)


def _mo_changed(sender, file_path, **kwargs) -> None:
    if file_path.suffix == ".mo":
        forget_texts()  # returns None: Django's own receiver decides about the reload


def _settings_changed(*, setting, **kwargs) -> None:
    if setting in {"LANGUAGES", "LANGUAGE_CODE", "LOCALE_PATHS", "INSTALLED_APPS"}:
        forget_texts()


file_changed.connect(_mo_changed, dispatch_uid="marketplace.i18n_kept.mo")
setting_changed.connect(_settings_changed, dispatch_uid="marketplace.i18n_kept.settings")
