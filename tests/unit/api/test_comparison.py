"""The drill-down's invoice-beside-PO table, from what processscheduler keeps."""

from __future__ import annotations

from datetime import timedelta

from api.comparison import Matchings, compare
from connectors.scheduler import InMemoryProcessScheduler
from connectors.scheduler.read_model_memory import InMemoryInvoiceReadModel
from rules import EvaluationContext, evaluate
from rules.comparison import matched_po_lines
from rules.models import PurchaseOrder
from tests.unit.api.conftest import NOW, make_api
from tests.unit.rules.builders import TODAY, invoice, judge, po


def detail_of(verdict):
    scheduler = InMemoryProcessScheduler()
    scheduler.record([verdict])
    return InMemoryInvoiceReadModel(scheduler).invoice(verdict.invoice_id)


def fields(line) -> dict:
    return {f.field: (f.invoice, f.purchase_order, f.findings) for f in line.fields}


def test_a_ready_invoice_shows_every_line_against_its_po_line():
    comparison = compare(detail_of(judge(invoice())))
    first, second = comparison.lines
    assert (first.line_no, first.po_line_no) == (1, 1)
    assert fields(first)["unit_price"] == ("15.50", "15.50", [])
    assert fields(second)["quantity"] == ("3", "10", [])  # ordered 10, nothing invoiced yet


def test_findings_mark_the_fields_with_both_values_even_without_a_payload():
    comparison = compare(detail_of(judge(invoice(vendor_id="V999"), po(vendor_id="V100"))))
    vendor = next(f for f in comparison.header if f.field == "vendor_id")
    assert (vendor.invoice, vendor.purchase_order, vendor.findings) == ("V999", "V100", ["VENDOR_MISMATCH"])
    assert [(line.line_no, line.po_line_no) for line in comparison.lines] == [(1, 1), (2, 2)]  # matched by part


def test_without_a_payload_every_invoice_line_is_shown_beside_the_po_line_of_its_part():
    off = invoice(lines=[{**invoice()["lines"][0], "quantity": "9", "amount": "139.50"}, invoice()["lines"][1]],
                  tax_amount="12.18", total_amount="174.43")
    first, second = compare(detail_of(judge(off))).lines
    assert (first.line_no, first.po_line_no, second.po_line_no) == (1, 1, 2)
    assert fields(first)["quantity"] == ("9", "5", ["QUANTITY_EXCEEDS_OPEN"])
    assert fields(second)["unit_price"] == ("4.25", "4.25", [])


def test_a_row_from_before_the_invoice_was_kept_shows_the_payload_lines_and_the_findings():
    detail = detail_of(judge(invoice())).model_copy(update={"invoice_document": None})
    first, second = compare(detail).lines
    assert fields(first)["unit_price"] == ("15.50", "15.50", []) and second.po_line_no == 2


def test_an_invoice_line_is_shown_beside_the_po_line_the_rules_matched_not_the_first_of_its_part():
    """The rules' line matcher (rules.case): of the PO lines of a part, the one at the invoice's price."""
    cheaper = {**po()["lines"][0], "line_no": 1, "unit_price": "15.00"}
    lines = [cheaper, *({**line, "line_no": line["line_no"] + 1} for line in po()["lines"])]
    detail = detail_of(judge(invoice(), po(lines=lines))).model_copy(update={"rpa_payload": None})
    first, second = compare(detail).lines
    assert (first.po_line_no, second.po_line_no) == (2, 3)
    assert fields(first)["unit_price"] == ("15.50", "15.50", [])


