"""Reading an invoice as the marketplace sent it: contract problems become findings, never exceptions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from rules.models import Finding, Invoice, Severity

INVALID_INVOICE = "INVALID_INVOICE"


def field_path(loc: tuple[Any, ...]) -> str:
    """('lines', 0, 'quantity') -> 'lines[1].quantity' (line positions counted from 1, as AP reads them)."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part + 1}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "invoice"


def _shown(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _invalid(field: str, actual: Any, message: str, line_no: int | None = None) -> Finding:
    return Finding(
        code=INVALID_INVOICE,
        severity=Severity.ERROR,
        line_no=line_no,
        field=field,
        expected=None,
        actual=_shown(actual),
        message=message,
    )


def _business_contract(invoice: Invoice) -> list[Finding]:
    """What the types allow but the contract does not: nothing is invoiced for free or backwards."""
    problems = []
    for index, line in enumerate(invoice.lines, start=1):
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
    for index, charge in enumerate(invoice.extra_charges, start=1):
        if charge.amount < 0:
            problems.append(
                _invalid(f"extra_charges[{index}].amount", charge.amount, f"Charge '{charge.kind}' is negative.")
            )
    return problems


def read_invoice(raw: Any) -> tuple[Invoice | None, list[Finding]]:
    """Returns the invoice, or None with one INVALID_INVOICE finding per problem."""
    if isinstance(raw, Invoice):
        problems = _business_contract(raw)
        return (None if problems else raw), problems
    if not isinstance(raw, Mapping):
        return None, [_invalid("invoice", raw, f"An invoice must be a JSON object, got {type(raw).__name__}.")]
    try:
        invoice = Invoice.model_validate(raw)
    except ValidationError as exc:
        findings = []
        for error in exc.errors(include_url=False):
            field = field_path(error["loc"])
            actual = None if error["type"] == "missing" else error.get("input")
            findings.append(_invalid(field, actual, f"{field}: {error['msg']}."))
        return None, findings
    problems = _business_contract(invoice)
    return (None if problems else invoice), problems

