"""Currency precision and half-up rounding, as AP rounds on paper.

Minor units are ISO 4217's (the `iso4217` package's copy of the standard's current list: JPY 0,
USD and HUF 2, BHD 3, CLF 4), the units ERPs and payment files keep amounts in. CLDR's digits
(babel), used before, are the digits a currency is shown with, and rounded HUF, IDR and COP to
whole units: a HUF line of 2 x 15.25 came to 31. A code the list lacks (BGN, withdrawn when
Bulgaria took the euro, with its POs still open; CNH, the offshore yuan ERPs book in) or gives no
minor unit is rounded to hundredths, as before, and its amounts are not checked against a unit
nobody knows: the PO's currency, which Sampro keeps, decides whether it is the right one.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache

from iso4217 import Currency

HUNDREDTHS = Decimal("0.01")


@lru_cache(maxsize=512)
def iso_minor_unit(currency: str) -> Decimal | None:
    """ISO 4217's smallest amount of the currency, Decimal('0.01') for USD; None for a code its
    current list lacks or gives no minor unit (gold, XAU)."""
    try:
        exponent = Currency(currency.upper()).exponent
    except ValueError:
        return None
    return None if exponent is None else Decimal(1).scaleb(-exponent)


def minor_unit(currency: str) -> Decimal:
    """The unit amounts of the currency are rounded to: ISO 4217's, else hundredths."""
    return iso_minor_unit(currency) or HUNDREDTHS


def round_money(amount: Decimal, currency: str) -> Decimal:
    return amount.quantize(minor_unit(currency), rounding=ROUND_HALF_UP)
