"""One contract for every invoice read model: over the in-memory processscheduler, SQLite and
PostgreSQL (tables through Alembic), each seeded through its processscheduler as the sink does."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from connectors.scheduler import InMemoryProcessScheduler, SqlProcessScheduler, upgrade
from connectors.scheduler.read_model import InvoiceQuery
from connectors.scheduler.read_model_memory import InMemoryInvoiceReadModel
from connectors.scheduler.read_model_sql import SqlInvoiceReadModel
from rules.lifecycle import InvoiceStatus, StatusChanged
from tests.unit.rules.builders import invoice, judge, po

NOW = datetime(2026, 11, 25, 12, 0, 30, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return NOW - timedelta(minutes=minutes)


def verdict(document: dict, minutes: float, po_doc=None):
    return judge(document, po_doc or po(po_number=document["po_number"])).model_copy(
        update={"evaluated_at": at(minutes)})


def change(invoice_id: str, status: InvoiceStatus, cause: str, minutes: float, version: int = 1, po_number="PO-1",
           **extra) -> StatusChanged:
    return StatusChanged(event_id=f"{invoice_id}:v{version}:{status.value}:{cause}", invoice_id=invoice_id,
                         invoice_version=version, po_number=po_number, status=status, occurred_at=at(minutes), **extra)


A = invoice(invoice_id="A", invoice_number="INV-A", po_number="PO-1")
B = invoice(invoice_id="B", invoice_number="INV-B", po_number="PO-2", vendor_id="V200", total_amount="1.00")
C = invoice(invoice_id="C", invoice_number="INV-C", po_number="PO-1",
            lines=[{**A["lines"][0], "quantity": "9", "amount": "139.50"}, A["lines"][1]],
            tax_amount="12.18", total_amount="174.43")
D = invoice(invoice_id="D", invoice_number="INV-D", po_number="PO-3")
SEED = [
    verdict(A, 3 * 24 * 60),  # three days ago: ready, at the RPA bot, entered
    change("A", InvoiceStatus.SENT_TO_RPA, "verdict", 3 * 24 * 60),
    change("A", InvoiceStatus.ENTERED, "rpa:A:v1:attempt1", 10, sampro_invoice_id="S-A"),
    verdict(B, 50, po(po_number="PO-2", vendor_id="V200")),  # bad: TOTAL_MISMATCH
    change("C", InvoiceStatus.WAITING_FOR_PO, "parked", 45),
    verdict(C, 5),  # manual_review: QUANTITY_EXCEEDS_OPEN
    verdict(D, 2),
    change("D", InvoiceStatus.SENT_TO_RPA, "verdict", 2, po_number="PO-3"),
    change("E", InvoiceStatus.WAITING_FOR_PO, "parked", 20, po_number="PO-3"),
]


class InvoiceReadModelContract:
    @pytest.fixture
    def stores(self):
        """(processscheduler, read model over it)."""
        raise NotImplementedError

    @pytest.fixture
    def seeded(self, stores):
        scheduler, read_model = stores
        scheduler.record(SEED)
        return scheduler, read_model

    def listed(self, read_model, **query) -> list[str]:
        return [row.invoice_id for row in read_model.invoices(InvoiceQuery(**query)).items]

    def test_the_list_is_newest_first_with_a_total_per_filter(self, seeded):
        _, read_model = seeded
        assert self.listed(read_model) == ["E", "D", "C", "B", "A"]
        page = read_model.invoices(InvoiceQuery(limit=2, offset=1))
        assert [r.invoice_id for r in page.items] == ["D", "C"] and page.total == 5
        assert self.listed(read_model, status=InvoiceStatus.WAITING_FOR_PO) == ["E"]
        assert self.listed(read_model, po_number="PO-1") == ["C", "A"]
        assert self.listed(read_model, vendor_id="V200") == ["B"]

    def test_the_reason_filter_matches_the_code_exactly(self, seeded):
        _, read_model = seeded
        assert self.listed(read_model, reason_code="TOTAL_MISMATCH") == ["B"]
        assert self.listed(read_model, reason_code="QUANTITY_EXCEEDS_OPEN") == ["C"]
        assert self.listed(read_model, reason_code="QUANTITY_EXCEEDS_RECEIVED") == []
        assert read_model.invoices(InvoiceQuery(reason_code="PO_NOT_FOUND")).total == 0

    def test_the_decided_range_is_whole_utc_days(self, seeded):
        _, read_model = seeded
        today, three_days_ago = NOW.date(), NOW.date() - timedelta(days=3)
        assert self.listed(read_model, decided_from=today) == ["D", "C", "B"]
        assert self.listed(read_model, decided_from=three_days_ago, decided_to=three_days_ago) == ["A"]
        assert self.listed(read_model, decided_to=date(2026, 11, 1)) == []

    def test_one_invoice_with_its_verdict_history_and_exact_money(self, seeded):
        _, read_model = seeded
        found = read_model.invoice("A")
        assert (found.status, found.sampro_invoice_id, found.versions) == (InvoiceStatus.ENTERED, "S-A", [1])
        assert [h.status for h in found.history] == ["ready_to_process", "sent_to_rpa", "entered"]
        assert found.history[-1].occurred_at == at(10)
        assert found.rpa_payload.total_amount == Decimal("57.25")
        assert found.po_snapshot.lines[0].unit_price == Decimal("15.50")
        parked_first = read_model.invoice("C")
        assert [h.status for h in parked_first.history] == ["waiting_for_po", "manual_review"]
        assert parked_first.reasons[0].code == "QUANTITY_EXCEEDS_OPEN" and parked_first.decided_at == at(5)
        assert read_model.invoice("nope") is None and read_model.invoice("A", 2) is None

    def test_the_newest_version_unless_one_is_asked_for(self, seeded):
        scheduler, read_model = seeded
        scheduler.record([change("B", InvoiceStatus.SUPERSEDED, "v2", 1, po_number="PO-2"),
                          verdict({**B, "version": 2, "total_amount": "57.25"}, 1,
                                  po(po_number="PO-2", vendor_id="V200"))])
        assert read_model.invoice("B").invoice_version == 2 and read_model.invoice("B").versions == [1, 2]
        assert read_model.invoice("B", 1).status == InvoiceStatus.SUPERSEDED

    def test_kpi_counts_and_waiting(self, seeded):
        _, read_model = seeded
        kpi = read_model.kpi(NOW)
        assert kpi.total == 5 and kpi.by_status["entered"] == 1 and kpi.by_status["released"] == 0
        assert (kpi.waiting_for_rpa, kpi.parked) == (1, 1)
        assert kpi.oldest_waiting_since == at(20)  # E parked 20 minutes ago; D went to the bot 2 minutes ago
        assert kpi.by_reason == {"TOTAL_MISMATCH": 1, "QUANTITY_EXCEEDS_OPEN": 1}

    def test_kpi_per_minute_window(self, seeded):
        _, read_model = seeded
        kpi = read_model.kpi(NOW)
        assert kpi.window_start == datetime(2026, 11, 25, 11, 1, tzinfo=UTC)
        assert len(kpi.verdicts_per_minute) == 60 and sum(kpi.verdicts_per_minute) == 3  # B, C, D; not A
        assert kpi.verdicts_per_minute[-3] == 1  # D, two minutes ago
        assert kpi.verdicts_last_hour == {"bad_invoice": 1, "manual_review": 1, "ready_to_process": 1}
        assert sum(kpi.transitions_per_minute["waiting_for_po"]) == 2
        assert sum(kpi.transitions_per_minute["entered"]) == 1 and kpi.transitions_per_minute["entered"][-11] == 1

    def test_a_superseded_version_does_not_count_its_findings(self, seeded):
        scheduler, read_model = seeded
        scheduler.record([change("B", InvoiceStatus.SUPERSEDED, "v2", 1, po_number="PO-2")])
        assert "TOTAL_MISMATCH" not in read_model.kpi(NOW).by_reason

    def test_changes_since_a_history_event(self, seeded):
        scheduler, read_model = seeded
        start = read_model.changes(None)
        assert start.rows == [] and start.last_event >= len(SEED)
        assert read_model.changes(start.last_event).rows == []
        scheduler.record([change("D", InvoiceStatus.ENTERED, "rpa:D:v1:attempt1", 0, po_number="PO-3"),
                          change("C", InvoiceStatus.RELEASED, "r1", 0, actor="ana", reason="ok")])
        changed = read_model.changes(start.last_event)
        assert sorted((r.invoice_id, r.status) for r in changed.rows) == [("C", "released"), ("D", "entered")]
        assert changed.last_event > start.last_event and read_model.changes(changed.last_event).rows == []

    def test_rpa_round_trips_pair_each_outcome_with_its_attempt(self, seeded):
        scheduler, read_model = seeded
        scheduler.record([change("D", InvoiceStatus.RPA_FAILED, "rpa:D:v1:attempt1", 1, po_number="PO-3"),
                          change("D", InvoiceStatus.RELEASED, "r1", 0.5, po_number="PO-3"),
                          change("D", InvoiceStatus.SENT_TO_RPA, "r1", 0.5, po_number="PO-3"),
                          change("D", InvoiceStatus.ENTERED, "rpa:D:v1:attempt2", 0, po_number="PO-3")])
        three_days = (3 * 24 * 60 - 10) * 60.0  # A went to the bot three days before it was entered
        assert sorted(read_model.rpa_round_trips(at(60))) == [30.0, 60.0, three_days]
        assert read_model.rpa_round_trips(at(0.1)) == [30.0]

    def test_ping(self, stores):
        stores[1].ping()


class TestInMemoryReadModel(InvoiceReadModelContract):
    @pytest.fixture
    def stores(self):
        scheduler = InMemoryProcessScheduler()
        return scheduler, InMemoryInvoiceReadModel(scheduler)


class TestSqliteReadModel(InvoiceReadModelContract):
    @pytest.fixture
    def stores(self, sqlite_engine):
        upgrade(sqlite_engine)
        return SqlProcessScheduler(sqlite_engine), SqlInvoiceReadModel(sqlite_engine)


class TestPostgresReadModel(InvoiceReadModelContract):
    @pytest.fixture
    def stores(self, scheduler_pg_engine):
        upgrade(scheduler_pg_engine)
        return SqlProcessScheduler(scheduler_pg_engine), SqlInvoiceReadModel(scheduler_pg_engine)
