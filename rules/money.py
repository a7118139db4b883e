"""Currency precision and half-up rounding, as AP rounds on paper.

Minor units come from babel's CLDR data (JPY 0, USD 2, BHD 3) instead of a hand-kept table.
CLDR gives the digits currencies are used with, which for some differ from ISO 4217's minor
unit (HUF, IDR and COP 0 where ISO says 2, IQD 0 for 3): amounts of those are rounded to whole
units here.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache

from babel.numbers import get_currency_precision


@lru_cache(maxsize=512)
def minor_unit(currency: str) -> Decimal:
    """The smallest amount of the currency as an exponent: Decimal('0.01') for USD."""
    return Decimal(1).scaleb(-get_currency_precision(currency.upper()))


def round_money(amount: Decimal, currency: str) -> Decimal:
    return amount.quantize(minor_unit(currency), rounding=ROUND_HALF_UP)
