"""The JSON the RPA bot keys into Sampro: every line already tied to its PO line.

An invoice line placed on several PO lines (one part at one price, spread over lines) becomes
one payload line per PO line, with the quantity put on it; the pieces' amounts add up to the
invoice line's amount (each its share by quantity, rounded, the rest spread by largest remainder). A total
difference the policy accepts is noted (`total_difference`), so the bot books it as a small
difference instead of guessing.
"""

from __future__ import annotations

from decimal import Decimal

from rules.case import Case
from rules.models import PurchaseOrderLine, RpaPayload, RpaPayloadLine, trusted


def _pieces(case: Case, placed: list[tuple[PurchaseOrderLine, Decimal]], amount: Decimal) -> list[Decimal]:
    """The amounts of a line's pieces: each its share of the line's amount by quantity, rounded,
    then the minor units they lack of (or pass) the amount given to (taken from) those their
    rounding cut most (left most), one each. The last piece taking the rest was -0.01 of a 0.02
    line in four pieces at 0.005, and a running total put a cent on the second of two equal
    pieces; shares of quantity x price went below zero for a line amount a clerk released."""
    total = sum((quantity for _, quantity in placed), Decimal(0))
    exact = [amount * quantity / total for _, quantity in placed]
    pieces = [case.money(share) for share in exact]
    unit = case.minor_unit or Decimal(1)
    short = int((amount - sum(pieces)) / unit)  # at most one per piece: each share moved by half a unit at most
    order = sorted(range(len(pieces)), key=lambda i: exact[i] - pieces[i], reverse=short > 0)
    for i in order[:abs(short)]:
        pieces[i] += unit if short > 0 else -unit
    return pieces


def build_rpa_payload(case: Case) -> RpaPayload | None:
    """None when some line has no PO line to be keyed against (the bot could not enter it)."""
    inv = case.parsed_invoice
    lines = []
    for match, amount in zip(case.matches, case.line_amounts, strict=True):
        if not match.placed:
            return None
        line = match.line
        pieces = _pieces(case, match.placed, amount) if len(match.placed) > 1 else [amount]
        for (po_line, quantity), piece in zip(match.placed, pieces, strict=True):
            # Every value comes from the validated invoice and PO, or is Decimal arithmetic on them.
            lines.append(trusted(RpaPayloadLine, {
                "invoice_line_no": line.line_no, "po_line_no": po_line.line_no, "part_number": line.part_number,
                "description": line.description, "quantity": quantity, "unit_price": line.unit_price,
                "amount": piece}))
    expected = (case.subtotal + inv.tax_amount
                + sum((charge.amount for charge in inv.extra_charges), Decimal(0)))
    difference = inv.total_amount - expected
    return trusted(RpaPayload, {
        "invoice_id": inv.invoice_id,
        "invoice_version": inv.version,
        "vendor_id": inv.vendor_id,
        "invoice_number": inv.invoice_number.strip(),
        "invoice_date": inv.invoice_date,
        "po_number": inv.po_number,
        "currency": inv.currency.upper(),
        "lines": lines,
        "tax_amount": inv.tax_amount,
        "extra_charges": list(inv.extra_charges),
        "total_amount": inv.total_amount,
        "total_difference": difference if difference else None,
    })
