"""One small function per row of the rule table (DESIGN §4). Each returns its findings, or none."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from rules.case import Case, finding
from rules.context import KnownInvoice
from rules.duplicates import counts, looks_alike, same_number
from rules.lifecycle import InvoiceStatus
from rules.models import Finding, Invoice, POStatus, Severity

ERROR, WARNING = Severity.ERROR, Severity.WARNING
ZERO = Decimal(0)


def po_not_found(case: Case) -> list[Finding]:
    if case.po is not None:
        return []
    po_number = case.invoice.po_number if case.invoice else None
    if (problem := case.context.po_problem) is not None:
        return [finding("PO_NOT_FOUND", ERROR, f"Purchase order {po_number} is in Sampro but cannot be read: "
                        f"{problem}. The invoice is judged again when the PO changes in Sampro.",
                        field="po_number", actual=po_number)]
    return [
        finding("PO_NOT_FOUND", ERROR, f"No purchase order {po_number or '(none given)'} in Sampro.",
                field="po_number", actual=po_number)
    ]


def invalid_invoice(case: Case) -> list[Finding]:
    return case.contract_problems


def duplicate_invoice(case: Case) -> list[Finding]:
    inv, identifiers = case.parsed_invoice, case.context.policy.identifiers
    if (keys := case.number_keys) is None:  # no earlier invoice like it
        return []
    for earlier in case.earlier:
        if counts(earlier, inv) and same_number(earlier, keys, identifiers):
            return [
                finding("DUPLICATE_INVOICE", ERROR,
                        f"Vendor {inv.vendor_id} invoice {inv.invoice_number.strip()} {_where(earlier)}.",
                        field="invoice_number", expected=earlier.invoice_id, actual=inv.invoice_number.strip())
            ]
    return []


def possible_duplicate(case: Case) -> list[Finding]:
    """One finding per earlier invoice that looks alike, each a hold of its own (`rules.holds`): with
    the first alone named, the clerk cleared it, and another of the same total, two days older,
    was never shown and was paid twice."""
    inv, identifiers = case.parsed_invoice, case.context.policy.identifiers
    window = case.tolerance.duplicate_window_days
    if (keys := case.number_keys) is None:  # no earlier invoice like it
        return []
    return [_looks_like(inv, earlier, why, window) for earlier in case.earlier
            if counts(earlier, inv) and (why := looks_alike(earlier, inv, keys, identifiers, window)) is not None]


def _looks_like(inv: Invoice, earlier: KnownInvoice, why: str, window: int) -> Finding:
    if why == "number":
        message = (f"Vendor {inv.vendor_id} invoice {inv.invoice_number.strip()} reads like invoice "
                   f"{earlier.invoice_number.strip()}, which {_where(earlier)}.")
        return finding("POSSIBLE_DUPLICATE", WARNING, message, field="invoice_number",
                       expected=earlier.invoice_id, actual=inv.invoice_number.strip())
    message = (f"Vendor {inv.vendor_id} already has invoice {earlier.invoice_number.strip()} for the same total "
               f"{inv.total_amount} dated {earlier.invoice_date}, within {window} days, which {_where(earlier)}.")
    return finding("POSSIBLE_DUPLICATE", WARNING, message, field="total_amount", expected=earlier.invoice_id,
                   actual=inv.total_amount)


def _where(earlier: KnownInvoice) -> str:
    """Where the earlier invoice is, by its status: one still pending (held, or not yet at the RPA
    bot) was said to be "already processed", and the clerk looked for an entry Sampro did not have."""
    if earlier.status == InvoiceStatus.ENTERED:
        return f"is already entered in Sampro as {earlier.invoice_id}"
    if earlier.status == InvoiceStatus.SENT_TO_RPA:
        return f"was already sent to the RPA bot as {earlier.invoice_id}"
    return (f"is already pending as {earlier.invoice_id} ({earlier.status.replace('_', ' ')}), "
            "not entered in Sampro yet")


def vendor_mismatch(case: Case) -> list[Finding]:
    if case.context.policy.identifiers.same("vendor_id", case.parsed_invoice.vendor_id, case.found_po.vendor_id):
        return []
    return [
        finding("VENDOR_MISMATCH", ERROR,
                f"Invoice vendor {case.parsed_invoice.vendor_id} is not the PO's vendor {case.found_po.vendor_id}.",
                field="vendor_id", expected=case.found_po.vendor_id, actual=case.parsed_invoice.vendor_id)
    ]


def currency_mismatch(case: Case) -> list[Finding]:
    if case.context.policy.identifiers.same("currency", case.parsed_invoice.currency, case.found_po.currency):
        return []
    return [
        finding("CURRENCY_MISMATCH", ERROR,
                f"Invoice currency {case.parsed_invoice.currency} differs from PO currency {case.found_po.currency}.",
                field="currency", expected=case.found_po.currency, actual=case.parsed_invoice.currency)
    ]


def part_not_on_po(case: Case) -> list[Finding]:
    return [
        finding("PART_NOT_ON_PO", ERROR,
                f"Line {match.line.line_no}: part {match.line.part_number} is not on PO {case.found_po.po_number}.",
                line_no=match.line.line_no, field="part_number", actual=match.line.part_number)
        for match in case.matches
        if not match.candidates
    ]


def line_amount_mismatch(case: Case) -> list[Finding]:
    out = []
    for line, expected in zip(case.parsed_invoice.lines, case.computed_amounts, strict=True):
        if line.amount is None:
            continue
        if line.amount != expected:
            out.append(
                finding("LINE_AMOUNT_MISMATCH", ERROR,
                        f"Line {line.line_no}: amount {line.amount} is not "
                        f"{line.quantity} x {line.unit_price} = {expected}.",
                        line_no=line.line_no, field="amount", expected=expected, actual=line.amount)
            )
    return out


def total_mismatch(case: Case) -> list[Finding]:
    inv = case.parsed_invoice
    charges = sum((c.amount for c in inv.extra_charges), Decimal(0))
    expected = case.subtotal + inv.tax_amount + charges
    if abs(inv.total_amount - expected) <= case.tolerance.total_abs:
        return []
    return [
        finding("TOTAL_MISMATCH", ERROR,
                f"Total {inv.total_amount} is not lines + tax + charges = {expected}.",
                field="total_amount", expected=expected, actual=inv.total_amount)
    ]


def po_not_open(case: Case) -> list[Finding]:
    po = case.found_po
    if po.status is POStatus.OPEN:
        return []
    return [
        finding("PO_NOT_OPEN", WARNING, f"PO {po.po_number} is {po.status.value.replace('_', ' ')}.",
                field="po.status", expected=POStatus.OPEN.value, actual=po.status.value)
    ]


def price_mismatch(case: Case) -> list[Finding]:
    """A line whose part is on the PO, but at no price within the tolerance; named against the PO
    line of the nearest price."""
    out = []
    for match in case.matches:
        if match.matched or match.nearest is None:
            continue
        line, po_line = match.line, match.nearest
        out.append(
            finding("PRICE_MISMATCH", WARNING,
                    f"Line {line.line_no}: unit price {line.unit_price} differs from PO line {po_line.line_no} "
                    f"price {po_line.unit_price}.",
                    line_no=line.line_no, field="unit_price", expected=po_line.unit_price, actual=line.unit_price)
        )
    return out


def _counted(quantity: Decimal) -> str:
    """A quantity as the quantity findings write it: its value, without the trailing zeros the
    arithmetic left. What a tolerance lets pass is placed on a PO line in its own digits, so 7
    invoiced on 5 open read "7" under exact matching, "7.00" under a 5 % quantity tolerance and
    "7.0" under 0.5 units; a clerk's release of it, matched by what it says, was taken back once
    AP set a tolerance that still held it, and a replay of the tolerance counted every such hold
    as changed. Plain digits, never an exponent: 10, not 1E+1."""
    return f"{quantity.normalize():f}"


def quantity_exceeds_open(case: Case) -> list[Finding]:
    """Per PO line: everything this invoice puts on it against what it has open (ordered, less what
    Sampro has invoiced and what is at the RPA bot), plus the line's quantity tolerance."""
    out = []
    for po_line in case.found_po.lines:
        first_line = case.overflowed.get(po_line.line_no)
        if first_line is None:
            continue
        invoiced, open_quantity = _counted(case.placed_on[po_line.line_no]), _counted(case.open_on[po_line.line_no])
        out.append(
            finding("QUANTITY_EXCEEDS_OPEN", WARNING,
                    f"PO line {po_line.line_no} (part {po_line.part_number}): {invoiced} "
                    f"invoiced but only {open_quantity} still open on PO {case.found_po.po_number}.",
                    line_no=first_line, field="quantity", expected=open_quantity, actual=invoiced)
        )
    return out


