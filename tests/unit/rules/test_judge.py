"""The rules bound to a PO snapshot, as the PO agent calls them (`rules.judge`)."""

from __future__ import annotations

from rules.judge import RulesJudge
from rules.lifecycle import InvoiceSubmitted, RpaRequest
from rules.models import PurchaseOrder
from rules.policy import Policy
from tests.unit.rules.builders import NOW, PO, invoice


def test_the_streams_invoice_version_and_po_are_the_verdicts_and_the_payloads_whatever_the_document_says():
    # The vendor's second version, under a document that still names version 1 of another invoice id.
    submission = InvoiceSubmitted(invoice_id="MP-1001", version=2, po_number="PO-5001", received_at=NOW,
                                  document=invoice(invoice_id="MP-1000", version=1))
    judge = RulesJudge(PurchaseOrder.model_validate(PO), [], Policy(), NOW)
    verdict = judge.decide(submission, {})
    stream = ("MP-1001", 2, "PO-5001")
    assert verdict.status == "ready_to_process" and verdict.rpa_payload is not None
    assert (verdict.invoice_id, verdict.invoice_version, verdict.po_number) == stream
    for payload in (verdict.rpa_payload, judge.payload_for(submission)):
        assert payload is not None and (payload.invoice_id, payload.invoice_version, payload.po_number) == stream
        RpaRequest(invoice_id="MP-1001", invoice_version=2, po_number="PO-5001", payload=payload, requested_at=NOW)


def test_a_released_line_amount_is_split_over_its_po_lines_by_quantity_with_no_piece_below_zero():
    """A clerk may release LINE_AMOUNT_MISMATCH: the pieces were quantity x price each, the last
    taking the rest, 10 at 1.00 stated as 8.00 over 9 + 1 went to the bot as 9.00 and -1.00."""
    po = PurchaseOrder.model_validate({**PO, "tax_rate": None, "lines": [
        {"line_no": n, "part_number": "AC-100", "unit_price": "1.00", "quantity_ordered": ordered}
        for n, ordered in ((1, "9"), (2, "1"))]})
    document = invoice(lines=[{"line_no": 1, "part_number": "AC-100", "quantity": "10", "unit_price": "1.00",
                               "amount": "8.00"}], tax_amount="0", extra_charges=[], total_amount="8.00")
    submission = InvoiceSubmitted(invoice_id="MP-1001", version=1, po_number="PO-5001", received_at=NOW,
                                  document=document)
    judge = RulesJudge(po, [], Policy(), NOW)
    assert [r.code for r in judge.decide(submission, {}).reasons] == ["LINE_AMOUNT_MISMATCH"]
    assert [(p.po_line_no, str(p.amount)) for p in judge.payload_for(submission).lines] == [(1, "7.20"), (2, "0.80")]
