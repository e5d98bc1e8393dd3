"""Direct top-ups (代充): the fields a product asks the buyer for, and the check of what they give.

A direct top-up product declares its fields in ``Product.topup_fields``, a list of::

    {"name": "account", "label": "游戏账号", "pattern": "^[0-9]{5,12}$", "min_length": 5,
     "max_length": 12, "confirm": true, "help": "登录游戏时使用的账号"}

``declaration_parse`` checks a declaration when staff save the product (admin): names are unique
slugs, patterns compile, lengths are sane, and a direct top-up has at least one field.
``topup_values_check`` checks what a buyer gives, with the same rules on every door (the
checkout page, a storefront, a guest's checkout, the agent API): required, trimmed, the lengths,
the pattern matched in full, and the confirmation equal to the value. It returns the values to
keep on the order (``Order.topup_values``) or raises ``TopupValuesError`` with a message per field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from marketplace.errors import ServiceError

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,29}$")
MAX_FIELDS = 8
MAX_LENGTH = 200  # no account, server or phone number is longer
LABEL_MAX = 40
HELP_MAX = 200
PATTERN_MAX = 300
KEYS = {"name", "label", "pattern", "min_length", "max_length", "confirm", "help"}
CONFIRM_SUFFIX = "__confirm"  # the form's name of a field's confirmation input


@dataclass(frozen=True)
class TopupField:
    name: str
    label: str
    pattern: str = ""
    min_length: int = 1
    max_length: int = 64
    confirm: bool = False
    help: str = ""

    @property
    def input_name(self) -> str:
        """The checkout form's input for this field (``topup_<name>``)."""
        return f"topup_{self.name}"

    @property
    def confirm_input_name(self) -> str:
        return f"topup_{self.name}{CONFIRM_SUFFIX}"

    @property
    def is_phone(self) -> bool:
        return self.name in ("phone", "mobile")


# Declarations staff can start from (the product admin's "preset" choice).
PRESETS: dict[str, tuple[Any, list[dict]]] = {
    "game_account_server": (
        gettext_lazy("Game account and server"),
        [
            {
                "name": "account",
                "label": "游戏账号",
                "pattern": r"^[A-Za-z0-9_@.\-]+$",
                "min_length": 4,
                "max_length": 40,
                "confirm": True,
                "help": "请填写登录游戏使用的账号，充值到账后无法撤回",
            },
            {
                "name": "server",
                "label": "区服",
                "pattern": "",
                "min_length": 1,
                "max_length": 40,
                "confirm": False,
                "help": "例如：电信一区",
            },
        ],
    ),
    "phone": (
        gettext_lazy("Mobile phone number (mainland China)"),
        [
            {
                "name": "phone",
                "label": "手机号码",
                "pattern": r"^1[3-9]\d{9}$",
                "min_length": 11,
                "max_length": 11,
                "confirm": True,
                "help": "11 位中国大陆手机号码",
            }
        ],
    ),
    "qq": (
        gettext_lazy("QQ number"),
        [
            {
                "name": "qq",
                "label": "QQ 号码",
                "pattern": r"^[1-9]\d{4,11}$",
                "min_length": 5,
                "max_length": 12,
                "confirm": True,
                "help": "",
            }
        ],
    ),
}


def preset_choices() -> list[tuple[str, Any]]:
    return [(key, label) for key, (label, _fields) in PRESETS.items()]


def preset_fields(key: str) -> list[dict]:
    return [dict(f) for f in PRESETS[key][1]]


