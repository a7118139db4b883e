"""Reading an invoice as the marketplace sent it: contract problems become findings, never exceptions."""

from __future__ import annotations

import reprlib
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from rules.identifiers import identifier_key
from rules.limits import Limits, control_character, decimal_problem, plainly_storable, reordering_character
from rules.models import Finding, Invoice, Severity, trusted
from rules.money import iso_minor_unit

INVALID_INVOICE = "INVALID_INVOICE"
# What a source puts for a JSON column (lines, extra_charges) it cannot read, followed by why.
UNREADABLE_COLUMN = "unreadable: "


def field_path(loc: tuple[Any, ...]) -> str:
    """('lines', 0, 'quantity') -> 'lines[1].quantity' (line positions counted from 1, as AP reads them)."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part + 1}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "invoice"


_SHOWN = reprlib.Repr()  # Python 3.11 takes no settings in the constructor
_SHOWN.maxlevel, _SHOWN.maxstring, _SHOWN.maxother, _SHOWN.maxlist, _SHOWN.maxdict = 3, 80, 80, 6, 6


def writable(text: str) -> str:
    """The text with any lone surrogate (a JSON `\\ud800` without its pair) escaped: no UTF-8 can
    carry one, and a verdict naming it could not be written, so the invoice ended unjudged."""
    return text if text.isprintable() else text.encode("utf-8", "backslashreplace").decode("utf-8")


def _shown(value: Any) -> str | None:
    """The value as a finding shows it: short, whatever a vendor sent (a 1 MB string, deep lists)."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value) if isinstance(value, int | Decimal) else _SHOWN.repr(value)
    return writable(text if len(text) <= 80 else text[:77] + "...")


def _invalid(field: str, actual: Any, message: str, line_no: int | None = None) -> Finding:
    return trusted(Finding, {  # every value is a str, an int or None already
        "code": INVALID_INVOICE,
        "severity": Severity.ERROR,
        "line_no": line_no,
        "field": field,
        "expected": None,
        "actual": _shown(actual),
        "message": message,
    })


IDENTIFIERS = ("invoice_id", "vendor_id", "invoice_number", "po_number", "currency")


def _blank(text: str) -> bool:
    """Nothing but characters that show nothing, as identifiers are compared (a Hangul filler
    alone went to the bot as the vendor's invoice number, beside every other number of fillers)."""
    return not text.strip() or (not text.isascii() and not identifier_key(text))


def _business_contract(invoice: Invoice, limits: Limits) -> list[Finding]:
    """What the types allow but the contract does not: nothing is invoiced for free or backwards,
    nothing is named by blanks (a number of spaces went to the bot as an empty invoice number,
    which no duplicate check can compare), and no line comes to more than Sampro keeps."""
    problems = [_invalid(name, getattr(invoice, name), f"{name} is blank.")
                for name in IDENTIFIERS if _blank(getattr(invoice, name))]
    numbered: set[int] = set()
    for index, line in enumerate(invoice.lines, start=1):
        # A hold and a payload line name an invoice line by its number: two lines numbered 1 showed
        # the clerk line 1 at its right price for a hold on the other one, and the bot two line 1s.
        if line.line_no < 1 or line.line_no in numbered:
            problems.append(_invalid(f"lines[{index}].line_no", line.line_no,
                                     f"Line {line.line_no}: " + ("line numbers start at 1." if line.line_no < 1
                                                                 else "another line has this number.")))
        numbered.add(line.line_no)
        if _blank(line.part_number):
            problems.append(_invalid(f"lines[{index}].part_number", line.part_number,
                                     f"Line {line.line_no}: part number is blank.", line.line_no))
        # Each fits numeric(18, 4); their product, 28 digits and more, overflowed the rules' arithmetic.
        if (line.quantity * line.unit_price).adjusted() >= limits.max_integer_digits:
            problems.append(_invalid(f"lines[{index}].quantity", line.quantity,
                                     f"Line {line.line_no}: {line.quantity} x {line.unit_price} is more than "
                                     f"Sampro keeps ({limits.max_integer_digits} digits).", line.line_no))
        if line.quantity <= 0:
            problems.append(_invalid(f"lines[{index}].quantity", line.quantity,
                                     f"Line {line.line_no}: quantity must be above zero.", line.line_no))
        if line.unit_price < 0:
            problems.append(_invalid(f"lines[{index}].unit_price", line.unit_price,
                                     f"Line {line.line_no}: unit price is negative.", line.line_no))
        if line.amount is not None and line.amount < 0:
            problems.append(_invalid(f"lines[{index}].amount", line.amount,
                                     f"Line {line.line_no}: amount is negative.", line.line_no))
    if invoice.tax_amount < 0:
        problems.append(_invalid("tax_amount", invoice.tax_amount, "Tax amount is negative."))
    if invoice.currency.strip():  # a blank one is named above
        problems += _in_the_currencys_units(invoice)
    for index, charge in enumerate(invoice.extra_charges, start=1):
        if _blank(charge.kind):
            problems.append(_invalid(f"extra_charges[{index}].kind", charge.kind, "A charge's kind is blank."))
        if charge.amount < 0:
            problems.append(
                _invalid(f"extra_charges[{index}].amount", charge.amount, f"Charge '{charge.kind}' is negative.")
            )
    return problems


