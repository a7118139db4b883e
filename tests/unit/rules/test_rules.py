"""One table per rule code, with its boundaries: exactly equal, one minor unit off each way, tolerance edges."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal as D

import pytest

from rules import EvaluationContext, KnownInvoice, Policy, PurchaseOrder, Tolerance, evaluate
from rules.checks import as_found_now
from rules.context import NOT_PROCESSED
from rules.duplicates import hand_off_key, keeps_its_number
from rules.identifiers import IdentifierRules
from tests.unit.rules.builders import NOW, TODAY, codes, invoice, judge, po


def line(n: int, part: str, qty: str, price: str, amount: str | None) -> dict:
    doc = {"line_no": n, "part_number": part, "quantity": D(qty), "unit_price": D(price)}
    if amount is not None:
        doc["amount"] = D(amount)
    return doc


def one_line_invoice(qty="2", price="15.50", amount="31.00", tax="2.48", total="33.48", **extra) -> dict:
    return invoice(lines=[line(1, "AC-100", qty, price, amount)], tax_amount=D(tax), extra_charges=[],
                   total_amount=D(total), **extra)


def test_the_reference_invoice_is_ready_with_a_payload():
    verdict = judge(invoice())
    assert (verdict.status.value, verdict.http_status, verdict.reasons) == ("ready_to_process", 200, [])
    assert [(match.invoice_line_no, match.po_line_no) for match in verdict.rpa_payload.lines] == [(1, 1), (2, 2)]


def test_po_not_found_is_404_and_keeps_other_findings():
    verdict = judge(invoice(total_amount=D("1.00")), None)
    assert (verdict.status.value, verdict.http_status) == ("po_not_found", 404)
    assert codes(verdict) == ["PO_NOT_FOUND", "TOTAL_MISMATCH"]
    assert verdict.po_snapshot is None and verdict.rpa_payload is None


def test_a_po_sampro_has_but_cannot_give_is_po_not_found_saying_why():
    context = EvaluationContext(now=NOW, today=TODAY, po_problem="PO PO-5001: status 'Released' is not one of [...]")
    verdict = evaluate(invoice(), None, context)
    (finding,) = verdict.reasons
    assert (verdict.status.value, finding.code, finding.field, finding.actual) == (
        "po_not_found", "PO_NOT_FOUND", "po_number", "PO-5001")
    assert finding.message == ("Purchase order PO-5001 is in Sampro but cannot be read: PO PO-5001: status "
                               "'Released' is not one of [...]. The invoice is judged again when the PO changes "
                               "in Sampro.")


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({k: v for k, v in invoice().items() if k != "vendor_id"}, "vendor_id"),
        (invoice(lines=[]), "lines"),
        (invoice(lines=[line(1, "AC-100", "0", "15.50", None)]), "lines[1].quantity"),
        (invoice(lines=[line(1, "AC-100", "-1", "15.50", None)]), "lines[1].quantity"),
        (invoice(lines=[line(1, "AC-100", "1", "-0.01", None)]), "lines[1].unit_price"),
        (invoice(total_amount="12,50"), "total_amount"),
        (invoice(invoice_date="2026-13-01"), "invoice_date"),
        (invoice(tax_amount=D("-1")), "tax_amount"),
    ],
)
def test_invalid_invoice_names_the_field(doc, field):
    verdict = judge(doc)
    assert verdict.status.value == "bad_invoice" and verdict.http_status == 400
    assert [(r.code, r.field) for r in verdict.reasons] == [("INVALID_INVOICE", field)]


def test_invalid_invoice_lists_every_problem():
    doc = invoice(lines=[{"line_no": 1, "part_number": "AC-100", "quantity": "abc", "unit_price": "x"}], currency=None)
    assert sorted(r.field for r in judge(doc).reasons) == ["currency", "lines[1].quantity", "lines[1].unit_price"]


def test_quantity_just_above_zero_is_valid():
    assert "INVALID_INVOICE" not in codes(judge(one_line_invoice(qty="0.001", amount=None, tax="0", total="0.02")))


@pytest.mark.parametrize(
    ("status", "other_id", "is_duplicate"),
    [
        ("entered", "MP-9", True),
        ("ready_to_process", "MP-9", True),
        ("manual_review", "MP-9", True),
        ("bad_invoice", "MP-9", False),
        ("po_not_found", "MP-9", False),
        ("entered", "MP-1001", False),  # its own earlier version
    ],
)
def test_duplicate_invoice(status, other_id, is_duplicate):
    history = (KnownInvoice(other_id, "V100", " INV-778 ", status),)
    verdict = judge(invoice(), history=history)
    assert ("DUPLICATE_INVOICE" in codes(verdict)) is is_duplicate
    assert verdict.status.value == ("bad_invoice" if is_duplicate else "ready_to_process")


def test_same_number_from_another_vendor_is_not_a_duplicate():
    assert codes(judge(invoice(), history=(KnownInvoice("MP-9", "V999", "INV-778", "entered"),))) == []


@pytest.mark.parametrize(("vendor", "number", "strict", "same"), [
    (" v100", "inv-778 ", False, True), ("V100", "INV-778", False, True), ("V100", "inv-778", True, False),
    ("V101", "INV-778", False, False), ("V100", "INV-0778", False, False), ("V10", "0INV-778", False, False)])
def test_the_hand_off_key_is_the_vendor_and_number_as_duplicate_invoice_compares_them(vendor, number, strict, same):
    identifiers = IdentifierRules(frozenset({"invoice_number"}) if strict else frozenset())
    ready = judge(invoice()).rpa_payload
    assert ready is not None and (ready.vendor_id, ready.invoice_number) == ("V100", "INV-778")
    other = ready.model_copy(update={"vendor_id": vendor, "invoice_number": number})
    assert (hand_off_key(other, identifiers) == hand_off_key(ready, identifiers)) is same
    # Rejected it was before its hand-off, which is processscheduler behind: it keeps its number.
    counts = {"entered", "rpa_failed", "sent_to_rpa", "manual_review", "bad_invoice", "po_not_found", None}
    assert {status for status in [*counts, *NOT_PROCESSED] if keeps_its_number(status)} == counts


@pytest.mark.parametrize(("vendor", "flagged"), [("V100", False), ("V101", True), ("v100", False), (" V100", False),
                                                 ("V1OO", True)])
def test_vendor_mismatch(vendor, flagged):
    assert ("VENDOR_MISMATCH" in codes(judge(invoice(vendor_id=vendor)))) is flagged


@pytest.mark.parametrize(("currency", "flagged"), [("USD", False), ("usd", False), ("EUR", True)])
def test_currency_mismatch(currency, flagged):
    verdict = judge(invoice(currency=currency))
    assert ("CURRENCY_MISMATCH" in codes(verdict)) is flagged


def test_part_not_on_po_names_the_line():
    doc = invoice()
    doc["lines"][1]["part_number"] = "ZZ-999"
    verdict = judge(doc)
    assert [(r.code, r.line_no, r.actual) for r in verdict.reasons if r.code == "PART_NOT_ON_PO"] == [
        ("PART_NOT_ON_PO", 2, "ZZ-999")
    ]
    assert verdict.status.value == "bad_invoice"


@pytest.mark.parametrize(
    ("qty", "price", "amount", "flagged"),
    [
        ("2", "15.50", "31.00", False),
        ("2", "15.50", "31.01", True),
        ("2", "15.50", "30.99", True),
        ("3", "0.335", "1.01", False),  # 1.005 rounds half-up to 1.01
        ("3", "0.335", "1.00", True),
        ("2", "15.50", None, False),  # no amount given: nothing to compare
    ],
)
def test_line_amount_mismatch(qty, price, amount, flagged):
    po_doc = po(lines=[{"line_no": 1, "part_number": "AC-100", "unit_price": D(price), "quantity_ordered": D("9"),
                        "quantity_received": None, "quantity_invoiced": D("0")}], tax_rate=None)
    verdict = judge(one_line_invoice(qty, price, amount, tax="0", total=amount or "31.00"), po_doc)
    assert ("LINE_AMOUNT_MISMATCH" in codes(verdict)) is flagged


@pytest.mark.parametrize(
    ("total", "total_abs", "flagged"),
    [
        ("57.25", "0", False),
        ("57.26", "0", True),
        ("57.24", "0", True),
        ("57.30", "0.05", False),
        ("57.31", "0.05", True),
        ("57.20", "0.05", False),
    ],
)
def test_total_mismatch(total, total_abs, flagged):
    policy = Policy(default=Tolerance(total_abs=D(total_abs)))
    assert ("TOTAL_MISMATCH" in codes(judge(invoice(total_amount=D(total)), policy=policy))) is flagged


def test_total_uses_computed_amounts_when_lines_have_none():
    doc = invoice()
    for invoice_line in doc["lines"]:
        del invoice_line["amount"]
    assert codes(judge(doc)) == []


@pytest.mark.parametrize(
    ("status", "flagged"), [("open", False), ("closed", True), ("on_hold", True), ("cancelled", True)]
)
def test_po_not_open(status, flagged):
    verdict = judge(invoice(), po(status=status))
    assert codes(verdict) == (["PO_NOT_OPEN"] if flagged else [])
    assert verdict.status.value == ("manual_review" if flagged else "ready_to_process")


@pytest.mark.parametrize(
    ("price", "pct", "abs_", "flagged"),
    [
        ("15.50", "0", "0", False),
        ("15.500", "0", "0", False),  # exact decimals: 15.5 == 15.500
        ("15.51", "0", "0", True),
        ("15.49", "0", "0", True),
        ("15.655", "1", None, False),  # 1 % of 15.50 = 0.155: exactly on the edge
        ("15.656", "1", None, True),
        ("15.60", None, "0.10", False),
        ("15.61", None, "0.10", True),
        ("15.40", None, "0.10", True),  # price_abs is the upper limit: below the PO price needs a lower one
    ],
)
def test_price_mismatch(price, pct, abs_, flagged):
    amount = str((D("2") * D(price)).quantize(D("0.01")))
    section = {key: D(value) for key, value in (("price_pct", pct), ("price_abs", abs_)) if value is not None}
    policy = Policy(default=Tolerance(), vendors={"V100": section})
    doc = one_line_invoice(price=price, amount=amount, tax="0", total=amount)
    verdict = judge(doc, po(tax_rate=None), policy=policy)
    assert ("PRICE_MISMATCH" in codes(verdict)) is flagged
    if flagged:
        reason = next(r for r in verdict.reasons if r.code == "PRICE_MISMATCH")
        assert (reason.line_no, reason.expected, reason.actual) == (1, "15.50", price)


def test_price_tolerance_of_another_vendor_does_not_apply():
    policy = Policy(vendors={"V999": {"price_pct": D("50")}})
    doc = one_line_invoice(price="15.60", amount="31.20", tax="0", total="31.20")
    assert "PRICE_MISMATCH" in codes(judge(doc, po(tax_rate=None), policy=policy))


@pytest.mark.parametrize(
    ("qty", "invoiced_before", "in_flight", "pct", "flagged"),
    [
        ("5", "0", "0", "0", False),
        ("5.001", "0", "0", "0", True),
        ("4", "1", "0", "0", False),
        ("4", "2", "0", "0", True),
        ("3", "0", "2", "0", False),
        ("3", "0", "2.5", "0", True),
        ("5.5", "0", "0", "10", False),
        ("5.6", "0", "0", "10", True),
    ],
)
def test_quantity_exceeds_open(qty, invoiced_before, in_flight, pct, flagged):
    po_doc = po(tax_rate=None)
    po_doc["lines"][0]["quantity_invoiced"] = D(invoiced_before)
    po_doc["lines"][0]["quantity_received"] = None
    amount = str((D(qty) * D("15.50")).quantize(D("0.01")))
    policy = Policy(default=Tolerance(quantity_pct=D(pct)))
    verdict = judge(one_line_invoice(qty=qty, amount=amount, tax="0", total=amount), po_doc,
                    in_flight={"1": D(in_flight)}, policy=policy)
    assert ("QUANTITY_EXCEEDS_OPEN" in codes(verdict)) is flagged


def test_same_part_on_several_invoice_lines_is_added_up():
    lines = [line(1, "AC-100", "3", "15.50", "46.50"), line(2, "AC-100", "3", "15.50", "46.50")]
    verdict = judge(invoice(lines=lines, tax_amount=D("0"), extra_charges=[], total_amount=D("93.00")),
                    po(tax_rate=None))
    assert codes(verdict) == ["QUANTITY_EXCEEDS_OPEN"]
    assert (verdict.reasons[0].expected, verdict.reasons[0].actual) == ("5", "6")


def test_same_part_on_several_po_lines_matches_by_price_and_pools_quantity():
    po_doc = po(tax_rate=None, lines=[
        {"line_no": 1, "part_number": "AC-100", "unit_price": D("15.50"), "quantity_ordered": D("2"),
         "quantity_received": None, "quantity_invoiced": D("0")},
        {"line_no": 2, "part_number": "AC-100", "unit_price": D("14.00"), "quantity_ordered": D("2"),
         "quantity_received": None, "quantity_invoiced": D("0")},
    ])
    lines = [line(1, "AC-100", "2", "15.50", "31.00"), line(2, "AC-100", "2", "14.00", "28.00")]
    verdict = judge(invoice(lines=lines, tax_amount=D("0"), extra_charges=[], total_amount=D("59.00")), po_doc)
    assert codes(verdict) == []
    assert [(match.invoice_line_no, match.po_line_no) for match in verdict.rpa_payload.lines] == [(1, 1), (2, 2)]
    more = [line(1, "AC-100", "3", "14.00", "42.00"), line(2, "AC-100", "2", "14.00", "28.00")]
    over = judge(invoice(lines=more, tax_amount=D("0"), extra_charges=[], total_amount=D("70.00")), po_doc)
    assert codes(over) == ["QUANTITY_EXCEEDS_OPEN"]


@pytest.mark.parametrize(
    ("qty", "received", "three_way", "flagged"),
    [
        ("3", "3", True, False),
        ("4", "3", True, True),
        ("4", "3", False, False),  # 3-way matching off by default
        ("4", None, True, False),  # receipts not tracked for the line
    ],
)
def test_quantity_exceeds_received(qty, received, three_way, flagged):
    po_doc = po(tax_rate=None)
    po_doc["lines"][0]["quantity_received"] = None if received is None else D(received)
    amount = str((D(qty) * D("15.50")).quantize(D("0.01")))
    policy = Policy(default=Tolerance(three_way_match=three_way))
    verdict = judge(one_line_invoice(qty=qty, amount=amount, tax="0", total=amount), po_doc, policy=policy)
    assert ("QUANTITY_EXCEEDS_RECEIVED" in codes(verdict)) is flagged


SEVEN_ON_FIVE = one_line_invoice(qty="7", amount="108.50", tax="0", total="108.50")
OVER_OPEN = ("QUANTITY_EXCEEDS_OPEN", "5", "7",
             "PO line 1 (part AC-100): 7 invoiced but only 5 still open on PO PO-5001.")
OVER_RECEIVED = ("QUANTITY_EXCEEDS_RECEIVED", "5", "7",
                 "PO line 1 (part AC-100): 7 invoiced but only 5 received and not yet invoiced on PO PO-5001.")


@pytest.mark.parametrize("ordered", ["5", "5.0000"])
@pytest.mark.parametrize(("tolerance", "found"), [
    (Tolerance(), [OVER_OPEN]),
    (Tolerance(quantity_pct=D("5")), [OVER_OPEN]),
    (Tolerance(quantity_abs=D("0.5")), [OVER_OPEN]),
    (Tolerance(three_way_match=True), [OVER_OPEN, OVER_RECEIVED]),
    (Tolerance(three_way_match=True, quantity_pct=D("5"), received_pct=D("2.5")), [OVER_OPEN, OVER_RECEIVED]),
], ids=["exact", "5%", "0.5", "3-way", "3-way 5% 2.5%"])
def test_a_quantity_finding_reads_alike_under_every_tolerance_that_still_finds_it(ordered, tolerance, found):
    """The tolerance's digits stayed in the finding: 7 on 5 open read "7" exactly, "7.00" under 5 %
    and "7.0" under 0.5, and a clerk's release of it (matched by what it says) was taken back once AP
    set a tolerance; Sampro's numeric(18, 4) quantities read "5.0000". Written by value, they read alike."""
    po_doc = po(tax_rate=None)
    po_doc["lines"][0]["quantity_ordered"] = D(ordered)
    verdict = judge(SEVEN_ON_FIVE, po_doc, policy=Policy(default=tolerance))
    assert [(r.code, r.expected, r.actual, r.message) for r in verdict.reasons] == found


