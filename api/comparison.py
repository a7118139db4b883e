"""An invoice laid beside its PO for the drill-down, from what processscheduler keeps.

Every line of the invoice as the rules judged it, beside the PO lines its quantity went to (the
RPA payload's mapping when there is one, else the rules' own line matcher, rules.comparison); every
finding quotes the invoice's value (`actual`) and the PO's (`expected`) for its field, and
marks it. Rows decided before processscheduler kept the invoice fall back to the payload's lines.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from api.schemas import ComparedField, ComparedLine, Comparison
from connectors.scheduler.read_model import InvoiceDetail
from rules.comparison import matched_po_lines
from rules.limits import Limits
from rules.models import Finding, PurchaseOrderLine, RpaPayloadLine
from rules.policy import Policy

LINE_FIELDS = ("part_number", "quantity", "unit_price", "amount")


def _text(value) -> str | None:
    return None if value is None else str(value)


def _po_value(po_lines: list[PurchaseOrderLine], field: str) -> str | None:
    """The PO's side of a field, over every PO line an invoice line went to."""
    if not po_lines:
        return None
    if field == "quantity":  # what the PO still leaves to invoice, on those lines together
        return _text(sum((line.quantity_ordered - line.quantity_invoiced for line in po_lines), Decimal(0)))
    values = dict.fromkeys(_text(getattr(line, field, None)) for line in po_lines)
    return None if values.keys() == {None} else " / ".join(str(value) for value in values)


def _payload_line(pieces: list[RpaPayloadLine]) -> dict:
    """An invoice line as the payload has it: its pieces, one per PO line, taken together."""
    first = pieces[0]
    return {"part_number": first.part_number, "unit_price": first.unit_price,
            "quantity": sum((piece.quantity for piece in pieces), Decimal(0)),
            "amount": sum((piece.amount for piece in pieces), Decimal(0))}


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


def compare(invoice: InvoiceDetail, policy: Policy = Policy(), limits: Limits = Limits()) -> Comparison:
    """`policy` and `limits` as the worker judged with: an invoice the default limits refuse (over
    1,000 lines where MAX_INVOICE_LINES allows more) was matched to no PO line, its PO side blank."""
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
    pieces: dict[int, list[RpaPayloadLine]] = defaultdict(list)
    for piece in payload.lines if payload else ():
        pieces[piece.invoice_line_no].append(piece)
    invoice_lines = _document_lines(document) or {n: _payload_line(line) for n, line in pieces.items()}
    po_lines = {line.line_no: line for line in po.lines} if po else {}
    matched = matched_po_lines(document, po, policy, limits) if po and document else {}
    lines = []
    for line_no in sorted(set(invoice_lines) | {n for n in by_line if n is not None}):
        sent = invoice_lines.get(line_no)
        went_to = ([po_lines[piece.po_line_no] for piece in pieces[line_no] if piece.po_line_no in po_lines]
                   if line_no in pieces else matched.get(line_no, []))
        fields = {name: ComparedField(field=name, invoice=_text(sent.get(name)),
                                      purchase_order=_po_value(went_to, name), findings=[])
                  for name in LINE_FIELDS if sent is not None}
        lines.append(ComparedLine(line_no=line_no, po_line_no=went_to[0].line_no if went_to else None,
                                  po_line_nos=[po_line.line_no for po_line in went_to],
                                  fields=_with_findings(fields, by_line.get(line_no, []))))
    return Comparison(header=_with_findings(header, by_line.get(None, [])), lines=lines)

