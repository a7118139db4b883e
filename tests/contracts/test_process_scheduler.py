"""One contract for every processscheduler: in memory, SQLite and PostgreSQL (through Alembic)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connectors.scheduler import InMemoryProcessScheduler, SqlProcessScheduler, upgrade
from rules.lifecycle import InvoiceStatus, StatusChanged
from tests.unit.rules.builders import INVOICE, judge

AT = datetime(2026, 11, 25, 10, tzinfo=UTC)
READY = judge(INVOICE)
REVIEW = judge({**INVOICE, "invoice_id": "MP-2", "invoice_number": "INV-2", "total_amount": "1.00"})


def change(status: InvoiceStatus, event_id: str, invoice_id: str = "MP-1001", **extra) -> StatusChanged:
    return StatusChanged(event_id=event_id, invoice_id=invoice_id, invoice_version=1, po_number="PO-5001",
                         status=status, occurred_at=AT, **extra)


class ProcessSchedulerContract:
    @pytest.fixture
    def scheduler(self):
        raise NotImplementedError

    def test_a_verdict_creates_the_row(self, scheduler):
        scheduler.record([READY])
        (row,) = scheduler.rows()
        assert (row["invoice_id"], row["invoice_version"], row["status"]) == ("MP-1001", 1, "ready_to_process")
        assert (row["vendor_id"], row["invoice_number"], row["po_number"]) == ("V100", "INV-778", "PO-5001")
        assert row["rpa_payload"]["total_amount"] == "57.25" and row["rules_version"] == READY.rules_version
        assert row["invoice_document"]["invoice_number"] == "INV-778"  # the invoice as judged
        assert row["invoice_document"]["lines"][0]["unit_price"] == "15.50"

    def test_replaying_a_batch_changes_nothing(self, scheduler):
        batch = [READY, change(InvoiceStatus.SENT_TO_RPA, "s1"), REVIEW]
        scheduler.record(batch)
        rows, history = scheduler.rows(), scheduler.history("MP-1001")
        scheduler.record(batch)
        assert scheduler.rows() == rows and scheduler.history("MP-1001") == history
        assert [h["status"] for h in history] == ["ready_to_process", "sent_to_rpa"]

    def test_sent_to_rpa_keeps_what_the_bot_was_given_even_after_a_release(self, scheduler):
        scheduler.record([REVIEW, change(InvoiceStatus.RELEASED, "r1", invoice_id="MP-2", actor="ana", reason="ok"),
                          change(InvoiceStatus.SENT_TO_RPA, "s1", invoice_id="MP-2", rpa_payload=READY.rpa_payload)])
        (row,) = scheduler.rows()
        assert row["status"] == "sent_to_rpa" and row["rpa_payload"]["total_amount"] == "57.25"

    def test_a_replayed_verdict_does_not_pull_the_status_back(self, scheduler):
        scheduler.record([READY, change(InvoiceStatus.SENT_TO_RPA, "s1")])
        scheduler.record([change(InvoiceStatus.ENTERED, "e1", sampro_invoice_id="S-9")])
        scheduler.record([READY])
        (row,) = scheduler.rows()
        assert row["status"] == "entered" and row["sampro_invoice_id"] == "S-9"

    def test_waiting_for_po_before_any_verdict_creates_the_row(self, scheduler):
        scheduler.record([change(InvoiceStatus.WAITING_FOR_PO, "w1", invoice_id="MP-7")])
        assert [(r["invoice_id"], r["status"]) for r in scheduler.rows()] == [("MP-7", "waiting_for_po")]

    def test_release_is_history_with_who_and_why(self, scheduler):
        scheduler.record([REVIEW, change(InvoiceStatus.RELEASED, "r1", invoice_id="MP-2", actor="ana", reason="ok")])
        history = scheduler.history("MP-2")
        assert [(h["status"], h["actor"], h["reason"]) for h in history][-1] == ("released", "ana", "ok")

    def test_decided_invoices_are_found_by_vendor_and_number(self, scheduler):
        scheduler.record([READY, REVIEW])
        found = scheduler.decided_invoices([("V100", "INV-2"), ("V100", "NOPE")])
        assert [(k.invoice_id, k.status) for k in found] == [("MP-2", "bad_invoice")]


class TestInMemoryScheduler(ProcessSchedulerContract):
    @pytest.fixture
    def scheduler(self):
        return InMemoryProcessScheduler()


class TestSqliteScheduler(ProcessSchedulerContract):
    @pytest.fixture
    def scheduler(self, sqlite_engine):
        upgrade(sqlite_engine)
        return SqlProcessScheduler(sqlite_engine)


class TestPostgresScheduler(ProcessSchedulerContract):
    @pytest.fixture
    def scheduler(self, scheduler_pg_engine):
        upgrade(scheduler_pg_engine)
        return SqlProcessScheduler(scheduler_pg_engine)
