"""The worker's own recent verdicts, as the duplicate checks see them until processscheduler has them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from rules.context import KnownInvoice
from rules.duplicates import lookup_for
from streams.recently_decided import RecentlyDecided

AT = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


def known(invoice_id: str, number: str = "INV-9", vendor: str = "V100", status: str = "ready_to_process"):
    return KnownInvoice(invoice_id, vendor, number, status, Decimal("10.00"))


def lookup(number: str = "inv-9", vendor: str = " v100", total: str = "99.00"):
    return lookup_for({"vendor_id": vendor, "invoice_number": number, "total_amount": total})


def test_a_verdict_is_found_by_its_vendor_and_number_as_identifiers_and_by_no_other_vendor():
    recent = RecentlyDecided()
    recent.add([known("MP-1"), known("MP-2", number="INV-10")], AT)
    assert recent.matching([lookup()], recorded=()) == [known("MP-1")]
    assert recent.matching([lookup(vendor="V200")], recorded=()) == []


def test_what_processscheduler_recorded_of_the_invoice_wins():
    recent = RecentlyDecided()
    recent.add([known("MP-1")], AT)
    assert recent.matching([lookup()], recorded={"MP-1"}) == []


def test_a_verdict_is_kept_for_its_time_then_forgotten_unless_the_invoice_was_decided_again():
    recent = RecentlyDecided(keep=timedelta(seconds=60))
    recent.add([known("MP-1"), known("MP-2", number="INV-10")], AT)
    recent.add([known("MP-2", number="INV-10", status="manual_review")], AT + timedelta(seconds=30))
    recent.add([], AT + timedelta(seconds=60))
    assert len(recent) == 2
    recent.add([], AT + timedelta(seconds=61))
    assert recent.matching([lookup(), lookup("INV-10")], recorded=()) == [
        known("MP-2", number="INV-10", status="manual_review")]
    recent.add([], AT + timedelta(seconds=91))
    assert len(recent) == 0