def _plainly_within(invoice: Invoice, limits: Limits) -> bool:
    """True when nothing in the invoice comes near a limit: the check every invoice passes, made
    without building the list of fields `_within_limits` needs to name a problem."""
    lines, charges = invoice.lines, invoice.extra_charges
    if len(lines) > limits.max_lines or len(charges) > limits.max_charges:
        return False
    identifiers = [invoice.invoice_id, invoice.vendor_id, invoice.invoice_number, invoice.po_number, invoice.currency]
    identifiers += [line.part_number for line in lines]
    identifiers += [charge.kind for charge in charges]
    if max(map(len, identifiers)) > limits.max_identifier_length or not "".join(identifiers).isprintable():
        return False
    descriptions = [line.description for line in lines if line.description is not None]
    if descriptions and (max(map(len, descriptions)) > limits.max_text_length
                         or not "".join(descriptions).isprintable()):
        return False  # a tab or a newline in a description is allowed: `_within_limits` looks closer
    numbers = [invoice.tax_amount, invoice.total_amount]
    numbers += [line.quantity for line in lines]
    numbers += [line.unit_price for line in lines]
    numbers += [line.amount for line in lines if line.amount is not None]
    numbers += [charge.amount for charge in charges]
    return plainly_storable(numbers, limits)


def _in_the_currencys_units(invoice: Invoice) -> list[Finding]:
    """Money in its currency's smallest unit, as the ERP and the payment run keep it: 57.255 USD
    went to the bot as the total, a difference for AP to chase at payment (31.000 is 31.00). Unit
    prices may be finer: 0.0125 USD a screw is a price, not an amount. A currency without an ISO
    4217 unit is not checked (see `rules.money`)."""
    unit = iso_minor_unit(invoice.currency)
    if unit is None:
        return []
    amounts: list[tuple[str, Decimal, int | None]] = [("tax_amount", invoice.tax_amount, None),
                                                      ("total_amount", invoice.total_amount, None)]
    amounts += [(f"lines[{index}].amount", line.amount, line.line_no)
                for index, line in enumerate(invoice.lines, start=1) if line.amount is not None]
    amounts += [(f"extra_charges[{index}].amount", charge.amount, None)
                for index, charge in enumerate(invoice.extra_charges, start=1)]
    return [_invalid(field, amount, f"{field}: {amount} is finer than {invoice.currency.upper()}'s smallest "
                                    f"unit, {unit}.", line_no)
            for field, amount, line_no in amounts if amount % unit]


