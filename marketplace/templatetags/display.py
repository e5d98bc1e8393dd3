"""How amounts and order numbers are shown to people: one filter each, built into every template.

``{{ amount|money }}`` gives ``¥5,612.76`` (``−¥12.30`` below zero) and
``{{ amount|money:"plain" }}`` the same without the currency sign, for a template that styles
the ``¥`` itself or puts it in a translated sentence. ``{{ order.number|order_no }}`` shows a
number in groups of four so a person can read it out to support: the groups are spans set
apart by CSS, so a copied number has no spaces in it (``|order_no:"text"`` where HTML cannot
go, such as a page title); support's search accepts it either way.
"""

from datetime import datetime
from decimal import Decimal, InvalidOperation
from html import escape as html_escape

from django import template
from django.conf import settings
from django.template.base import render_value_in_context
from django.template.defaultfilters import date as django_date
from django.template.defaultfilters import time as django_time
from django.utils.formats import get_format
from django.utils.html import conditional_escape
from django.utils.safestring import mark_safe
from django.utils.timezone import template_localtime

from marketplace.money import quantize

register = template.Library()

MINUS = "-"  # ASCII, so an amount copied into a spreadsheet stays a number


def money_format(value, arg: str = "") -> str:
    """An amount, rounded half up to the fen, grouped in thousands, with the locale's decimal mark."""
    if value is None or value == "":
        return "—"
    if isinstance(value, float):
        value = Decimal(str(value))
    try:
        amount = quantize(value)
    except (TypeError, ValueError, InvalidOperation):
        return str(value)
    text = f"{abs(amount):,.2f}"
    decimal_mark = get_format("DECIMAL_SEPARATOR")
    if decimal_mark != ".":
        text = text.replace(".", decimal_mark)
    sign = MINUS if amount < 0 else ""
    symbol = "" if arg == "plain" else "¥"
    return f"{sign}{symbol}{text}"


@register.filter(is_safe=True)
def money(value, arg: str = "") -> str:
    return money_format(value, arg)


def order_no_format(number) -> str:
    """``2612031508ABCD…`` → ``2612 0315 08AB CD…``: groups of four, as on a bank card."""
    text = str(number or "")
    return " ".join(text[i : i + 4] for i in range(0, len(text), 4))


def order_no_parse(text: str) -> str:
    """What a person typed or copied (grouped, lower case, with dashes) back to the stored number."""
    return "".join(ch for ch in (text or "") if ch.isalnum()).upper()


@register.filter
def order_no(value, arg: str = ""):
    """The HTML ``format_html`` would build (each group escaped), built directly: the order pages
    show the number three times and the lists once a row."""
    if arg == "text":
        return order_no_format(value)
    groups = [html_escape(g) for g in order_no_format(value).split()]
    spans = "".join(f"<span>{g}</span>" for g in groups)
    return mark_safe(f'<span class="order-no" title="{"".join(groups)}">{spans}</span>')  # noqa: S308 (escaped)


# ``|date`` and ``|time`` with a format of digits only (``"Y-m-d H:i"``, ``"m-d H:i:s"``, ``"H:i"``):
# the same text in every language, drawn by ``str.format`` (about 1.5 µs) instead of Django's
# ``DateFormat`` (about 20 µs: the localised format lookup, then a method call per letter). Any
# other format, a named one (``"SHORT_DATE_FORMAT"``), none, or a value that is not a datetime
# goes to Django's filter. The value is already in the current time zone (``expects_localtime``).
DIGITS = {
    "Y": "{0.year:04d}",
    "m": "{0.month:02d}",
    "d": "{0.day:02d}",
    "H": "{0.hour:02d}",
    "i": "{0.minute:02d}",
    "s": "{0.second:02d}",
}
TIME_LETTERS = frozenset("His")
_patterns: dict[tuple[str, bool], str | None] = {}


def digits_pattern(fmt, *, time_only: bool = False) -> str | None:
    """A ``str.format`` pattern equal to Django's date format ``fmt`` when ``fmt`` is made of the
    letters Y m d H i s (H i s only for ``|time``) and characters that are not letters (no
    backslash escapes); else None."""
    key = (fmt, time_only)
    if key in _patterns:
        return _patterns[key]
    pattern = None
    letters = TIME_LETTERS if time_only else DIGITS.keys()
    if isinstance(fmt, str) and fmt and "\\" not in fmt and all(c in letters or not c.isalpha() for c in fmt):
        pattern = "".join(DIGITS.get(c) or c.replace("{", "{{").replace("}", "}}") for c in fmt)
    if len(_patterns) < 256:  # formats come from templates: a handful
        _patterns[key] = pattern
    return pattern


@register.filter(expects_localtime=True, is_safe=False)
def date(value, arg=None):
    if type(value) is datetime and (pattern := digits_pattern(arg)) is not None:
        return pattern.format(value)
    return django_date(value, arg)


@register.filter(expects_localtime=True, is_safe=False)
def time(value, arg=None):
    if type(value) is datetime and (pattern := digits_pattern(arg, time_only=True)) is not None:
        return pattern.format(value)
    return django_time(value, arg)


def value_in_context(value, context) -> str:
    """``{{ value }}`` for a part of a page drawn in Python: Django's ``render_value_in_context``,
    which for a plain ``str`` (no local time, no localisation) is its escaping alone, and for an
    ``int`` without thousands grouping its digits (Django's ``number_format`` gives ``str(n)``
    then, after three format lookups in the active language). Anything else goes through it."""
    kind = type(value)
    if kind is str:
        return conditional_escape(value) if context.autoescape else value
    if kind is int and not settings.USE_THOUSAND_SEPARATOR:
        return str(value)
    return render_value_in_context(value, context)


def date_in_context(value, fmt: str, context) -> str:
    """``{{ value|date:fmt }}`` for a part of a page drawn in Python: the value in the template's
    time zone (as the filter's ``expects_localtime``), escaped as ``{{ }}`` escapes it."""
    return value_in_context(date(template_localtime(value, context.use_tz), fmt), context)