def test_a_quantity_written_in_the_digits_of_its_arithmetic_reads_as_these_rules_write_it():
    """Before rules 2026.12.14: compared as written, the first Sampro change after the upgrade judged
    such a held invoice anew, and took back the holds AP had released on it."""
    (now,) = judge(SEVEN_ON_FIVE, po(tax_rate=None)).reasons
    before = now.model_copy(update={
        "expected": "5.0000", "actual": "7.00",
        "message": "PO line 1 (part AC-100): 7.00 invoiced but only 5.0000 still open on PO PO-5001."})
    assert as_found_now(before) == now


@pytest.mark.parametrize(
    ("tax", "rate", "flagged"),
    [
        ("2.48", "0.08", False),
        ("2.49", "0.08", True),
        ("2.47", "0.08", True),
        ("0.51", "0.0165", False),  # 0.0165 x 31.00 = 0.5115 -> 0.51
        ("0.52", "0.0165", True),
        ("9.99", None, False),  # no tax rate on the PO: tax is not checked
    ],
)
def test_tax_mismatch(tax, rate, flagged):
    total = str(D("31.00") + D(tax))
    verdict = judge(one_line_invoice(tax=tax, total=total), po(tax_rate=None if rate is None else D(rate)))
    assert ("TAX_MISMATCH" in codes(verdict)) is flagged


