"""Random strings for numbers and codes people see (order and refund numbers, invitation,
coupon and guest codes): one helper, so every such string is drawn the same way.

``random_chars(n, alphabet)`` makes one ``secrets.randbelow(len(alphabet) ** n)`` draw and
spells the number in base ``len(alphabet)``, two characters at a time. Spelling is a
bijection between the numbers below ``len(alphabet) ** n`` and the strings of ``n``
characters of the alphabet, so every string is equally likely: the same distribution as
``n`` calls of ``secrets.choice`` (each an ``os.urandom`` read), for one read.
"""

import functools
import secrets


@functools.cache
def _pairs(alphabet: str) -> tuple[str, ...]:
    """Every pair of characters, in the order of a two-digit number in base ``len(alphabet)``."""
    return tuple(a + b for a in alphabet for b in alphabet)


def random_chars(n: int, alphabet: str) -> str:
    """``n`` characters of ``alphabet``, each uniform and independent (a CSPRNG draw)."""
    base = len(alphabet)
    if base < 2 or len(set(alphabet)) != base:
        # a repeated character would be drawn more often than the others
        raise ValueError("the alphabet needs at least two characters, each once")
    if n < 0:
        raise ValueError("n must not be negative")
    value = secrets.randbelow(base**n) if n else 0
    pairs = _pairs(alphabet)
    pair_base = base * base
    chars = []
    for _step in range(n // 2):
        value, pair = divmod(value, pair_base)
        chars.append(pairs[pair])
    if n % 2:
        chars.append(alphabet[value])  # what is left is one digit: value < base
    return "".join(chars)
