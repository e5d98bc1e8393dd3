"""Resident identity numbers (公民身份号码, GB 11643-1999) checked locally, before any provider is
asked: 18 characters, a real birth date in characters 7 to 14, and the ISO 7064 MOD 11-2 check
character. Shared by buyers' real-name verification and storefront operators' identities."""

import re
from dataclasses import dataclass
from datetime import date

from django.utils.translation import gettext as _

from marketplace.errors import ServiceError

# ISO 7064 MOD 11-2 as GB 11643-1999 applies it: weight of position i (1-based from the left,
# over the first 17) is 2^(18-i) mod 11; the check is (12 - sum mod 11) mod 11, 10 written "X".
ID_WEIGHTS = tuple(pow(2, 17 - i, 11) for i in range(17))
ID_CHECK_CHARS = "0123456789X"
_ID_RE = re.compile(r"^[1-9]\d{5}(\d{8})\d{3}[0-9X]$")


class IdNumberError(ServiceError):
    """An identity number refused by the local check; the message says which part is wrong."""

    code = "id_number_invalid"
    # A well-formed request whose number fails the check: unprocessable, like order_refused.
    status = 422


@dataclass(frozen=True)
class IdNumber:
    number: str  # 18 characters, a final x upper-cased
    birth_date: date

    @property
    def region(self) -> str:
        return self.number[:6]


def id_check_char(first17: str) -> str:
    """The GB 11643-1999 check character of a number's first 17 digits."""
    total = sum(int(digit) * weight for digit, weight in zip(first17, ID_WEIGHTS, strict=True))
    return ID_CHECK_CHARS[(12 - total % 11) % 11]


def id_number_validate(value: str, *, today: date | None = None) -> IdNumber:
    """The number without spaces, a final x upper-cased, with its birth date; or an IdNumberError
    naming what is wrong (length, characters, the birth date, the check character)."""
    number = re.sub(r"\s", "", value or "").upper()
    if len(number) != 18:
        raise IdNumberError(_("An identity card number has 18 characters (this has %(n)d).") % {"n": len(number)})
    match = _ID_RE.match(number)
    if not match:
        raise IdNumberError(
            _("An identity card number is 17 digits followed by a digit or X, and does not start with 0.")
        )
    digits = match.group(1)
    try:
        born = date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:
        raise IdNumberError(
            _("Characters 7 to 14 of an identity card number are a birth date; these are not one.")
        ) from None
    if born.year < 1900 or born > (today or date.today()):
        raise IdNumberError(_("Characters 7 to 14 of an identity card number are a birth date; these are not one."))
    if id_check_char(number[:17]) != number[17]:
        raise IdNumberError(
            _("The last character does not match the others: the number has a mistake. Copy it again from the card.")
        )
    return IdNumber(number=number, birth_date=born)


def age_on(birth_date: date, day: date) -> int:
    """Full years of age on ``day`` (someone born on 29 February turns a year older on 1 March)."""
    return day.year - birth_date.year - ((day.month, day.day) < (birth_date.month, birth_date.day))
