"""The JSON the RPA bot keys into Sampro: every line already tied to its PO line."""

from __future__ import annotations

from rules.case import Case
from rules.models import RpaPayload


def build_rpa_payload(case: Case) -> RpaPayload | None:
    """None when some line has no PO line to be keyed against (the bot could not enter it)."""
    inv = case.invoice
    lines = []
    for (line, po_line), amount in zip(case.matches, case.line_amounts, strict=True):
        if po_line is None:
            return None
        lines.append(
            {
                "invoice_line_no": line.line_no,
                "po_line_no": po_line.line_no,
                "part_number": line.part_number,
                "description": line.description,
                "quantity": line.quantity,
                "unit_price": line.unit_price,
                "amount": amount,
            }
        )
    # One validation call for the whole payload is cheaper than one per line.
    return RpaPayload.model_validate(dict(
        invoice_id=inv.invoice_id,
        invoice_version=inv.version,
        vendor_id=inv.vendor_id,
        invoice_number=inv.invoice_number.strip(),
        invoice_date=inv.invoice_date,
        po_number=inv.po_number,
        currency=inv.currency.upper(),
        lines=lines,
        tax_amount=inv.tax_amount,
        extra_charges=list(inv.extra_charges),
        total_amount=inv.total_amount,
    ))
