"""The worker's own recent verdicts, as the duplicate checks see them until processscheduler has them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from connectors.ports import InvoiceVersionAt
from connectors.sampro import InMemoryPurchaseOrderReader
from connectors.scheduler import InMemoryProcessScheduler
from rules.context import KnownInvoice
from rules.duplicates import lookups_for
from rules.judge import RulesJudge
from rules.lifecycle import InvoiceSubmitted
from rules.models import Verdict
from rules.policy import Policy
from streams.decisions import DecisionDesk
from streams.recently_decided import KEEP, RecentlyDecided
from tests.unit.streams.conftest import purchase_order, ready_invoice

AT = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


def known(invoice_id: str, number: str = "INV-9", vendor: str = "V100", status: str = "ready_to_process",
          dated: date = date(2026, 11, 20)):
    return KnownInvoice(invoice_id, vendor, number, status, Decimal("10.00"), dated)


def made(*verdicts: KnownInvoice, version: int = 1, partition: int = 0) -> list[tuple[int, KnownInvoice, str, int]]:
    return [(version, verdict, event(verdict.invoice_id, version, verdict.status), partition) for verdict in verdicts]


def event(invoice_id: str, version: int = 1, status: str = "ready_to_process") -> str:
    return f"verdict:{invoice_id}:v{version}:{status}:test"


def lookup(number: str = "inv-9", vendor: str = " v100", total: str = "99.00", dated: str = "2026-11-20"):
    """As the PO agent asks for an invoice of that date: the same total within 30 days of it."""
    (asked,) = lookups_for([{"vendor_id": vendor, "invoice_number": number, "total_amount": total,
                             "invoice_date": dated}], Policy())
    return asked


def test_a_verdict_is_found_by_its_vendor_and_number_as_identifiers_and_by_no_other_vendor():
    recent = RecentlyDecided()
    recent.add(made(known("MP-1"), known("MP-2", number="INV-10")), AT)
    assert recent.matching([lookup()], now=AT) == [known("MP-1")]
    assert recent.matching([lookup(vendor="V200")], now=AT) == []


def test_a_verdict_is_found_by_a_loose_number_or_the_same_total_as_a_store_finds_it():
    recent = RecentlyDecided()
    recent.add(made(known("MP-1"), known("MP-2", number="INV-10")), AT)
    assert recent.matching([lookup("INV 0009")], now=AT) == [known("MP-1")]
    assert recent.matching([lookup("X-1", total="10.00")], now=AT) == [
        known("MP-1"), known("MP-2", number="INV-10")]


def test_a_verdict_of_the_same_total_is_found_only_dated_within_the_duplicate_window():
    """Found from all time, as processscheduler found them, a flat-fee vendor's invoices of the day
    went into the audit of every other invoice of its total, whatever their dates."""
    recent = RecentlyDecided()
    recent.add(made(known("MP-1", number="RENT-11"), known("MP-2", number="RENT-10", dated=date(2026, 10, 20))), AT)
    assert recent.matching([lookup("RENT-12", total="10.00", dated="2026-12-20")], now=AT) == [
        known("MP-1", number="RENT-11")]  # 30 days after MP-1, 61 after MP-2
    assert recent.matching([lookup("RENT-12", total="10.00", dated="2026-12-21")], now=AT) == []
    assert recent.matching([lookup("rent 0010", dated="2031-01-01")], now=AT) == [  # a near number: no window
        known("MP-2", number="RENT-10", dated=date(2026, 10, 20))]


def test_an_invoice_judged_again_under_a_new_number_is_no_longer_found_by_its_old_one():
    recent = RecentlyDecided(keep=timedelta(seconds=60))
    recent.add(made(known("MP-1"), known("MP-1", number="INV-77")), AT)
    recent.add(made(known("MP-1", number="INV-78")), AT + timedelta(seconds=1))
    assert recent.matching([lookup()], now=AT) == []
    assert recent.matching([lookup("INV-78")], now=AT) == [known("MP-1", number="INV-78")]
    recent.add([], AT + timedelta(seconds=62))
    assert len(recent) == 0


def test_a_verdict_is_let_go_once_the_sink_recorded_it_or_a_later_version():
    recent = RecentlyDecided()
    recent.add(made(known("MP-1"), version=2), AT)
    recent.add(made(known("MP-2", number="INV-10")), AT)
    recent.recorded([("MP-1", 1, event("MP-1")), ("MP-3", 1, event("MP-3"))])
    assert len(recent) == 2  # version 1 of MP-1 is not the verdict kept
    recent.recorded([("MP-1", 2, event("MP-1", 2)), ("MP-2", 3, event("MP-2", 3))])
    assert len(recent) == 0 and recent.matching([lookup(), lookup("INV-10")], now=AT) == []


def test_an_earlier_event_of_the_same_version_recorded_late_keeps_the_verdict_made_since():
    """MP-1 was po_not_found, then ready once Sampro had its PO: the sink recording the first
    verdict let the second go, and the checks read MP-1 as rejected until the sink caught up."""
    recent = RecentlyDecided()
    recent.add(made(known("MP-1", status="po_not_found")), AT)
    recent.add(made(known("MP-1")), AT + timedelta(seconds=1))
    recent.recorded([("MP-1", 1, event("MP-1", status="po_not_found"))])
    assert recent.matching([lookup()], now=AT) == [known("MP-1")]
    recent.recorded([("MP-1", 1, event("MP-1"))])
    assert len(recent) == 0


def test_a_verdict_is_kept_for_its_time_then_forgotten_unless_the_invoice_was_decided_again():
    recent = RecentlyDecided(keep=timedelta(seconds=60))
    recent.add(made(known("MP-1"), known("MP-2", number="INV-10")), AT)
    recent.add(made(known("MP-2", number="INV-10", status="manual_review")), AT + timedelta(seconds=30))
    both = [lookup(), lookup("INV-10")]
    assert len(recent.matching(both, now=AT + timedelta(seconds=60))) == 2
    assert recent.matching(both, now=AT + timedelta(seconds=61)) == [
        known("MP-2", number="INV-10", status="manual_review")]
    recent.add([], AT + timedelta(seconds=91))
    assert len(recent) == 0


def test_a_verdict_the_sink_has_not_recorded_is_kept_through_an_outage_of_processscheduler():
    """Kept two minutes, a verdict waiting through a three-minute outage was gone when the PO
    agent's partition was let go before the sink's: its possible duplicate on another PO, same
    vendor and total, went to the RPA bot."""
    recent = RecentlyDecided()
    recent.add(made(known("MP-1")), AT)
    assert recent.matching([lookup("INV-777", total="10.00")], now=AT + timedelta(hours=3)) == [known("MP-1")]
    recent.recorded([("MP-1", 1, event("MP-1"))])
    assert len(recent) == 0


def test_unconfirmed_verdicts_are_kept_up_to_a_number_the_oldest_let_go_first():
    recent = RecentlyDecided(most=2)
    for second, invoice_id in enumerate(("MP-1", "MP-2", "MP-3")):
        recent.add(made(known(invoice_id, number=f"INV-{invoice_id}")), AT + timedelta(seconds=second))
    assert len(recent) == 2 and recent.matching([lookup("INV-MP-1")], now=AT) == []


def test_the_verdicts_the_sink_confirmed_leave_no_trace_behind():
    """Each verdict was remembered by when it was made for KEEP, confirmed or not: at 600 verdicts
    a second, a day of them."""
    recent = RecentlyDecided()
    for n in range(5_000):
        recent.add(made(known(f"MP-{n}", number=f"INV-{n}")), AT + timedelta(milliseconds=n))
        recent.recorded([(f"MP-{n}", 1, event(f"MP-{n}"))])
    assert len(recent) == 0 and len(recent._made) <= 1_025


def test_the_desk_finds_a_duplicate_decided_a_batch_before_that_processscheduler_has_not_recorded():
    """Through the decision service, with a processscheduler that has recorded nothing yet."""
    pos = [purchase_order(), purchase_order(po_number="PO-5002")]
    desk = DecisionDesk(InMemoryPurchaseOrderReader(pos), InMemoryProcessScheduler(),
                        lambda po, known, now: RulesJudge(po, known, Policy(), now), policy=Policy())
    ledgers: dict = {}
    first, again = (InvoiceSubmitted(invoice_id=invoice_id, version=1, po_number=po_number, received_at=AT,
                                     document=ready_invoice(invoice_id, invoice_number="INV-9", po_number=po_number))
                    for invoice_id, po_number in (("MP-1", "PO-5001"), ("MP-2", "PO-5002")))
    def verdict_of(work, now):
        decisions = desk.decide([work], ledgers, now)
        desk.remember(decisions, now)
        (verdict,) = (message for message in decisions.messages if isinstance(message, Verdict))
        return verdict

    assert verdict_of(first, AT).status == "ready_to_process"
    duplicate = verdict_of(again, AT + timedelta(seconds=1))
    assert [reason.code for reason in duplicate.reasons] == ["DUPLICATE_INVOICE"]
    # Never confirmed by a sink here: let go after KEEP all the same.
    much_later = verdict_of(again.model_copy(update={"version": 2}), AT + KEEP + timedelta(seconds=1))
    assert much_later.status == "ready_to_process", much_later.reasons


def test_the_verdicts_of_po_partitions_gone_to_another_worker_are_let_go():
    """The worker they went to records them; this one's sink never confirms them. Kept for the
    day, a vendor's upload again after the invoice's withdrawal was a DUPLICATE_INVOICE of one."""
    recent = RecentlyDecided()
    recent.add(made(known("MP-1"), partition=1) + made(known("MP-2", number="INV-10"), partition=2), AT)
    recent.gone({1})
    assert recent.matching([lookup(), lookup("INV-10")], now=AT) == [known("MP-2", number="INV-10")]



def test_where_a_version_was_decided_is_kept_until_the_sink_records_that_very_event_or_its_partition_goes():
    recent = RecentlyDecided()
    recent.placed([("MP-1", 1, "PO-A", "ready_to_process", "e-ready", 0),
                   ("MP-1", 1, "PO-A", "sent_to_rpa", "e-sent", 0), ("MP-2", 1, "PO-B", "manual_review", "e-2", 1)], AT)
    assert [(v.invoice_version, v.po_number, v.status) for v in recent.versions_of({"MP-1"})] == [
        (1, "PO-A", "sent_to_rpa")]
    recent.recorded([("MP-1", 1, "e-ready")])  # processscheduler shows it ready still
    assert [v.status for v in recent.versions_of({"MP-1"})] == ["sent_to_rpa"]
    recent.recorded([("MP-1", 1, "e-sent")])
    assert recent.versions_of({"MP-1", "MP-2"}) == [InvoiceVersionAt("MP-2", 1, "PO-B", "manual_review")]
    recent.gone({1})
    assert recent.versions_of({"MP-2"}) == []


def test_where_versions_were_decided_is_let_go_past_its_time_or_number_and_leaves_no_trace():
    """A batch's edits and deletes ask for a few invoices among up to `MOST` versions kept: looked
    up by invoice, each version let go from both."""
    recent = RecentlyDecided(most=2)
    for second, invoice_id in enumerate(("MP-1", "MP-2", "MP-3")):
        recent.placed([(invoice_id, 1, "PO-A", "ready", f"e-{invoice_id}", 0)], AT + timedelta(seconds=second))
    assert sorted(v.invoice_id for v in recent.versions_of({"MP-1", "MP-2", "MP-3"})) == ["MP-2", "MP-3"]
    recent.placed([("MP-3", 2, "PO-B", "ready_to_process", "e-MP-3-2", 0)], AT + KEEP + timedelta(seconds=3))
    assert [(v.invoice_id, v.invoice_version) for v in recent.versions_of({"MP-2", "MP-3"})] == [("MP-3", 2)]
    recent.recorded([("MP-3", 2, "e-MP-3-2")])
    assert recent.versions_of({"MP-3"}) == [] and recent._versions_by_invoice == {}
