"""A recorded verdict judged again: the same under the same rules, different only where the rules differ."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal

from rules import KnownInvoice
from rules.context import EvaluationContext
from rules.evaluate import evaluate
from rules.limits import Limits
from rules.models import PurchaseOrder
from rules.policy import Policy, Tolerance
from rules.rejudge import Judgement, compare, judge_again
from tests.unit.rules.builders import NOW, PO, PRICE_OFF, TODAY, codes, invoice, judge, po

LENIENT = Policy(default=Tolerance(price_abs=Decimal("0.10")))


def test_the_same_rules_give_the_same_verdict_from_the_audit_record_alone():
    recorded = judge(PRICE_OFF, in_flight={"1": Decimal("4")},
                     history=(KnownInvoice("MP-0001", "V100", "INV-778", "entered"),))
    again = judge_again(recorded, Policy())
    assert (again.status, again.reasons) == (recorded.status, recorded.reasons)
    assert codes(again) == ["DUPLICATE_INVOICE", "PRICE_MISMATCH", "QUANTITY_EXCEEDS_OPEN"]
    assert not compare(recorded, again).changed


def test_other_tolerances_change_only_what_they_cover():
    recorded = judge(PRICE_OFF)
    again = judge_again(recorded, LENIENT)
    comparison = compare(recorded, again)
    assert (recorded.status.value, again.status.value) == ("manual_review", "ready_to_process")
    assert comparison.changed and comparison.removed_codes == ("PRICE_MISMATCH",) and comparison.added_codes == ()
    assert again.rules_version.startswith(f"{recorded.rules_version}+tol.")


def test_a_verdict_without_its_audit_record_cannot_be_judged_again():
    recorded = judge(invoice()).model_copy(update={"audit": None})
    assert judge_again(recorded, Policy()) is None
    assert not compare(recorded, None).changed


def test_a_verdict_is_judged_again_under_the_workers_invoice_limits():
    """A worker allowed 2,000 lines judged a 1,500-line invoice; judged again under the default
    1,000 it became bad_invoice under the very same rules version."""
    context = EvaluationContext(policy=Policy(), now=NOW, today=TODAY, limits=Limits(max_lines=1))
    recorded = evaluate(PRICE_OFF, PurchaseOrder.model_validate(PO), context)
    assert codes(recorded) == ["INVALID_INVOICE"]  # two lines, one allowed
    assert not compare(recorded, judge_again(recorded, Policy(), Limits(max_lines=1))).changed
    assert compare(recorded, judge_again(recorded, Policy())).changed


def test_quantities_at_the_bot_are_read_by_part_in_audits_of_rules_before_lines_and_by_line_after():
    """Part 100200 of an old audit was read as PO line 100200, which has none: its quantity went."""
    po = {**PO, "lines": [{**PO["lines"][0], "part_number": "100200", "quantity_ordered": "5",
                           "quantity_invoiced": "2"}, PO["lines"][1]]}
    document = invoice()
    document["lines"][0]["part_number"] = "100200"
    recorded = judge(document, po, in_flight={"1": Decimal("4")})
    assert "QUANTITY_EXCEEDS_OPEN" in codes(recorded)
    old = recorded.model_copy(update={"rules_version": "2026.11.1", "audit": recorded.audit.model_copy(
        update={"in_flight": {"100200": Decimal("4")}})})
    assert codes(judge_again(old, Policy())) == codes(recorded)
    assert codes(judge_again(recorded, Policy())) == codes(recorded)


def test_quantities_an_old_audit_counted_by_part_fill_its_po_lines_in_line_order_up_to_what_each_has_open():
    """AC-100 on two PO lines of 5, 7 at the bot, an invoice for 4: the 2026.11.1 rules held it (3
    open of the part), and so do today's with the 7 on the lines (5 and 2). The replay put all 7 on
    line 1, left line 2 its 5 and said the hold would now be ready_to_process."""
    line = {"part_number": "AC-100", "unit_price": "15.50", "quantity_ordered": "5", "quantity_received": None,
            "quantity_invoiced": "0"}
    two_lines = po(lines=[{"line_no": 1, **line}, {"line_no": 2, **line}], tax_rate=None)
    document = invoice(lines=[{"line_no": 1, "part_number": "AC-100", "quantity": "4", "unit_price": "15.50",
                               "amount": "62.00"}], tax_amount="0", extra_charges=[], total_amount="62.00")
    today = judge(document, two_lines, in_flight={"1": Decimal("5"), "2": Decimal("2")})
    assert codes(today) == ["QUANTITY_EXCEEDS_OPEN"]
    old = today.model_copy(update={"rules_version": "2026.11.1", "audit": today.audit.model_copy(
        update={"in_flight": {"AC-100": Decimal("7")}})})
    again = judge_again(old, Policy())
    assert (again.status, again.reasons) == (today.status, today.reasons)


def test_a_part_at_the_bot_past_what_its_po_lines_have_open_is_left_on_the_last_line():
    """More at the bot than the part's lines had open (Sampro invoiced some meanwhile): the rest is
    counted on its last PO line, as the old rules counted it against the part."""
    line = {"part_number": "AC-100", "unit_price": "15.50", "quantity_ordered": "5", "quantity_received": None}
    two_lines = po(lines=[{"line_no": 1, **line, "quantity_invoiced": "4"},
                          {"line_no": 2, **line, "quantity_invoiced": "0"}], tax_rate=None)
    document = invoice(lines=[{"line_no": 1, "part_number": "AC-100", "quantity": "1", "unit_price": "15.50",
                               "amount": "15.50"}], tax_amount="0", extra_charges=[], total_amount="15.50")
    today = judge(document, two_lines, in_flight={"1": Decimal("1"), "2": Decimal("6")})
    old = today.model_copy(update={"rules_version": "2026.11.1", "audit": today.audit.model_copy(
        update={"in_flight": {"AC-100": Decimal("7")}})})
    assert codes(today) == ["QUANTITY_EXCEEDS_OPEN"]
    assert judge_again(old, Policy()).reasons == today.reasons


def test_the_duplicate_checks_are_not_judged_again_from_an_audit_that_kept_only_the_same_number():
    """INV42 judged after INV-0042 was entered: the 2026.11.1 rules kept no earlier invoice of
    another number in its audit, so today's POSSIBLE_DUPLICATE cannot be found again, and the
    replay said nothing would change, as if the duplicate checks had been judged again."""
    seen = KnownInvoice("MP-0001", "V100", "INV-0042", "entered")
    today = judge(invoice(invoice_number="INV42"), history=(seen,))
    assert codes(today) == ["POSSIBLE_DUPLICATE"]
    old = judge(invoice(invoice_number="INV42")).model_copy(update={"rules_version": "2026.11.1"})
    again = judge_again(old, Policy())
    assert not again.duplicates_judged and codes(again) == []
    comparison = compare(old, again)
    assert not comparison.changed and not comparison.duplicates_judged
    assert judge_again(today, Policy()).duplicates_judged
    assert compare(today, judge_again(today, Policy())).duplicates_judged


def test_an_audit_keeps_the_earlier_invoices_the_duplicate_checks_can_use_and_a_replay_finds_the_same():
    """A flat-fee vendor's invoice of one total a month for ten years, and fifty resends of this
    number it rejected: every one was kept in the verdict's audit (8,000 of them made a verdict of
    494 kB, and a held record of 1.27 MB in its PO's ledger). Kept now: the entered invoice of its
    number from years ago (DUPLICATE_INVOICE has no window), and the two of its total within 30 days."""
    entered = KnownInvoice("MP-0001", "V100", "inv-778", "entered", Decimal("57.25"), date(2019, 3, 1))
    monthly = [KnownInvoice(f"MP-M{n}", "V100", f"RENT-{n}", "entered", Decimal("57.25"),
                            date(2026, 11, 20) - timedelta(days=30 * n)) for n in range(120)]
    rejected = [KnownInvoice(f"MP-R{n}", "V100", "INV-778", "bad_invoice", Decimal("57.25"), date(2026, 11, 20))
                for n in range(50)]
    recorded = judge(invoice(), history=(entered, *monthly, *rejected))
    assert [(finding.code, finding.expected) for finding in recorded.reasons] == [
        ("DUPLICATE_INVOICE", "MP-0001"), ("POSSIBLE_DUPLICATE", "MP-M0"), ("POSSIBLE_DUPLICATE", "MP-M1")]
    assert [earlier.invoice_id for earlier in recorded.audit.earlier_invoices] == ["MP-0001", "MP-M0", "MP-M1"]
    again = judge_again(recorded, Policy())
    assert (again.status, again.reasons) == (recorded.status, recorded.reasons)
    assert not compare(recorded, again).changed


def test_findings_in_another_order_are_no_change():
    """Rules that only check in another order: every verdict of two findings or more read as changed."""
    recorded = judge(PRICE_OFF, in_flight={"1": Decimal("4")})
    again = judge_again(recorded, Policy())
    assert len(again.reasons) >= 2
    assert not compare(recorded, Judgement(again.status, again.reasons[::-1], again.rules_version)).changed
    assert compare(recorded, Judgement(again.status, again.reasons[1:], again.rules_version)).changed


def test_a_finding_worded_by_older_rules_is_compared_as_these_rules_word_it():
    """A future date worded with the day of its judging (rules before 2026.12.12) is the finding
    today's rules make, as the PO ledger reads it (`as_found_now`): compared as written, every such
    verdict read as changed, and a replay gating a change of rules could never pass."""
    now = judge(invoice(invoice_date="2026-12-20"))
    (found,) = [reason for reason in now.reasons if reason.code == "INVOICE_DATE_INVALID"]
    worded_before = found.model_copy(update={
        "expected": "<= 2026-11-26",
        "message": "Invoice dated 2026-12-20, in the future (today is 2026-11-25, 2026-11-26 east of UTC)."})
    recorded = now.model_copy(update={"rules_version": "2026.12.11",
                                      "reasons": [worded_before if r is found else r for r in now.reasons]})
    assert not compare(recorded, judge_again(recorded, Policy())).changed


def test_a_quantity_tolerance_that_still_finds_the_quantity_over_changes_nothing():
    """7 on 5 open judged again under a 5 % quantity tolerance read "7.00" (the tolerance's digits),
    and `replay --tolerances` counted the hold it left standing as a change (exit 3 under
    --fail-on-change). So too a verdict of rules before 2026.12.14 that wrote it "7.00"."""
    seven = invoice(lines=[{"line_no": 1, "part_number": "AC-100", "quantity": "7", "unit_price": "15.50",
                            "amount": "108.50"},
                           {"line_no": 2, "part_number": "FL-200", "quantity": "3", "unit_price": "4.25",
                            "amount": "12.75"}], tax_amount="9.70", total_amount="140.95")
    recorded = judge(seven)
    assert codes(recorded) == ["QUANTITY_EXCEEDS_OPEN"]
    tolerant = Policy(default=Tolerance(quantity_pct=Decimal("5")))
    assert not compare(recorded, judge_again(recorded, tolerant)).changed
    (over,) = recorded.reasons
    written_before = recorded.model_copy(update={"reasons": [over.model_copy(update={"actual": "7.00"})]})
    assert not compare(written_before, judge_again(recorded, Policy())).changed
