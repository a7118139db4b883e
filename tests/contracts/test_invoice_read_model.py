"""One contract for every invoice read model: over the in-memory processscheduler, SQLite and
PostgreSQL (tables through Alembic), each seeded through its processscheduler as the sink does."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import event

from api.live import LiveFeed
from connectors.scheduler import InMemoryProcessScheduler, SqlProcessScheduler, upgrade
from connectors.scheduler.read_model import CHANGES_PER_CALL, InvoiceQuery
from connectors.scheduler.read_model_memory import InMemoryInvoiceReadModel
from connectors.scheduler.read_model_sql import SqlInvoiceReadModel
from rules.lifecycle import InvoiceStatus, StatusChanged
from tests.unit.rules.builders import invoice, judge, po

DAY = 24 * 60  # minutes
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




def held(invoice_id: str, po_number: str) -> dict:
    """C's document (manual_review, QUANTITY_EXCEEDS_OPEN) as another invoice."""
    return {**C, "invoice_id": invoice_id, "invoice_number": f"INV-{invoice_id}", "po_number": po_number}


def ready(invoice_id: str, po_number: str) -> dict:
    return {**A, "invoice_id": invoice_id, "invoice_number": f"INV-{invoice_id}", "po_number": po_number}


# Besides SEED, for AP's own figures (the last 30 days: 2026-10-27 to today, 2026-11-25):
AP_HISTORY = [
    # F: held ten days ago, released by a clerk two days ago, entered a day ago: touched, a hold cleared by a clerk.
    verdict(held("F", "PO-4"), 10 * DAY),
    change("F", InvoiceStatus.RELEASED, "r-f", 2 * DAY, po_number="PO-4", actor="ana", reason="buyer agreed"),
    change("F", InvoiceStatus.SENT_TO_RPA, "r-f", 2 * DAY, po_number="PO-4"),
    change("F", InvoiceStatus.ENTERED, "rpa:F:v1:attempt1", DAY, po_number="PO-4"),
    # G: held 40 days ago (judged before the period), ready when judged again after a Sampro change two days
    # ago, entered 47 hours ago: touchless, a hold cleared by re-judgement.
    verdict(held("G", "PO-5"), 40 * DAY),
    verdict(ready("G", "PO-5"), 2 * DAY).model_copy(update={"judged_after": "sampro:PO-5:2026-11-23"}),
    change("G", InvoiceStatus.SENT_TO_RPA, "verdict", 2 * DAY, po_number="PO-5"),
    change("G", InvoiceStatus.ENTERED, "rpa:G:v1:attempt1", 47 * 60, po_number="PO-5"),
    # H: ready eight days ago, the RPA bot failed: an open exception older than a week.
    verdict(ready("H", "PO-6"), 8 * DAY),
    change("H", InvoiceStatus.SENT_TO_RPA, "verdict", 8 * DAY, po_number="PO-6"),
    change("H", InvoiceStatus.RPA_FAILED, "rpa:H:v1:attempt1", 8 * DAY, po_number="PO-6"),
    # I: awaiting its goods for four days; judged again an hour ago, still waiting: its age runs on.
    verdict(held("I", "PO-7"), 4 * DAY),
    change("I", InvoiceStatus.AWAITING_RECEIPT, "receipt-first", 4 * DAY, po_number="PO-7"),
    verdict(held("I", "PO-7"), 60).model_copy(update={"judged_after": "sampro:PO-7:2026-11-25"}),
    change("I", InvoiceStatus.AWAITING_RECEIPT, "receipt-again", 60, po_number="PO-7"),
    # J: ready, sent by a clerk (approval mode): touched, entered two hours after its verdict.
    verdict(ready("J", "PO-8"), 30 * 60),
    change("J", InvoiceStatus.SENT_TO_RPA, "approve-j", 29 * 60, po_number="PO-8", actor="ana"),
    change("J", InvoiceStatus.ENTERED, "rpa:J:v1:attempt1", 28 * 60, po_number="PO-8"),
    # K: entered before the period: in none of the period's figures.
    verdict(ready("K", "PO-9"), 41 * DAY),
    change("K", InvoiceStatus.SENT_TO_RPA, "verdict", 41 * DAY, po_number="PO-9"),
    change("K", InvoiceStatus.ENTERED, "rpa:K:v1:attempt1", 40 * DAY, po_number="PO-9"),
    # O: the bot failed, a clerk released it (not a hold), entered five days ago.
    verdict(ready("O", "PO-10"), 6 * DAY),
    change("O", InvoiceStatus.SENT_TO_RPA, "verdict", 6 * DAY, po_number="PO-10"),
    change("O", InvoiceStatus.RPA_FAILED, "rpa:O:v1:attempt1", 6 * DAY, po_number="PO-10"),
    change("O", InvoiceStatus.RELEASED, "r-o", 5 * DAY + 1, po_number="PO-10", actor="ana", reason="retry"),
    change("O", InvoiceStatus.SENT_TO_RPA, "r-o", 5 * DAY + 1, po_number="PO-10"),
    change("O", InvoiceStatus.ENTERED, "rpa:O:v1:attempt2", 5 * DAY, po_number="PO-10"),
    # P: no such PO in Sampro, two days ago.
    judge(ready("P", "PO-11"), None).model_copy(update={"evaluated_at": at(2 * DAY)}),
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

    def test_the_vendor_filter_finds_the_vendor_as_the_rules_judge_it(self, stores):
        """The rules judge `v100` and `V100 ` as V100's invoices (ready, on V100's PO); listed by
        the vendor id as sent, a clerk asking for V100 never saw them. A row with no key (no
        invoice number to look up) is found by its vendor id as sent."""
        scheduler, read_model = stores
        scheduler.record([verdict(ready("LOWER", "PO-1") | {"vendor_id": "v100"}, 3),
                          verdict(ready("SPACED", "PO-1") | {"vendor_id": "V100 "}, 2),
                          verdict(ready("NO-NUMBER", "PO-1") | {"vendor_id": "V300", "invoice_number": ""}, 1)])
        assert read_model.invoice("SPACED").status == InvoiceStatus.READY_TO_PROCESS
        assert self.listed(read_model, vendor_id="V100") == ["SPACED", "LOWER"]
        assert self.listed(read_model, vendor_id=" v100") == ["SPACED", "LOWER"]
        assert self.listed(read_model, vendor_id="V300") == ["NO-NUMBER"]
        assert read_model.invoices(InvoiceQuery(vendor_id="v300")).total == 0

    def test_a_page_after_another_starts_where_it_ended_while_invoices_leave_the_filter(self, stores):
        """A clerk works down the held invoices, releasing as she goes: by offset, each release
        moved an invoice from the next page onto the page already read, never seen."""
        scheduler, read_model = stores
        scheduler.record([verdict(held(f"H{n}", f"PO-2{n}"), 60 - n) for n in range(1, 6)])
        held_ones = {"status": InvoiceStatus.MANUAL_REVIEW, "limit": 2}
        first = read_model.invoices(InvoiceQuery(**held_ones))
        assert [row.invoice_id for row in first.items] == ["H5", "H4"] and first.next_before is not None
        scheduler.record([change("H5", InvoiceStatus.RELEASED, "r-h5", 1, po_number="PO-25", actor="ana",
                                 reason="buyer agreed")])
        second = read_model.invoices(InvoiceQuery(**held_ones, before=first.next_before))
        assert [row.invoice_id for row in second.items] == ["H3", "H2"] and second.total == 4
        assert self.listed(read_model, **held_ones, offset=2) == ["H2", "H1"]  # H3 never seen
        last = read_model.invoices(InvoiceQuery(**held_ones, before=second.next_before))
        assert [row.invoice_id for row in last.items] == ["H1"] and last.next_before is None
        assert read_model.invoices(InvoiceQuery(limit=5)).next_before is None  # exactly one page: no next

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

    def test_the_versions_entered_as_a_sampro_invoice_are_found_by_it_exactly(self, seeded):
        """What the API looks an entry the RPA bot reports up by: another invoice recorded entered
        as the same Sampro invoice means one of the two is not in Sampro."""
        scheduler, read_model = seeded
        scheduler.record([verdict(ready("Q", "PO-12"), 3), change("Q", InvoiceStatus.SENT_TO_RPA, "verdict", 3,
                                                                   po_number="PO-12"),
                          change("Q", InvoiceStatus.ENTERED, "rpa:Q:v1:attempt1", 1, po_number="PO-12",
                                 sampro_invoice_id="S-A")])
        assert read_model.entered_as("S-A") == [("A", 1), ("Q", 1)]
        assert read_model.entered_as("s-a") == read_model.entered_as("S-A ") == read_model.entered_as("S-B") == []

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

    def test_the_status_figures_are_the_kpi_without_findings_and_ap_figures(self, seeded):
        _, read_model = seeded
        figures, kpi = read_model.status_figures(NOW), read_model.kpi(NOW)
        assert figures.by_status["sent_to_rpa"] == 1 and sum(figures.verdicts_per_minute) == 3
        assert figures.model_dump() == kpi.model_dump(exclude={"by_reason", "ap"})

    def test_a_superseded_version_does_not_count_its_findings(self, seeded):
        scheduler, read_model = seeded
        scheduler.record([change("B", InvoiceStatus.SUPERSEDED, "v2", 1, po_number="PO-2")])
        assert "TOTAL_MISMATCH" not in read_model.kpi(NOW).by_reason

    def test_ap_figures_of_an_empty_processscheduler(self, stores):
        ap = stores[1].kpi(NOW).ap
        assert ap.period_start == datetime(2026, 10, 27, tzinfo=UTC)
        assert (ap.entered, ap.touchless_rate, ap.judged, ap.first_pass_match_rate) == (0, None, 0, None)
        assert (ap.cycle_time_median_seconds, ap.cycle_time_p90_seconds, ap.open_exceptions) == (None, None, 0)
        assert ap.entered_touchless_per_day == ap.entered_touched_per_day == [0] * 30
        assert ap.open_exceptions_by_age == {"0-1d": 0, "1-3d": 0, "3-7d": 0, "7d+": 0}
        assert ap.open_exceptions_by_reason == {}

    def test_touchless_rate_and_entries_per_day(self, seeded):
        scheduler, read_model = seeded
        scheduler.record(AP_HISTORY)
        ap = read_model.kpi(NOW).ap
        assert (ap.entered, ap.entered_touchless) == (5, 2)  # A and G; F released, J sent by a clerk, O released
        assert ap.touchless_rate == 0.4
        assert ap.entered_touchless_per_day[-1] == 1 and ap.entered_touchless_per_day[-3] == 1  # A today, G
        assert ap.entered_touched_per_day[-2] == 2 and ap.entered_touched_per_day[-6] == 1  # F and J, O
        assert sum(ap.entered_touchless_per_day) + sum(ap.entered_touched_per_day) == 5

    def test_first_pass_match_rate(self, seeded):
        scheduler, read_model = seeded
        scheduler.record(AP_HISTORY)
        ap = read_model.kpi(NOW).ap
        # First judged in the period: A, D, H, J, O ready; B, C, F, I, P not. G and K were judged before it.
        assert (ap.judged, ap.first_pass_ready) == (10, 5) and ap.first_pass_match_rate == 0.5

    def test_holds_cleared_by_re_judgement_and_by_a_clerk(self, seeded):
        scheduler, read_model = seeded
        scheduler.record(AP_HISTORY)
        ap = read_model.kpi(NOW).ap
        # G made ready by a verdict after a Sampro change; F released while held. O's release followed an
        # RPA failure (not a hold); I's re-judgement left it waiting.
        assert (ap.holds_cleared_by_rejudgement, ap.holds_cleared_by_clerk) == (1, 1)

    def test_cycle_time_from_upload_to_entered(self, seeded):
        scheduler, read_model = seeded
        scheduler.record(AP_HISTORY)
        ap = read_model.kpi(NOW).ap
        # Entered in the period, from each one's first history event: J 2 h, O 1 day, A 3 days less 10 min,
        # F 9 days, G 40 days less 47 h.
        hour = 3600.0
        assert ap.cycle_time_median_seconds == pytest.approx(72 * hour - 600)
        assert ap.cycle_time_p90_seconds == pytest.approx(9 * 24 * hour + 0.6 * (40 * 24 * hour - 47 * hour
                                                                                 - 9 * 24 * hour))

    def test_open_exceptions_by_age_in_their_status_and_by_reason(self, seeded):
        scheduler, read_model = seeded
        scheduler.record(AP_HISTORY)
        ap = read_model.kpi(NOW).ap
        assert ap.open_exceptions == 5  # B, C, H, I, P
        assert ap.open_exceptions_by_age == {"0-1d": 2, "1-3d": 1, "3-7d": 1, "7d+": 1}  # B, C; P; I; H
        assert ap.open_exceptions_by_reason == {"TOTAL_MISMATCH": 1, "QUANTITY_EXCEEDS_OPEN": 2, "PO_NOT_FOUND": 1,
                                                "RPA_FAILED": 1}

    def test_an_exception_ages_from_its_latest_stay_in_the_status(self, seeded):
        scheduler, read_model = seeded
        scheduler.record([*AP_HISTORY,
                          change("H", InvoiceStatus.RELEASED, "r-h", 30, po_number="PO-6", actor="ana", reason="x"),
                          change("H", InvoiceStatus.SENT_TO_RPA, "r-h", 30, po_number="PO-6"),
                          change("H", InvoiceStatus.RPA_FAILED, "rpa:H:v1:attempt2", 20, po_number="PO-6")])
        assert read_model.kpi(NOW).ap.open_exceptions_by_age == {"0-1d": 3, "1-3d": 1, "3-7d": 1, "7d+": 0}

    def test_a_note_on_an_entered_invoice_counts_no_second_entry(self, seeded):
        """The vendor withdrew K, entered 40 days ago, yesterday: the note (an `entered` event with a
        reason) counted K as entered yesterday, after a cycle of 40 days."""
        scheduler, read_model = seeded
        scheduler.record(AP_HISTORY)
        before = read_model.kpi(NOW).ap
        scheduler.record([change("K", InvoiceStatus.ENTERED, "withdrawn-after-entry", DAY, po_number="PO-9",
                                 reason="The vendor withdrew this invoice after it was entered in Sampro."),
                          change("A", InvoiceStatus.ENTERED, "replaced-v2", 5, reason="Version 2 names PO-2")])
        ap = read_model.kpi(NOW).ap
        assert ap.model_dump() == before.model_dump()

    def test_a_note_on_the_version_at_the_bot_is_no_hand_off(self, stores):
        """The vendor withdrew Q while the bot had it (a sent_to_rpa event with a reason): its wait at the
        bot, and its round trip, started again at the note."""
        scheduler, read_model = stores
        scheduler.record([verdict(ready("Q", "PO-12"), 3 * DAY),
                          change("Q", InvoiceStatus.SENT_TO_RPA, "verdict", 3 * DAY, po_number="PO-12"),
                          change("Q", InvoiceStatus.SENT_TO_RPA, "withdrawn-at-rpa", 10, po_number="PO-12",
                                 reason="The vendor withdrew this invoice while the RPA bot has it.")])
        assert read_model.kpi(NOW).oldest_waiting_since == at(3 * DAY)
        scheduler.record([change("Q", InvoiceStatus.ENTERED, "rpa:Q:v1:attempt1", 0, po_number="PO-12")])
        assert read_model.rpa_round_trips(at(60)) == [3 * DAY * 60.0]

    def test_a_hold_cleared_by_re_judgement_on_a_busy_po_is_counted(self, stores):
        """Cleared while another invoice held its PO, R waited its turn (waiting_for_po) before its ready
        verdict, which then followed no hold, and was not counted."""
        scheduler, read_model = stores
        scheduler.record([verdict(held("R", "PO-13"), 5 * DAY),
                          change("R", InvoiceStatus.WAITING_FOR_PO, "recheck-ab12", 2 * DAY, po_number="PO-13"),
                          verdict(ready("R", "PO-13"), DAY).model_copy(update={"judged_after": "sampro:PO-13:1"})])
        assert read_model.kpi(NOW).ap.holds_cleared_by_rejudgement == 1

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

    def test_a_backlog_of_changes_comes_in_pieces_of_the_same_size_from_every_store(self, stores):
        """The in-memory store gave all at once: the feed's paging was never tried on it."""
        scheduler, read_model = stores
        start = read_model.changes(None).last_event
        scheduler.record([verdict(ready(f"B{n}", "PO-9"), 0) for n in range(CHANGES_PER_CALL + 3)])
        first = read_model.changes(start)
        assert len(first.rows) == CHANGES_PER_CALL
        rest = read_model.changes(first.last_event)
        assert len(rest.rows) == 3 and read_model.changes(rest.last_event).rows == []

    def test_ids_found_unread_are_read_when_they_come_and_said_unread_while_they_do_not(self, seeded):
        scheduler, read_model = seeded
        start = read_model.changes(None).last_event
        scheduler.record([change("C", InvoiceStatus.RELEASED, "r1", 0, actor="ana", reason="ok"),
                          change("D", InvoiceStatus.ENTERED, "rpa:D:v1:attempt1", 0, po_number="PO-3")])
        later = read_model.changes(start + 2, [(start + 1, start + 1), (start + 7, start + 8)])
        assert [row.invoice_id for row in later.rows] == ["C"]
        assert (later.last_event, later.missing) == (start + 2, [(start + 7, start + 8)])

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

    def test_a_row_committed_after_a_later_one_reaches_the_live_feed(self, stores, scheduler_pg_engine):
        """Two workers write processscheduler: the one that took the lower ids committed second, the
        feed had read past them, and no open dashboard ever heard of its invoice."""
        scheduler, read_model = stores
        feed = LiveFeed(read_model, lambda: NOW)
        feed.poll()
        taken, go_on = threading.Event(), threading.Event()

        def held_back(conn) -> None:
            if threading.current_thread().name == "slow-worker":
                taken.set()
                go_on.wait(10)

        event.listen(scheduler_pg_engine, "commit", held_back)
        try:
            slow = threading.Thread(target=scheduler.record, args=([verdict(ready("LATE", "PO-21"), 2)],),
                                    name="slow-worker")
            slow.start()
            assert taken.wait(10)
            scheduler.record([verdict(ready("EARLY", "PO-22"), 1)])
            feed._kpi_at = 0.0
            assert [row["invoice_id"] for row in feed.poll()["changed"]] == ["EARLY"]
            go_on.set()
            slow.join(10)
        finally:
            event.remove(scheduler_pg_engine, "commit", held_back)
        feed._kpi_at = 0.0
        assert [row["invoice_id"] for row in feed.poll()["changed"]] == ["LATE"]
        assert feed.poll() is None or feed.latest["changed"] == []
