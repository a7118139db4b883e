"""The hot path's shortcuts answer exactly as the long way does: a shortcut may only say "fine"
where the full check finds nothing."""

from __future__ import annotations

import unicodedata
from decimal import Decimal

from hypothesis import example, given, settings
from hypothesis import strategies as st

from rules.limits import Limits, control_character, decimal_problem, plainly_storable

LIMITS = (Limits(), Limits(max_integer_digits=3, max_fraction_digits=0), Limits(max_integer_digits=0))

decimals = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True),
    st.decimals(min_value=Decimal("-1e16"), max_value=Decimal("1e16"), places=6),
    st.builds(lambda digits, exponent: Decimal(f"{digits}E{exponent}"), st.integers(-10**20, 10**20),
              st.integers(-30, 30)),
)


@given(st.lists(decimals, max_size=5))
@settings(max_examples=1000)
@example([Decimal("0E+20"), Decimal("100.00000"), Decimal("-0.00001")])
@example([Decimal("99999999999999.99990"), Decimal("1E+13"), Decimal("1.0E+14")])
def test_plainly_storable_only_where_no_number_has_a_problem(numbers):
    assert plainly_storable([Decimal("15.50"), Decimal("-3"), Decimal("0.1250")], Limits())
    for limits in LIMITS:
        if plainly_storable(numbers, limits):
            assert all(decimal_problem(number, limits) is None for number in numbers)


@given(st.text(max_size=12))
@example("a\u2028b")
@example("tab\there")
@example("\x85")
def test_control_character_is_the_same_as_the_scan(text):
    for allow_layout in (False, True):
        scanned = next((f"U+{ord(c):04X}" for c in text
                        if not (allow_layout and c in "\t\n\r")
                        and (unicodedata.category(c) == "Cc" or c in "\u2028\u2029")), None)
        assert control_character(text, allow_layout) == scanned
