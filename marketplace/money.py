"""Money is Decimal with two places (CNY). Gateway units appear only at the gateway boundary."""

import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

CENT = Decimal("0.01")
CURRENCY = "CNY"


def quantize(value: Decimal | int | str) -> Decimal:
    """Round to the fen, half up. Floats are refused: they cannot carry money exactly."""
    if isinstance(value, float):
        raise TypeError("money must not be a float")
    try:
        return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)
    except InvalidOperation as exc:
        raise ValueError(f"not an amount: {value!r}") from exc


def parse_yuan(text: str) -> Decimal:
    """A gateway's yuan string ("88.00") to Decimal; refuses anything but a plain amount."""
    text = (text or "").strip()
    # ASCII digits only: str.isdigit() also accepts "²" and other scripts' digits.
    if not re.fullmatch(r"[0-9]{1,12}(\.[0-9]*)?|\.[0-9]+", text):
        raise ValueError(f"not an amount: {text!r}")
    amount = Decimal(text)
    if amount != amount.quantize(CENT):
        raise ValueError(f"more than two decimal places: {text!r}")
    return amount.quantize(CENT)


def yuan_str(amount: Decimal) -> str:
    """Alipay's unit: a yuan string with two places."""
    return f"{quantize(amount):.2f}"


def to_fen(amount: Decimal) -> int:
    """WeChat Pay's unit: integer fen."""
    return int(quantize(amount) * 100)


def from_fen(fen: int) -> Decimal:
    return quantize(Decimal(fen) / 100)


def split(amount: Decimal, parts: int) -> list[Decimal]:
    """``amount`` in ``parts`` shares to the fen: equal shares, the remainder on the last one.

    The shares sum to ``amount`` exactly (a coupon's discount over an order's codes)."""
    if parts < 1:
        raise ValueError("split into at least one part")
    fen = int(quantize(amount) * 100)
    base = fen // parts
    shares = [from_fen(base)] * (parts - 1)
    return [*shares, from_fen(fen - base * (parts - 1))]