def quantity_exceeds_received(case: Case) -> list[Finding]:
    """3-way match, per PO line that tracks receipts: everything invoiced on it (Sampro, the RPA
    bot, this invoice) against what was received, plus the received tolerance."""
    policy, key = case.context.policy, case.context.policy.identifiers.key
    if not policy.matches_receipts:
        return []
    out = []
    for po_line in case.found_po.lines:
        placed = case.placed_on.get(po_line.line_no, ZERO)
        if not placed or po_line.quantity_received is None:
            continue
        tolerance = policy.for_keys(case.vendor_key, key("part_number", po_line.part_number))
        if not tolerance.three_way_match:
            continue
        received = po_line.quantity_received
        receivable = received - po_line.quantity_invoiced - case.context.in_flight.get(str(po_line.line_no), ZERO)
        if placed > receivable + tolerance.received_allowance(received):
            first_line = next(m.line.line_no for m in case.matches if any(p is po_line for p, _ in m.placed))
            invoiced, left = _counted(placed), _counted(receivable)
            out.append(
                finding("QUANTITY_EXCEEDS_RECEIVED", WARNING,
                        f"PO line {po_line.line_no} (part {po_line.part_number}): {invoiced} invoiced but only "
                        f"{left} received and not yet invoiced on PO {case.found_po.po_number}.",
                        line_no=first_line, field="quantity", expected=left, actual=invoiced)
            )
    return out


