"""marketplace.randomness.random_chars: one draw, spelled in the alphabet, uniform."""

import itertools
import string
from collections import Counter

import pytest

from marketplace import randomness
from marketplace.randomness import random_chars


@pytest.mark.parametrize("n", [0, 1, 2, 3, 6, 17, 18])
@pytest.mark.parametrize("alphabet", [string.digits, string.ascii_uppercase + string.digits, "AB", "XYZ"])
def test_length_and_alphabet(n, alphabet):
    for _ in range(50):
        drawn = random_chars(n, alphabet)
        assert len(drawn) == n
        assert set(drawn) <= set(alphabet)


@pytest.mark.parametrize(("n", "alphabet"), [(1, "XYZ"), (2, "XYZ"), (3, "XYZ"), (4, "AB"), (3, "0123")])
def test_spelling_is_a_bijection(monkeypatch, n, alphabet):
    """Every number below len(alphabet)**n spells a different string, so every string of n
    characters is reached, each by exactly one draw: the draw's uniformity is the string's."""
    space = len(alphabet) ** n
    seen = set()
    for value in range(space):
        monkeypatch.setattr(randomness.secrets, "randbelow", lambda bound, value=value: value)
        seen.add(random_chars(n, alphabet))
    assert seen == {"".join(chars) for chars in itertools.product(alphabet, repeat=n)}


def test_draws_below_the_whole_space(monkeypatch):
    bounds = []

    def randbelow(bound):
        bounds.append(bound)
        return bound - 1

    monkeypatch.setattr(randomness.secrets, "randbelow", randbelow)
    assert random_chars(5, "XYZ") == "ZZZZZ"  # the largest number spells the last character five times
    assert bounds == [3**5]


def test_distribution_on_a_small_alphabet():
    """All 27 strings of three of "XYZ" come out about equally often, and each position's
    characters too (chi-squared well under the 0.1% critical value: 54.1 for 26 degrees
    of freedom, 13.8 for 2)."""
    draws = 27_000
    counts = Counter(random_chars(3, "XYZ") for _ in range(draws))
    assert len(counts) == 27
    expected = draws / 27
    assert sum((c - expected) ** 2 / expected for c in counts.values()) < 54.1
    for position in range(3):
        by_char = Counter(s[position] for s in counts.elements())
        expected = draws / 3
        assert sum((c - expected) ** 2 / expected for c in by_char.values()) < 13.8


@pytest.mark.parametrize("alphabet", ["", "A", "AAB"])
def test_refuses_an_alphabet_that_cannot_be_uniform(alphabet):
    with pytest.raises(ValueError):
        random_chars(4, alphabet)


def test_refuses_a_negative_length():
    with pytest.raises(ValueError):
        random_chars(-1, "AB")


def test_the_numbers_and_codes_keep_their_shape():
    """Every user of random_chars draws what it drew before: same length and alphabet."""
    import re

    from aftersales.models import new_ticket_number
    from marketing.services import coupons
    from orders.models import new_order_number
    from payments.models import new_recharge_number, new_refund_number

    upper = "[A-Z0-9]"
    shapes = {
        new_order_number: rf"\d{{10}}{upper}{{18}}",
        new_recharge_number: rf"R\d{{10}}{upper}{{17}}",
        new_refund_number: rf"F\d{{10}}{upper}{{17}}",
        new_ticket_number: rf"T\d{{6}}{upper}{{10}}",
        coupons._new_code: rf"[{coupons.CODE_ALPHABET}]{{{coupons.CODE_LENGTH}}}",
    }
    for make, shape in shapes.items():
        for _ in range(20):
            assert re.fullmatch(shape, make()), (make, shape)