def _within_limits(invoice: Invoice, limits: Limits) -> list[Finding]:
    """What Sampro could not store, or a person could not read: too many lines, text too long or
    with control characters in it (a CR/LF in a number would break a header), numbers too large
    or too precise for numeric(18, 4)."""
    if _plainly_within(invoice, limits):
        return []
    problems = []
    if len(invoice.lines) > limits.max_lines:
        problems.append(_too_many_lines(len(invoice.lines), limits))
    if len(invoice.extra_charges) > limits.max_charges:
        problems.append(_too_many_charges(len(invoice.extra_charges), limits))
    texts: list[tuple[str, str, bool, int | None]] = [(field, getattr(invoice, field), False, None)
                                                      for field in IDENTIFIERS]
    numbers: list[tuple[str, Any, int | None]] = [("tax_amount", invoice.tax_amount, None),
                                                  ("total_amount", invoice.total_amount, None)]
    for index, line in enumerate(invoice.lines[: limits.max_lines], start=1):
        texts.append((f"lines[{index}].part_number", line.part_number, False, line.line_no))
        if line.description is not None:
            texts.append((f"lines[{index}].description", line.description, True, line.line_no))
        numbers += [(f"lines[{index}].{name}", getattr(line, name), line.line_no)
                    for name in ("quantity", "unit_price", "amount") if getattr(line, name) is not None]
    for index, charge in enumerate(invoice.extra_charges[: limits.max_charges], start=1):
        texts.append((f"extra_charges[{index}].kind", charge.kind, False, None))
        numbers.append((f"extra_charges[{index}].amount", charge.amount, None))
    for field, text, is_prose, line_no in texts:
        longest = limits.max_text_length if is_prose else limits.max_identifier_length
        if len(text) > longest:
            problems.append(_invalid(field, text, f"{field}: {len(text):,} characters; at most {longest}.", line_no))
        elif (character := control_character(text, allow_layout=is_prose)) is not None:
            problems.append(_invalid(field, text.encode("unicode_escape").decode("ascii"),
                                     f"{field}: contains the control character {character}.", line_no))
        elif not is_prose and (character := reordering_character(text)) is not None:
            problems.append(_invalid(field, text.encode("unicode_escape").decode("ascii"),
                                     f"{field}: contains the bidi control {character}, which reorders the characters "
                                     "after it and shows nothing itself.", line_no))
    for field, number, line_no in numbers:
        if (problem := decimal_problem(number, limits)) is not None:
            problems.append(_invalid(field, number, f"{field}: {number} {problem}.", line_no))
    return problems


def _too_many_lines(count: int, limits: Limits) -> Finding:
    return _invalid("lines", f"{count} lines", f"The invoice has {count:,} lines; at most {limits.max_lines:,} are "
                                               "accepted.")


def _too_many_charges(count: int, limits: Limits) -> Finding:
    return _invalid("extra_charges", f"{count} charges", f"The invoice has {count:,} extra charges; at most "
                                                         f"{limits.max_charges:,} are accepted.")


MAX_NAMED = 100  # problems named one by one; a verdict of thousands says no more to a vendor


def read_invoice(raw: Any, limits: Limits = Limits()) -> tuple[Invoice | None, list[Finding]]:
    """Returns the invoice, or None with one INVALID_INVOICE finding per problem."""
    if isinstance(raw, Invoice):
        invoice = raw
    elif not isinstance(raw, Mapping):
        return None, [_invalid("invoice", raw, f"An invoice must be a JSON object, got {type(raw).__name__}.")]
    elif isinstance(lines := raw.get("lines"), list) and len(lines) > limits.max_lines:
        # Counted before each line is read: 80,000 empty lines made 320,000 findings and 640 MB.
        return None, [_too_many_lines(len(lines), limits)]
    elif isinstance(charges := raw.get("extra_charges"), list) and len(charges) > limits.max_charges:
        return None, [_too_many_charges(len(charges), limits)]
    else:
        try:
            invoice = Invoice.model_validate(raw)
        except ValidationError as exc:
            findings = []
            for error in exc.errors(include_url=False)[:MAX_NAMED]:
                field = field_path(error["loc"])
                actual = None if error["type"] == "missing" else error.get("input")
                said = error["msg"]
                if isinstance(actual, str) and actual.startswith(UNREADABLE_COLUMN):  # not "a valid list"
                    said = f"the column cannot be read ({actual.removeprefix(UNREADABLE_COLUMN)})"
                findings.append(_invalid(field, actual, f"{field}: {said}."))
            if exc.error_count() > MAX_NAMED:
                more = exc.error_count() - MAX_NAMED
                findings.append(_invalid("invoice", f"{more} more", f"{more:,} more problems like these."))
            return None, findings
    problems = _within_limits(invoice, limits) or _business_contract(invoice, limits)
    return (None if problems else invoice), problems
