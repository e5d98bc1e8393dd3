"""GB 11643-1999 identity numbers: the check character on known-good and known-bad numbers,
the birth date, and the age it gives."""

from datetime import date

import pytest

from compliance.identity import IdNumberError, age_on, id_check_char, id_number_validate

# The refusals are compared in English; the UI speaks zh-hans by default.
pytestmark = pytest.mark.usefixtures("english")

# Published sample numbers whose check characters are correct (GB 11643-1999's own example,
# 11010519491231002X, ends in X).
GOOD = ["11010519491231002X", "110101199003074514", "440524199001010018", "310104200807150027"]


@pytest.mark.parametrize("number", GOOD)
def test_known_good_numbers_pass(number):
    checked = id_number_validate(number, today=date(2026, 12, 4))
    assert checked.number == number
    assert id_check_char(number[:17]) == number[17]


def test_lower_case_x_and_spaces_are_accepted():
    assert id_number_validate(" 110105 19491231 002x ").number == "11010519491231002X"
    assert id_number_validate("11010519491231002X").birth_date == date(1949, 12, 31)


@pytest.mark.parametrize(
    ("number", "why"),
    [
        ("110105194912310021", "does not match"),  # one check character off
        ("110101199003074515", "does not match"),
        ("11010519491231002", "18 characters"),
        ("1101051949123100211", "18 characters"),
        ("11010519491231002Y", "17 digits"),
        ("01010519491231002X", "17 digits"),
        ("110105194902300020", "birth date"),  # 30 February
        ("11010520300101001X", "birth date"),  # born in the future
    ],
)
def test_known_bad_numbers_say_why(number, why):
    with pytest.raises(IdNumberError) as refused:
        id_number_validate(number, today=date(2026, 12, 4))
    assert why in str(refused.value)


def test_any_single_wrong_digit_is_caught():
    """MOD 11-2 catches every single-digit mistake: no other digit in any place keeps the check."""
    base = "11010519491231002"
    for position in range(17):
        for digit in "0123456789":
            if digit != base[position]:
                changed = base[:position] + digit + base[position + 1 :]
                assert id_check_char(changed) != "X", changed


def test_age_counts_full_years():
    born = date(2011, 6, 15)
    assert age_on(born, date(2026, 6, 14)) == 14
    assert age_on(born, date(2026, 6, 15)) == 15
    assert age_on(date(2008, 2, 29), date(2026, 2, 28)) == 17
    assert age_on(date(2008, 2, 29), date(2026, 3, 1)) == 18