@pytest.mark.parametrize(
    ("currency", "tax_rate", "tax", "flagged"),
    [
        ("USD", "0.05", "0.78", False),  # 5 % of 15.50 = 0.775 -> 0.78 half-up
        ("USD", "0.05", "0.77", True),
        ("JPY", "0.10", "2", False),  # 10 % of 15 = 1.5 -> 2 (no minor unit)
        ("JPY", "0.10", "1", True),
        ("BHD", "0.05", "0.776", False),  # 5 % of 15.515 = 0.77575 -> 0.776 (three decimals)
        ("BHD", "0.05", "0.775", True),
    ],
)
def test_tax_rounds_half_up_at_the_currency_precision(currency, tax_rate, tax, flagged):
    price = {"USD": "15.50", "JPY": "15", "BHD": "15.515"}[currency]
    po_doc = po(currency=currency, tax_rate=D(tax_rate))
    po_doc["lines"][0]["unit_price"] = D(price)
    doc = invoice(currency=currency, lines=[line(1, "AC-100", "1", price, price)], tax_amount=D(tax),
                  extra_charges=[], total_amount=D(price) + D(tax))
    assert ("TAX_MISMATCH" in codes(judge(doc, po_doc))) is flagged


def test_tax_is_not_charged_on_extra_charges():
    assert codes(judge(invoice())) == []  # 0.08 x 43.75 = 3.50; freight 10.00 is untaxed


