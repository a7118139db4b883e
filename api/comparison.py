"""An invoice laid beside its PO for the drill-down, from what processscheduler keeps.

Every line of the invoice as the rules judged it, beside the PO line it was matched to (the
RPA payload's mapping when there is one, else the rules' own line matcher, rules.comparison); every
finding quotes the invoice's value (`actual`) and the PO's (`expected`) for its field, and
marks it. Rows decided before processscheduler kept the invoice fall back to the payload's lines.
"""

from __future__ import annotations

from collections import defaultdict

from api.schemas import ComparedField, ComparedLine, Comparison
from connectors.scheduler.read_model import InvoiceDetail
from rules.comparison import matched_po_lines
from rules.models import Finding, PurchaseOrderLine, RpaPayloadLine
from rules.policy import Policy

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


def _document_lines(document: dict) -> dict[int, dict]:
    lines = document.get("lines") if isinstance(document.get("lines"), list) else []
    return {line["line_no"]: line for line in lines if isinstance(line, dict)
            and isinstance(line.get("line_no"), int) and not isinstance(line["line_no"], bool)}


def compare(invoice: InvoiceDetail, policy: Policy = Policy()) -> Comparison:
    po, payload = invoice.po_snapshot, invoice.rpa_payload
    document = invoice.invoice_document if isinstance(invoice.invoice_document, dict) else {}
    by_line: dict[int | None, list[Finding]] = defaultdict(list)
    for finding in invoice.reasons:
        by_line[finding.line_no].append(finding)
    header = {"vendor_id": ComparedField(field="vendor_id", invoice=_text(document.get("vendor_id", invoice.vendor_id)),
                                         purchase_order=po.vendor_id if po else None, findings=[])}
    currency = document.get("currency", payload.currency if payload else None)
    if currency or po:
        header["currency"] = ComparedField(field="currency", invoice=_text(currency),
                                           purchase_order=po.currency if po else None, findings=[])
    payload_lines: dict[int, RpaPayloadLine] = {line.invoice_line_no: line for line in payload.lines} if payload else {}
    invoice_lines = _document_lines(document) or {
        n: line.model_dump() for n, line in payload_lines.items()}
    po_lines = {line.line_no: line for line in po.lines} if po else {}
    matched = matched_po_lines(document, po, policy) if po and document else {}
    lines = []
    for line_no in sorted(set(invoice_lines) | {n for n in by_line if n is not None}):
        sent = invoice_lines.get(line_no)
        in_payload = payload_lines.get(line_no)
        po_line = po_lines.get(in_payload.po_line_no) if in_payload else matched.get(line_no)
        fields = {name: ComparedField(field=name, invoice=_text(sent.get(name)),
                                      purchase_order=_po_value(po_line, name), findings=[])
                  for name in LINE_FIELDS if sent is not None}
        lines.append(ComparedLine(line_no=line_no, po_line_no=po_line.line_no if po_line else None,
                                  fields=_with_findings(fields, by_line.get(line_no, []))))
    return Comparison(header=_with_findings(header, by_line.get(None, [])), lines=lines)

