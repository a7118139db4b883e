"""The JSON the RPA bot keys into Sampro: every line already tied to its PO line.

An invoice line placed on several PO lines (one part at one price, spread over lines) becomes
one payload line per PO line, with the quantity put on it; the pieces' amounts add up to the
invoice line's amount (rounded as a running total, the last piece taking what is left). A total
difference the policy accepts is noted (`total_difference`), so the bot books it as a small
difference instead of guessing.
"""

from __future__ import annotations

from decimal import Decimal

from rules.case import Case
from rules.models import RpaPayload, RpaPayloadLine, trusted


def build_rpa_payload(case: Case) -> RpaPayload | None:
    """None when some line has no PO line to be keyed against (the bot could not enter it)."""
    inv = case.parsed_invoice
    lines = []
    for match, amount in zip(case.matches, case.line_amounts, strict=True):
        if not match.placed:
            return None
        line, pieces = match.line, match.placed
        booked = placed = Decimal(0)
        for index, (po_line, quantity) in enumerate(pieces, start=1):
            # Rounded as a running total, not piece by piece: four pieces of 1 at 0.005 were 0.01 each
            # and the last took -0.01 of a 0.02 line; now each is within half a cent of its own share.
            placed += quantity
            piece = amount - booked if index == len(pieces) else case.money(placed * line.unit_price) - booked
            booked += piece
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