@pytest.mark.parametrize(("kind", "flagged"), [("freight", False), ("handling", True)])
def test_charge_not_allowed(kind, flagged):
    verdict = judge(invoice(extra_charges=[{"kind": kind, "amount": D("10.00")}]))
    assert codes(verdict) == (["CHARGE_NOT_ALLOWED"] if flagged else [])


@pytest.mark.parametrize(
    ("dated", "flagged"),
    # Today is 2026-11-25 in UTC, 2026-11-26 for a vendor east of it: the day after is the future.
    [("2026-11-01", False), ("2026-10-31", True), ("2026-11-25", False), ("2026-11-26", False),
     ("2026-11-27", True)],
)
def test_invoice_date_invalid(dated, flagged):
    assert ("INVOICE_DATE_INVALID" in codes(judge(invoice(invoice_date=dated)))) is flagged


def test_a_future_date_reads_alike_whichever_day_it_is_judged():
    """A clerk's release is matched by what the finding says: with the day it was judged in it
    ("<= 2026-11-26"), the invoice judged again a day later was held again by the same finding."""
    doc, snapshot = invoice(invoice_date="2026-12-10"), PurchaseOrder.model_validate(po())
    said = [evaluate(doc, snapshot, EvaluationContext(now=datetime(2026, 11, day, 12, tzinfo=UTC))).reasons
            for day in (25, 26)]
    assert said[0] == said[1] and [r.code for r in said[0]] == ["INVOICE_DATE_INVALID"]


def test_every_finding_is_reported_and_the_strongest_status_wins():
    doc = invoice(vendor_id="V101", invoice_date="2026-12-31", total_amount=D("1.00"))
    doc["lines"][0]["unit_price"] = D("16.00")
    doc["lines"][0]["amount"] = D("32.00")
    verdict = judge(doc, po(status="closed"))
    assert set(codes(verdict)) >= {"VENDOR_MISMATCH", "TOTAL_MISMATCH", "PO_NOT_OPEN", "PRICE_MISMATCH",
                                  "INVOICE_DATE_INVALID", "TAX_MISMATCH"}
    assert verdict.status.value == "bad_invoice" and verdict.rpa_payload is None


def test_verdict_carries_rules_version_and_the_po_snapshot():
    verdict = judge(invoice())
    assert verdict.rules_version and verdict.po_snapshot.po_number == "PO-5001"
