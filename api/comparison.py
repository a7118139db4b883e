"""An invoice laid beside its PO for the drill-down, from what processscheduler keeps.

processscheduler has no copy of the vendor's document: invoice lines come from the RPA payload
when there is one, and every finding quotes the invoice's value (`actual`) and the PO's
(`expected`) for its line and field, which is exactly what AP has to look at.
"""

from __future__ import annotations

from collections import defaultdict

from api.schemas import ComparedField, ComparedLine, Comparison
from connectors.scheduler.read_model import InvoiceDetail
from rules.models import Finding, PurchaseOrderLine, RpaPayloadLine

LINE_FIELDS = ("part_number", "quantity", "unit_price", "amount")


def _text(value) -> str | None:
    return None if value is None else str(value)


def _po_value(po_line: PurchaseOrderLine | None, field: str) -> str | None:
    if po_line is None:
        return None
    if field == "quantity":  # what the PO still leaves to invoice
        return _text(po_line.quantity_ordered - po_line.quantity_invoiced)
    return _text(getattr(po_line, field, None))


def _with_findings(fields: dict[str, ComparedField], findings: list[Finding]) -> list[ComparedField]:
    for finding in findings:
        name = finding.field or finding.code.lower()
        known = fields.get(name)
        fields[name] = ComparedField(
            field=name, invoice=finding.actual if finding.actual is not None else known and known.invoice,
            purchase_order=finding.expected if finding.expected is not None else known and known.purchase_order,
            findings=[*(known.findings if known else []), finding.code])
    return list(fields.values())


def compare(invoice: InvoiceDetail) -> Comparison:
    po, payload = invoice.po_snapshot, invoice.rpa_payload
    by_line: dict[int | None, list[Finding]] = defaultdict(list)
    for finding in invoice.reasons:
        by_line[finding.line_no].append(finding)
    header = {"vendor_id": ComparedField(field="vendor_id", invoice=invoice.vendor_id,
                                         purchase_order=po.vendor_id if po else None, findings=[])}
    if payload or po:
        header["currency"] = ComparedField(field="currency", invoice=payload.currency if payload else None,
                                           purchase_order=po.currency if po else None, findings=[])
    payload_lines: dict[int, RpaPayloadLine] = {line.invoice_line_no: line for line in payload.lines} if payload else {}
    po_lines = {line.line_no: line for line in po.lines} if po else {}
    lines = []
    for line_no in sorted(set(payload_lines) | {n for n in by_line if n is not None}):
        entered = payload_lines.get(line_no)
        po_line = po_lines.get(entered.po_line_no) if entered else None
        fields = {name: ComparedField(field=name, invoice=_text(getattr(entered, name)),
                                      purchase_order=_po_value(po_line, name), findings=[])
                  for name in LINE_FIELDS if entered is not None}
        lines.append(ComparedLine(line_no=line_no, po_line_no=entered.po_line_no if entered else None,
                                  fields=_with_findings(fields, by_line.get(line_no, []))))
    return Comparison(header=_with_findings(header, by_line.get(None, [])), lines=lines)
