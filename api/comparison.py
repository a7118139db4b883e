"""An invoice laid beside its PO for the drill-down, from what processscheduler keeps.

Every line of the invoice as the rules judged it, beside the PO lines its quantity went to (the
RPA payload's mapping when there is one, else the rules' own line matcher, rules.comparison); every
finding quotes the invoice's value (`actual`) and the PO's (`expected`) for its field, and
marks it. Rows decided before processscheduler kept the invoice fall back to the payload's lines.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, defaultdict
from concurrent.futures import Future
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


Matched = dict[int, list[PurchaseOrderLine]]
MATCHINGS_KEPT = 256


class Matchings:
    """The rules' line matching of the invoices shown lately, with `policy` and `limits` as the worker
    judged with (an invoice the default limits refuse, over 1,000 lines where MAX_INVOICE_LINES
    allows more, was matched to no PO line, its PO side blank). Each is kept until `kept` others
    were shown: a held invoice of 1,000 lines of one part took 0.5 s of CPU to match again at every
    look, the dashboard reads an open invoice again at each change, and 16 clerks on it made every
    other request wait 80 times as long. A verdict's invoice and PO snapshot never change; one given
    again has a time of its own."""

    def __init__(self, policy: Policy = Policy(), limits: Limits = Limits(), kept: int = MATCHINGS_KEPT):
        self.policy, self.limits, self.kept = policy, limits, kept
        self._matched: OrderedDict[tuple, Future[Matched]] = OrderedDict()
        self._lock = threading.Lock()  # the API's routes run on a thread pool

    def of(self, invoice: InvoiceDetail, document: dict) -> Matched:
        """Matched once, whoever asks meanwhile waiting for it: a verdict given again is read by
        every open dashboard at once, and each matched it."""
        key = (invoice.invoice_id, invoice.invoice_version, invoice.decided_at, invoice.rules_version)
        with self._lock:
            if (found := self._matched.get(key)) is not None:
                self._matched.move_to_end(key)
            else:
                self._matched[key] = mine = Future[Matched]()
                while len(self._matched) > self.kept:
                    self._matched.popitem(last=False)
        if found is not None:
            return found.result()
        assert invoice.po_snapshot is not None
        try:
            mine.set_result(matched_po_lines(document, invoice.po_snapshot, self.policy, self.limits))
        except BaseException as exc:  # told to those waiting, and not kept: the next look tries again
            mine.set_exception(exc)
            with self._lock:
                if self._matched.get(key) is mine:
                    del self._matched[key]
        return mine.result()


def compare(invoice: InvoiceDetail, matchings: Matchings | None = None) -> Comparison:
    """The invoice beside its PO; the rules' matching (from `matchings`, Matchings() by default)
    only for the lines the RPA payload does not place."""
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
    numbers = sorted(set(invoice_lines) | {n for n in by_line if n is not None})
    matched = ((matchings or Matchings()).of(invoice, document)
               if po and document and any(n not in pieces for n in numbers) else {})
    lines = []
    for line_no in numbers:
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

