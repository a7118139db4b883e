"""One small function per row of the rule table (DESIGN §4). Each returns its findings, or none."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from rules.case import Case, finding
from rules.context import NOT_PROCESSED
from rules.models import Finding, POStatus, Severity

ERROR, WARNING = Severity.ERROR, Severity.WARNING
HUNDRED = Decimal(100)
ZERO = Decimal(0)


def po_not_found(case: Case) -> list[Finding]:
    if case.po is not None:
        return []
    po_number = case.invoice.po_number if case.invoice else None
    return [
        finding("PO_NOT_FOUND", ERROR, f"No purchase order {po_number or '(none given)'} in Sampro.",
                field="po_number", actual=po_number)
    ]


def invalid_invoice(case: Case) -> list[Finding]:
    return case.contract_problems


def duplicate_invoice(case: Case) -> list[Finding]:
    inv = case.invoice
    number = inv.invoice_number.strip()
    for earlier in case.context.history:
        if (
            earlier.invoice_id != inv.invoice_id
            and earlier.shares_number_with(inv.vendor_id, number)
            and earlier.status not in NOT_PROCESSED
        ):
            return [
                finding("DUPLICATE_INVOICE", ERROR,
                        f"Vendor {inv.vendor_id} invoice {number} was already processed as {earlier.invoice_id} "
                        f"({earlier.status}).",
                        field="invoice_number", expected=earlier.invoice_id, actual=number)
            ]
    return []


def vendor_mismatch(case: Case) -> list[Finding]:
    if case.invoice.vendor_id == case.po.vendor_id:
        return []
    return [
        finding("VENDOR_MISMATCH", ERROR,
                f"Invoice vendor {case.invoice.vendor_id} is not the PO's vendor {case.po.vendor_id}.",
                field="vendor_id", expected=case.po.vendor_id, actual=case.invoice.vendor_id)
    ]


def currency_mismatch(case: Case) -> list[Finding]:
    if case.invoice.currency.upper() == case.po.currency.upper():
        return []
    return [
        finding("CURRENCY_MISMATCH", ERROR,
                f"Invoice currency {case.invoice.currency} differs from PO currency {case.po.currency}.",
                field="currency", expected=case.po.currency, actual=case.invoice.currency)
    ]


def part_not_on_po(case: Case) -> list[Finding]:
    return [
        finding("PART_NOT_ON_PO", ERROR,
                f"Line {line.line_no}: part {line.part_number} is not on PO {case.po.po_number}.",
                line_no=line.line_no, field="part_number", actual=line.part_number)
        for line, po_line in case.matches
        if po_line is None
    ]


def line_amount_mismatch(case: Case) -> list[Finding]:
    out = []
    for line, expected in zip(case.invoice.lines, case.computed_amounts):
        if line.amount is None:
            continue
        if line.amount != expected:
            out.append(
                finding("LINE_AMOUNT_MISMATCH", ERROR,
                        f"Line {line.line_no}: amount {line.amount} is not {line.quantity} x {line.unit_price} = {expected}.",
                        line_no=line.line_no, field="amount", expected=expected, actual=line.amount)
            )
    return out


def total_mismatch(case: Case) -> list[Finding]:
    inv = case.invoice
    expected = sum(case.line_amounts, Decimal(0)) + inv.tax_amount + sum((c.amount for c in inv.extra_charges), Decimal(0))
    if abs(inv.total_amount - expected) <= case.tolerance.total_abs:
        return []
    return [
        finding("TOTAL_MISMATCH", ERROR,
                f"Total {inv.total_amount} is not lines + tax + charges = {expected}.",
                field="total_amount", expected=expected, actual=inv.total_amount)
    ]


def po_not_open(case: Case) -> list[Finding]:
    if case.po.status is POStatus.OPEN:
        return []
    return [
        finding("PO_NOT_OPEN", WARNING, f"PO {case.po.po_number} is {case.po.status.value.replace('_', ' ')}.",
                field="po.status", expected=POStatus.OPEN.value, actual=case.po.status.value)
    ]


def price_mismatch(case: Case) -> list[Finding]:
    tol = case.tolerance
    out = []
    for line, po_line in case.matches:
        if po_line is None or line.unit_price == po_line.unit_price:
            continue
        allowed = max(tol.price_abs, po_line.unit_price * tol.price_pct / HUNDRED)
        if abs(line.unit_price - po_line.unit_price) > allowed:
            out.append(
                finding("PRICE_MISMATCH", WARNING,
                        f"Line {line.line_no}: unit price {line.unit_price} differs from PO line {po_line.line_no} "
                        f"price {po_line.unit_price}.",
                        line_no=line.line_no, field="unit_price", expected=po_line.unit_price, actual=line.unit_price)
            )
    return out


def _exceeds(case: Case, code: str, label: str, still_open: Callable[[list], Decimal | None]) -> list[Finding]:
    """Per part, summed over the invoice's lines, against what the part's PO lines leave open."""
    out = []
    in_flight, pct = case.context.in_flight, case.tolerance.quantity_pct
    for part, invoiced in case.invoiced_by_part.items():
        available = still_open(case.po_lines_by_part[part])
        if available is None:
            continue
        if in_flight:
            available -= in_flight.get(part, ZERO)
        allowed = available + max(available, ZERO) * pct / HUNDRED if pct else available
        if invoiced > allowed:
            out.append(
                finding(code, WARNING,
                        f"Part {part}: {invoiced} invoiced but only {available} {label} on PO {case.po.po_number}.",
                        line_no=case.first_line_of(part), field="quantity", expected=available, actual=invoiced)
            )
    return out


def _ordered_not_invoiced(lines: list) -> Decimal:
    total = ZERO
    for line in lines:
        total += line.quantity_ordered - line.quantity_invoiced
    return total


def _received_not_invoiced(lines: list) -> Decimal | None:
    total = ZERO
    for line in lines:
        if line.quantity_received is None:
            return None  # receipts are not tracked for this part
        total += line.quantity_received - line.quantity_invoiced
    return total


def quantity_exceeds_open(case: Case) -> list[Finding]:
    return _exceeds(case, "QUANTITY_EXCEEDS_OPEN", "still open", _ordered_not_invoiced)


def quantity_exceeds_received(case: Case) -> list[Finding]:
    if not case.tolerance.three_way_match:
        return []
    return _exceeds(case, "QUANTITY_EXCEEDS_RECEIVED", "received and not yet invoiced", _received_not_invoiced)


def tax_mismatch(case: Case) -> list[Finding]:
    if case.po.tax_rate is None:
        return []
    expected = case.money(case.po.tax_rate * sum(case.line_amounts, Decimal(0)))
    if case.invoice.tax_amount == expected:
        return []
    return [
        finding("TAX_MISMATCH", WARNING,
                f"Tax {case.invoice.tax_amount} is not {case.po.tax_rate} x line amounts = {expected}.",
                field="tax_amount", expected=expected, actual=case.invoice.tax_amount)
    ]


def charge_not_allowed(case: Case) -> list[Finding]:
    allowed = set(case.po.allowed_charges)
    return [
        finding("CHARGE_NOT_ALLOWED", WARNING,
                f"Charge '{charge.kind}' ({charge.amount}) is not allowed on PO {case.po.po_number}.",
                field=f"extra_charges[{index}].kind", expected=",".join(sorted(allowed)) or None, actual=charge.kind)
        for index, charge in enumerate(case.invoice.extra_charges, start=1)
        if charge.kind not in allowed
    ]


def invoice_date_invalid(case: Case) -> list[Finding]:
    dated, ordered, today = case.invoice.invoice_date, case.po.order_date, case.context.as_of
    if dated < ordered:
        return [
            finding("INVOICE_DATE_INVALID", WARNING, f"Invoice dated {dated}, before PO order date {ordered}.",
                    field="invoice_date", expected=f">= {ordered}", actual=dated)
        ]
    if dated > today:
        return [
            finding("INVOICE_DATE_INVALID", WARNING, f"Invoice dated {dated}, in the future (today is {today}).",
                    field="invoice_date", expected=f"<= {today}", actual=dated)
        ]
    return []