def tax_mismatch(case: Case) -> list[Finding]:
    if case.found_po.tax_rate is None:
        return []
    expected = case.money(case.found_po.tax_rate * case.subtotal)
    if abs(case.parsed_invoice.tax_amount - expected) <= case.tolerance.tax_abs:
        return []
    return [
        finding("TAX_MISMATCH", WARNING,
                f"Tax {case.parsed_invoice.tax_amount} is not {case.found_po.tax_rate} x line amounts = {expected}.",
                field="tax_amount", expected=expected, actual=case.parsed_invoice.tax_amount)
    ]


def charge_not_allowed(case: Case) -> list[Finding]:
    key = case.context.policy.identifiers.key
    allowed = {key("charge", kind) for kind in case.found_po.allowed_charges}
    return [
        finding("CHARGE_NOT_ALLOWED", WARNING,
                f"Charge '{charge.kind}' ({charge.amount}) is not allowed on PO {case.found_po.po_number}.",
                field=f"extra_charges[{index}].kind", expected=",".join(sorted(case.found_po.allowed_charges)) or None,
                actual=charge.kind)
        for index, charge in enumerate(case.parsed_invoice.extra_charges, start=1)
        if key("charge", charge.kind) not in allowed
    ]


def invoice_date_invalid(case: Case) -> list[Finding]:
    dated, ordered, today = case.parsed_invoice.invoice_date, case.found_po.order_date, case.context.as_of
    if dated < ordered:
        return [
            finding("INVOICE_DATE_INVALID", WARNING, f"Invoice dated {dated}, before PO order date {ordered}.",
                    field="invoice_date", expected=f">= {ordered}", actual=dated)
        ]
    # Today is UTC's: a vendor east of it (up to UTC+14) is a day ahead for part of every day. The
    # finding names no day of its judging: a clerk's release of it is matched by what it says, and
    # with "<= 2026-11-26" in it, judged again the next day it read otherwise and was held again.
    if dated > today + timedelta(days=1):
        return [finding("INVOICE_DATE_INVALID", WARNING, _dated_in_the_future(dated), field="invoice_date",
                        expected=NOT_AFTER_TOMORROW, actual=dated)]
    return []


NOT_AFTER_TOMORROW = "not after tomorrow"


def _dated_in_the_future(dated: object) -> str:
    return f"Invoice dated {dated}, in the future (UTC, a day ahead east of it)."


_QUANTITIES = frozenset({"QUANTITY_EXCEEDS_OPEN", "QUANTITY_EXCEEDS_RECEIVED"})


def as_found_now(finding: Finding) -> Finding:
    """A finding as these rules word it. A future date named the day of its judging before rules
    2026.12.12 ("<= 2026-11-26"): compared as it was, the first Sampro change after the upgrade
    judged every such held invoice anew and took back the holds AP had released on it. A quantity
    carried the digits of its arithmetic before rules 2026.12.14 ("7.00", "5.0000" of Sampro's
    numeric(18, 4)): read as `_counted` writes it, in its message too, it is the finding it was."""
    if finding.code == "INVOICE_DATE_INVALID" and (finding.expected or "").startswith("<= "):
        return finding.model_copy(update={"expected": NOT_AFTER_TOMORROW,
                                          "message": _dated_in_the_future(finding.actual)})
    if finding.code in _QUANTITIES and finding.expected is not None and finding.actual is not None:
        expected, actual = _counted(Decimal(finding.expected)), _counted(Decimal(finding.actual))
        if (expected, actual) != (finding.expected, finding.actual):
            message = finding.message.replace(f": {finding.actual} invoiced but only {finding.expected} ",
                                              f": {actual} invoiced but only {expected} ", 1)
            return finding.model_copy(update={"expected": expected, "actual": actual, "message": message})
    return finding
