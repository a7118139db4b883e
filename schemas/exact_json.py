"""JSON whose numbers come back as they went: a Decimal is written as a JSON number and read back
as a Decimal.

pydantic's JSON mode writes a Decimal as a string. A typed field reads it back as the number it
was, but free-form JSON (the invoice document as the marketplace sent it) has no type to say so:
`"description": 2.5` went on the invoices topic as `"2.5"`, a text the rules took where `validate`
refuses the number, and a PO ledger read from its store held strings where the topic held numbers.
msgspec writes the Decimal's own digits (no float in between) and reads any number with a point
or an exponent as a Decimal; whole numbers stay ints of any size.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

_WRITER = msgspec.json.Encoder(decimal_format="number")
_READER = msgspec.json.Decoder(float_hook=Decimal)


def dump_exact(value: Any) -> bytes:
    """JSON text of plain values (dicts, lists, text, numbers, dates, enums as their values).
    Raises TypeError for anything else and UnicodeEncodeError for a lone surrogate."""
    return _WRITER.encode(value)


def load_exact(data: bytes | str) -> Any:
    """Raises ValueError (msgspec's DecodeError) for what is not JSON, NaN and Infinity included."""
    return _READER.decode(data)