def test_an_invoice_line_spread_over_two_po_lines_is_shown_beside_both():
    """One line of 10 on two PO lines of 5 each: shown against the last piece's PO line alone, 10
    against 5, which reads as over-invoicing; from the payload alone, as 5 at 77.50."""
    spread = [{**po()["lines"][0], "line_no": 1}, {**po()["lines"][0], "line_no": 3}, po()["lines"][1]]
    ten = invoice(lines=[{**invoice()["lines"][0], "quantity": "10", "amount": "155.00"}, invoice()["lines"][1]],
                  tax_amount="13.42", total_amount="191.17")
    verdict = judge(ten, po(lines=spread))
    assert verdict.status == "ready_to_process", verdict.reasons
    for detail in (detail_of(verdict), detail_of(verdict).model_copy(update={"invoice_document": None})):
        first, _ = compare(detail).lines
        assert (first.po_line_no, first.po_line_nos) == (1, [1, 3])
        assert fields(first)["quantity"] == ("10", "10", []) and fields(first)["amount"][0] == "155.00"
    held = judge({**ten, "tax_amount": "9.99"}, po(lines=spread))  # held for its tax: no payload
    first, _ = compare(detail_of(held)).lines
    assert first.po_line_nos == [1, 3] and fields(first)["quantity"] == ("10", "10", [])


def test_the_drill_down_reads_an_invoice_within_the_limits_the_worker_judged_it_with():
    """Over the default 1,000 lines (MAX_INVOICE_LINES allows up to 100,000), the comparison read the
    invoice as broken and showed a held line beside no PO line: what a clerk needs to release it."""
    lines = [{"line_no": 1, "part_number": "AC-100", "quantity": "1", "unit_price": "15.60", "amount": "15.60"}]
    lines += [{"line_no": n, "part_number": "FL-200", "quantity": "0.001", "unit_price": "4.25", "amount": "0.00"}
              for n in range(2, 1002)]
    document = invoice(invoice_id="BIG-1", invoice_number="INV-BIG-1", lines=lines, tax_amount="0",
                       extra_charges=[], total_amount="15.60")
    snapshot = PurchaseOrder.model_validate(po(tax_rate=None, lines=[
        po()["lines"][0], {**po()["lines"][1], "quantity_ordered": "100000"}]))
    api = make_api(max_invoice_lines=1500)
    api.scheduler.record([evaluate(document, snapshot, EvaluationContext(now=NOW, today=TODAY,
                                                                         limits=api.context.limits))])
    shown = api.client.get("/api/invoices/BIG-1", **api.as_clerk()).json()
    assert shown["reason_codes"] == ["PRICE_MISMATCH"]
    first = shown["comparison"]["lines"][0]
    assert first["po_line_nos"] == [1] and {f["field"]: f["purchase_order"] for f in first["fields"]}["quantity"] == "5"


def test_an_invoice_shown_again_is_not_matched_again_until_it_is_judged_again(monkeypatch):
    """A held invoice of 1,000 lines of one part took 0.5 s of CPU to match at every look, and the
    dashboard reads an open invoice again at each change: 16 clerks on it made the API crawl."""
    import api.comparison as comparison

    calls = []

    def counted(*args):
        calls.append(args)
        return matched_po_lines(*args)

    monkeypatch.setattr(comparison, "matched_po_lines", counted)
    matchings = Matchings(kept=1)
    held = detail_of(judge(invoice(tax_amount="9.99")))  # no payload: the rules' matching shows the PO side
    assert compare(held, matchings).lines == compare(held, matchings).lines and len(calls) == 1
    compare(held.model_copy(update={"decided_at": held.decided_at + timedelta(seconds=1)}), matchings)  # judged again
    compare(held, matchings)  # the one kept was the other
    assert len(calls) == 3
    ready = detail_of(judge(invoice()))
    compare(ready, matchings)
    assert len(calls) == 3  # the payload places every line


def test_clerks_looking_at_once_at_an_invoice_judged_again_wait_for_one_matching(monkeypatch):
    """Every open dashboard reads an invoice again when it is judged again: each matched it."""
    import threading

    import api.comparison as comparison

    calls = []

    def slow(*args):
        calls.append(args)
        threading.Event().wait(0.2)
        return matched_po_lines(*args)

    monkeypatch.setattr(comparison, "matched_po_lines", slow)
    matchings, held = Matchings(), detail_of(judge(invoice(tax_amount="9.99")))
    shown = []
    clerks = [threading.Thread(target=lambda: shown.append(compare(held, matchings))) for _ in range(8)]
    for clerk in clerks:
        clerk.start()
    for clerk in clerks:
        clerk.join()
    assert len(calls) == 1 and len(shown) == 8 and all(one == shown[0] for one in shown)
