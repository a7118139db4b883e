"""How much a vendor's invoice may hold: what Sampro's columns can store and what a person can read.

Every limit is checked where data comes in, before any arithmetic: a violation is an
INVALID_INVOICE finding naming the field and the limit (see `rules.parsing`), or, for text that
cannot even be read as JSON within these bounds, a `DataError` that dead-letters the record.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any

from rules.errors import DataError
from rules.models import PurchaseOrder


@dataclass(frozen=True, slots=True)
class Limits:
    max_lines: int = 1000
    # Freight, fuel, handling, insurance, duty: an invoice has a few. 7,500 freight charges of 0.01
    # fitted in a row under max_json_bytes; each a finding, the verdict was 1.7 MB, the API's answer
    # for it 4.5 MB, and a clerk had 38 releases to make.
    max_charges: int = 50
    max_identifier_length: int = 64  # ids, numbers, part numbers: Sampro's varchar(64)
    max_text_length: int = 400  # a line's description
    # Sampro keeps money and quantities as numeric(18, 4): 14 digits before the point, 4 after.
    max_integer_digits: int = 14
    max_fraction_digits: int = 4
    max_json_bytes: int = 256_000  # one marketplace row or record: 1,000 lines fit in a quarter of it
    max_json_depth: int = 8  # an invoice is 4 deep (invoice, lines, line, value); leave room, refuse abuse


def control_character(text: str, allow_layout: bool = False) -> str | None:
    """The first control character in the text (CR, LF, NUL, ...), as U+XXXX; None when clean. A
    lone surrogate (a JSON `\\ud800` with no pair) counts: no UTF-8 can carry it, so the verdict
    naming it could not be written to its topic, and the invoice ended unjudged."""
    if text.isprintable():  # no Cc, no line or paragraph separator: the common case, without a scan
        return None
    for character in text:
        if allow_layout and character in "\t\n\r":
            continue
        if unicodedata.category(character) in ("Cc", "Cs") or character in "\u2028\u2029":
            return f"U+{ord(character):04X}"
    return None


# Bidi embeddings, overrides and isolates: each reorders the characters after it and shows nothing.
_REORDERING = re.compile("[\u202a-\u202e\u2066-\u2069]")


def reordering_character(text: str) -> str | None:
    """The first bidi control in the text that reorders what follows it, as U+XXXX; None when it has
    none. In an identifier it shows nothing itself: "INV-\u202e877" read as INV-778 beside an
    invoice already paid. Marks that reorder nothing (a soft hyphen from a PDF, the LRM a
    right-to-left keyboard leaves after a number, the ZWNJ Persian needs) are no reason to refuse."""
    found = _REORDERING.search(text)
    return None if found is None else f"U+{ord(found.group()):04X}"


def decimal_problem(value: Decimal, limits: Limits) -> str | None:
    """Why Sampro could not store the number exactly; None when it can."""
    if not value.is_finite():
        return "is not a finite number"
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    if not any(digits):  # any zero: an invoice's is made a plain 0 as it is read (`rules.models`)
        return None
    # "2.50000" carries no more than "2.5". Counted, not cut one at a time: a copy of the digits per
    # zero took 517 s on a record of two 250,000-zero numbers, past Kafka's poll interval.
    zeros = min(-exponent, len(digits) - len(bytes(digits).rstrip(b"\0"))) if exponent < 0 else 0
    exponent += zeros
    fraction = max(0, -exponent)
    if fraction > limits.max_fraction_digits:
        return f"has {fraction} digits after the point; Sampro keeps {limits.max_fraction_digits}"
    integer = len(digits) - zeros + exponent
    if integer > limits.max_integer_digits:
        return f"has {integer} digits before the point; Sampro keeps {limits.max_integer_digits}"
    if exponent > 0:  # "1E+1": the bot keyed what it was given
        return f"is written with an exponent; write it out ({value:f})"
    return None


PO_LINE_NUMBERS = ("unit_price", "quantity_ordered", "quantity_received", "quantity_invoiced")


def purchase_order_problem(po: PurchaseOrder, limits: Limits = Limits()) -> str | None:
    """Why a PO snapshot cannot be matched against, wherever it came from (Sampro's rows, a file
    given to `validate`): a number below zero (a negative quantity invoiced widened what is open, a
    negative price passed every price check), one no ERP keeps (1e999999999 overflowed the
    matching, a line 2**31 the topics' int), or a line number twice (the matching keys what is open
    by line number: one line's open quantity went on the other, or, a header row read twice, every
    quantity went in twice)."""
    numbers = [("tax_rate", po.tax_rate)]
    numbers += [(f"line {line.line_no}: {column}", getattr(line, column)) for line in po.lines
                for column in PO_LINE_NUMBERS]
    for where, value in numbers:
        if value is None:
            continue
        if value < 0:
            return f"{where} {value} is below zero"
        if value and not -20 < value.adjusted() < limits.max_integer_digits:
            return f"{where} {value} is not a number Sampro keeps (at most {limits.max_integer_digits} digits)"
    seen: set[int] = set()
    for line in po.lines:
        if not -(2**31) <= line.line_no < 2**31:  # Sampro's INT, and the topics' Avro int
            return f"line {line.line_no} is not a line number Sampro keeps"
        if line.line_no in seen:
            return f"line {line.line_no} appears more than once"
        seen.add(line.line_no)
    return None


def plainly_storable(numbers: Iterable[Decimal], limits: Limits) -> bool:
    """True when every number surely fits numeric(18, 4), read off their text in one match:
    `as_tuple` on each costs several times more, and every number of every invoice is checked.
    False only means "look closer" (`decimal_problem`): not finite, exponent notation, too many
    digits before the point, or too many after it once trailing zeros are dropped."""
    return _plain_numbers(limits.max_integer_digits, limits.max_fraction_digits).fullmatch(
        ",".join(map(str, numbers))) is not None


@lru_cache(maxsize=16)
def _plain_numbers(integer_digits: int, fraction_digits: int) -> re.Pattern[str]:
    if integer_digits < 1 or fraction_digits < 0:
        return re.compile("(?!)")  # limits this odd are left to `decimal_problem`
    # str(Decimal) never writes leading zeros, so the digits before the point are the integer digits.
    # Atomic: "1.000" matches its fraction's zeros in several ways, and a number that failed after
    # them tried each way of each number before it (8 lines, 52 s; 10, past Kafka's poll interval).
    number = rf"(?>-?\d{{1,{integer_digits}}}(?:\.\d{{0,{fraction_digits}}}0*)?)"
    return re.compile(rf"(?:{number}(?:,{number})*)?")


def not_json(constant: str) -> Any:
    """For json.loads' `parse_constant`: `NaN` and `Infinity`, which Python reads and no JSON
    standard allows. Read as floats, the rules named them, but they were written back as null, and
    a replay judged another invoice; read as text, `"invoice_number": NaN` went to Sampro as "NaN"."""
    raise ValueError(f"{constant} is not JSON")


def json_size_problem(size: int, limits: Limits) -> str | None:
    """Why JSON text of that length is not read; None when it is within the limit."""
    if size > limits.max_json_bytes:
        return f"{size:,} bytes of JSON; at most {limits.max_json_bytes:,}"
    return None


def load_json(text: str | bytes, limits: Limits, what: str) -> Any:
    """JSON text within the size and nesting limits; numbers with a point stay exact Decimals."""
    if (problem := json_size_problem(len(text), limits)) is not None:
        raise DataError(f"{what}: {problem}")
    try:
        # Bytes as strict UTF-8 (a BOM allowed, as json.loads allows it): json.loads lets an
        # encoded lone surrogate through from bytes.
        value = json.loads(text.decode("utf-8-sig") if isinstance(text, bytes) else text, parse_float=Decimal,
                           parse_constant=not_json)
    except RecursionError:
        raise DataError(f"{what}: JSON nested deeper than {limits.max_json_depth} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise DataError(f"{what}: not JSON ({exc})") from None
    if _depth_over(value, limits.max_json_depth):
        raise DataError(f"{what}: JSON nested deeper than {limits.max_json_depth} levels")
    if (where := lone_surrogate(text, value)) is not None:
        raise DataError(f"{what}: {where} holds a lone surrogate (a \\uD800-\\uDFFF escape without its pair), "
                        "which no text can carry")
    return value


_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]|[\ud800-\udfff]")  # escaped, or one a decoder let through


def lone_surrogate(text: str | bytes, value: Any) -> str | None:
    """Where JSON text's `\\ud800`-style escape without its pair landed in the value read from it,
    as `lines[1].part_number`; None when it has none. No UTF-8 can carry such a character: the
    verdict and the audit naming it could not be written, and the invoice ended unjudged. The
    value is walked only when the text has such an escape at all."""
    if not _SURROGATE.search(text if isinstance(text, str) else text.decode("utf-8", "replace")):
        return None
    pending: list[tuple[str, Any]] = [("", value)]
    while pending:
        path, item = pending.pop()
        if isinstance(item, str):
            if not item.isprintable() and any("\ud800" <= c <= "\udfff" for c in item):
                return path or "the value"
        elif isinstance(item, dict):
            pending += [(f"{path}.{key}" if path else str(key), child) for key, child in item.items()]
            pending += [(f"{path} (a key)" if path else "a key", key) for key in item]
        elif isinstance(item, list):
            pending += [(f"{path}[{index}]", child) for index, child in enumerate(item, 1)]
    return None


def _depth_over(value: Any, limit: int) -> bool:
    """A level of containers at a time, the scalars left behind at once: one stack entry per value
    took twice as long as parsing the JSON (a 10-line invoice's lines, 37 against 20 us)."""
    level = [value] if type(value) is dict or type(value) is list else []  # as json.loads makes them
    depth = 1
    while level:
        if depth > limit:
            return True
        nested: list[Any] = []
        for item in level:
            nested += [child for child in (item.values() if type(item) is dict else item)
                       if type(child) is dict or type(child) is list]
        level, depth = nested, depth + 1
    return False