def _int(value, *, where: str, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(_("%(field)s: %(what)s must be a whole number.") % {"field": where, "what": what})
    return value


def declaration_parse(raw) -> list[TopupField]:
    """A product's ``topup_fields`` as fields, or ``ValidationError`` (each message names the field)."""
    if raw in (None, ""):
        return []
    if not isinstance(raw, list):
        raise ValidationError(_("The top-up fields must be a list of fields."))
    if len(raw) > MAX_FIELDS:
        raise ValidationError(_("At most %(n)d top-up fields.") % {"n": MAX_FIELDS})
    fields: list[TopupField] = []
    seen: set[str] = set()
    for i, item in enumerate(raw, start=1):
        where = _("Field %(n)d") % {"n": i}
        if not isinstance(item, dict):
            raise ValidationError(_("%(field)s: each field is an object with a name and a label.") % {"field": where})
        unknown = sorted(set(item) - KEYS)
        if unknown:
            raise ValidationError(
                _("%(field)s: unknown key(s) %(keys)s.") % {"field": where, "keys": ", ".join(map(str, unknown))}
            )
        name = item.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ValidationError(
                _("%(field)s: the name must be 1-30 lower-case letters, digits or _, starting with a letter.")
                % {"field": where}
            )
        where = _("Field %(n)d (%(name)s)") % {"n": i, "name": name}
        if name in seen:
            raise ValidationError(_("%(field)s: the name is used twice.") % {"field": where})
        seen.add(name)
        label = item.get("label")
        if not isinstance(label, str) or not label.strip() or len(label.strip()) > LABEL_MAX:
            raise ValidationError(_("%(field)s: give a label of 1-40 characters.") % {"field": where})
        pattern = item.get("pattern") or ""
        if not isinstance(pattern, str) or len(pattern) > PATTERN_MAX:
            raise ValidationError(
                _("%(field)s: the pattern must be text of at most 300 characters.") % {"field": where}
            )
        if pattern:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValidationError(
                    _("%(field)s: the pattern is not a valid regular expression (%(error)s).")
                    % {"field": where, "error": exc}
                ) from None
        low = _int(item.get("min_length", 1), where=where, what="min_length")
        high = _int(item.get("max_length", 64), where=where, what="max_length")
        if not 1 <= low <= high <= MAX_LENGTH:
            raise ValidationError(
                _("%(field)s: the lengths must satisfy 1 ≤ min_length ≤ max_length ≤ %(max)d.")
                % {"field": where, "max": MAX_LENGTH}
            )
        confirm = item.get("confirm", False)
        if not isinstance(confirm, bool):
            raise ValidationError(_("%(field)s: confirm must be true or false.") % {"field": where})
        help_text = item.get("help") or ""
        if not isinstance(help_text, str) or len(help_text) > HELP_MAX:
            raise ValidationError(_("%(field)s: the help text must be at most 200 characters.") % {"field": where})
        fields.append(
            TopupField(
                name=name,
                label=label.strip(),
                pattern=pattern,
                min_length=low,
                max_length=high,
                confirm=confirm,
                help=help_text.strip(),
            )
        )
    return fields


def product_fields(product) -> list[TopupField]:
    """The fields ``product`` asks for (none unless it is a direct top-up). A declaration saved
    past the admin's check (a shell, a migration) that does not parse sells nothing: the caller
    gets ``ValidationError``, which ``topup_values_check`` turns into a refusal."""
    if not product.is_direct_topup:
        return []
    return declaration_parse(product.topup_fields)


class TopupValuesError(ServiceError):
    """What the buyer gave does not fit the product's fields: ``errors`` maps each field's name
    (or its confirmation's ``<name>__confirm``) to its message; the message is the first."""

    code = "topup_invalid"
    status = 422

    def __init__(self, errors: dict[str, str]):
        self.errors = errors
        # The API answers it with ``details`` per request field, as its other 4xx do.
        super().__init__(next(iter(errors.values())), details={f"topup.{k}": [v] for k, v in errors.items()})


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return "\x00"  # not text: fails every check below with the field's message
    return value.strip()


def value_error(spec: TopupField, value: str) -> str | None:
    """Why ``value`` (trimmed) does not fit ``spec``, in the buyer's words, or None."""
    if not value:
        return _("Enter %(label)s.") % {"label": spec.label}
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return _("%(label)s contains characters that are not allowed.") % {"label": spec.label}
    if len(value) < spec.min_length or len(value) > spec.max_length:
        if spec.min_length == spec.max_length:
            return _("%(label)s must be %(n)d characters.") % {"label": spec.label, "n": spec.min_length}
        return _("%(label)s must be %(low)d to %(high)d characters.") % {
            "label": spec.label,
            "low": spec.min_length,
            "high": spec.max_length,
        }
    if spec.pattern and re.fullmatch(spec.pattern, value) is None:
        return _("%(label)s is not in the right format.") % {"label": spec.label}
    return None


def topup_values_check(*, product, data) -> dict[str, str]:
    """The values a buyer gave for ``product``'s top-up fields, checked and trimmed: ``{name:
    value}`` (the confirmations are not kept), ``{}`` for a product that is not a direct top-up.

    ``data`` maps field names (``account``; or a form's ``topup_account``) to values, and each
    confirmation (``account__confirm`` / ``topup_account__confirm``) where the field asks for one.
    Raises ``TopupValuesError`` with a message per field that is missing or wrong."""
    if not product.is_direct_topup:
        return {}
    try:
        fields = product_fields(product)
    except ValidationError:
        fields = []
    if not fields:  # a top-up that asks nothing cannot be carried out
        raise TopupValuesError({"topup": _("This top-up product is not set up for sale yet.")})
    data = data if isinstance(data, dict) else {}

    def given(name: str):
        return data.get(name, data.get(f"topup_{name}"))

    values: dict[str, str] = {}
    errors: dict[str, str] = {}
    for spec in fields:
        value = _text(given(spec.name))
        why = value_error(spec, value)
        if why is not None:
            errors[spec.name] = why
            continue
        if spec.confirm:
            again = _text(given(spec.name + CONFIRM_SUFFIX))
            if again != value:
                errors[spec.name + CONFIRM_SUFFIX] = (
                    _("Enter %(label)s again: the two do not match.") % {"label": spec.label}
                    if again
                    else _("Enter %(label)s a second time to confirm it.") % {"label": spec.label}
                )
                continue
        values[spec.name] = value
    if errors:
        raise TopupValuesError(errors)
    return values


def value_masked(spec_name: str, value: str) -> str:
    """A phone number shown with its middle hidden (138****5678); anything else as given."""
    if spec_name in ("phone", "mobile") and len(value) == 11 and value.isdigit():
        return f"{value[:3]}****{value[-4:]}"
    return value


def values_display(product, values: dict) -> list[tuple[str, str, str]]:
    """``(name, label, value masked)`` of an order's top-up values, in the product's field order
    (a value whose field was since removed is shown under its name)."""
    values = dict(values or {})
    try:
        fields = declaration_parse(product.topup_fields) if product is not None else []
    except ValidationError:
        fields = []
    rows = []
    for spec in fields:
        if spec.name in values:
            rows.append((spec.name, spec.label, value_masked(spec.name, str(values.pop(spec.name)))))
    rows += [(name, name, value_masked(name, str(value))) for name, value in values.items()]
    return rows
