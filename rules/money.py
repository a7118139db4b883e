"""Currency precision and half-up rounding, as AP rounds on paper.

Minor units are ISO 4217's (the `iso4217` package's copy of the standard's list: JPY 0, USD and
HUF 2, BHD 3, CLF 4), the units ERPs and payment files keep amounts in. CLDR's digits (babel),
used before, are the digits a currency is shown with, and round HUF, IDR and COP to whole units:
a HUF line of 2 x 15.25 came to 31.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache

from iso4217 import Currency


class UnknownCurrency(LookupError):
    """A code ISO 4217 does not list, or one without a minor unit (gold, XAU; no currency, XXX)."""


@lru_cache(maxsize=512)
def minor_unit(currency: str) -> Decimal:
    """The smallest amount of the currency: Decimal('0.01') for USD. Raises UnknownCurrency."""
    try:
        exponent = Currency(currency.upper()).exponent
    except ValueError:
        raise UnknownCurrency(f"{currency!r} is not an ISO 4217 currency code") from None
    if exponent is None:
        raise UnknownCurrency(f"{currency.upper()} has no minor unit in ISO 4217: no invoice is paid in it")
    return Decimal(1).scaleb(-exponent)


def round_money(amount: Decimal, currency: str) -> Decimal:
    return amount.quantize(minor_unit(currency), rounding=ROUND_HALF_UP)
