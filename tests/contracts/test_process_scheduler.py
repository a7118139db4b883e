"""One contract for every processscheduler: in memory, SQLite and PostgreSQL (through Alembic)."""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import event, inspect, text

from connectors.ports import NumberClaim
from connectors.scheduler import InMemoryProcessScheduler, SqlProcessScheduler, upgrade
from connectors.scheduler.read_model import InvoiceQuery
from connectors.scheduler.read_model_sql import SqlInvoiceReadModel
from rules.duplicates import lookups_for
from rules.errors import Unavailable
from rules.lifecycle import InvoiceStatus, StatusChanged
from rules.policy import Policy
from streams.bootstrap import process_scheduler
from streams.settings import Settings
from tests.contracts.migrations import downgrade
from tests.unit.rules.builders import INVOICE, judge

AT = datetime(2026, 11, 25, 10, tzinfo=UTC)
READY = judge(INVOICE)
REVIEW = judge({**INVOICE, "invoice_id": "MP-2", "invoice_number": "INV-2", "total_amount": "1.00"})


def lookups(*documents: dict, dated: str = "2026-11-20", policy: Policy = Policy()) -> set:
    """The lookups of invoices dated `dated` (that of builders.INVOICE) unless they say, as the PO
    agent makes them."""
    return lookups_for([{"invoice_date": dated, **document} for document in documents], policy)


def monthly(count: int) -> list:
    """A flat-fee vendor's verdicts: INVOICE's total under a number of each month's, every 30 days
    back from INVOICE's date (2026-11-20) for `count` months."""
    return [judge({**INVOICE, "invoice_id": f"MP-M{n}", "invoice_number": f"RENT-{n}",
                   "invoice_date": (date(2026, 11, 20) - timedelta(days=30 * n)).isoformat()}) for n in range(count)]


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

    def test_a_bad_invoice_whose_vendor_text_its_columns_cannot_hold_is_recorded_for_ap(self, scheduler):
        """PostgreSQL refused its row (past varchar(64), a NUL), and the invoice was only dead-lettered."""
        verdict = judge({**INVOICE, "invoice_id": "MP-9", "vendor_id": "V" * 100, "invoice_number": "INV\x00778"})
        assert verdict.status.value == "bad_invoice" and verdict.vendor_id == "V" * 100
        scheduler.record([verdict])
        (row,) = scheduler.rows()
        assert (row["status"], row["vendor_id"], row["invoice_number"]) == ("bad_invoice", "V" * 63 + "\u2026",
                                                                             "INV\ufffd778")
        assert row["invoice_document"]["vendor_id"] == "V" * 100  # the whole text, for AP to read

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
        found = scheduler.decided_invoices(lookups({"vendor_id": "V100", "invoice_number": "INV-2"},
                                                   {"vendor_id": "V100", "invoice_number": "NOPE"}))
        assert [(k.invoice_id, k.status) for k in found] == [("MP-2", "bad_invoice")]

    def test_decided_invoices_are_found_as_identifiers_loose_numbers_and_totals(self, scheduler):
        scheduler.record([READY, REVIEW])
        by_case = scheduler.decided_invoices(lookups({"vendor_id": " v100", "invoice_number": "inv-2 "}))
        by_loose = scheduler.decided_invoices(lookups({"vendor_id": "V100", "invoice_number": "INV 0002"}))
        by_total = scheduler.decided_invoices(lookups({"vendor_id": "V100", "invoice_number": "X",
                                                       "total_amount": "57.25"}))
        assert [k.invoice_id for k in by_case] == [k.invoice_id for k in by_loose] == ["MP-2"]
        assert [(k.invoice_id, k.total_amount, k.invoice_date) for k in by_total] == [
            ("MP-1001", Decimal("57.25"), date(2026, 11, 20))]


    def test_the_same_total_is_found_only_dated_within_the_duplicate_window(self, scheduler):
        """Asked from all time, each invoice of a flat-fee vendor (a courier, a rental: the same total
        every month for years) read every invoice of it ever decided: at 8,000 of them, 20 invoices
        took 8.2 s and a verdict's audit kept 8,019 earlier invoices. The window is 30 days either
        side of the invoice's date, or the vendor's own; a near number is found whatever the date."""
        scheduler.record([READY])  # 57.25, dated 2026-11-20

        def by_total(dated: str, policy: Policy = Policy()) -> list[str]:
            found = scheduler.decided_invoices(lookups({"vendor_id": "V100", "invoice_number": "X",
                                                        "total_amount": "57.25"}, dated=dated, policy=policy))
            return [known.invoice_id for known in found]

        assert by_total("2026-12-20") == by_total("2026-10-21") == ["MP-1001"]
        assert by_total("2026-12-21") == by_total("2026-10-20") == []
        assert by_total("2027-02-20", Policy(vendors={"v100": {"duplicate_window_days": 92}})) == ["MP-1001"]
        near = scheduler.decided_invoices(lookups({"vendor_id": "V100", "invoice_number": "inv 778"},
                                                  dated="2031-01-01"))
        assert [known.invoice_id for known in near] == ["MP-1001"]

    def test_a_flat_fee_vendors_years_of_one_total_give_an_invoice_only_those_within_the_window(self, scheduler):
        scheduler.record(monthly(120))  # ten years
        found = scheduler.decided_invoices(lookups({"vendor_id": "V100", "invoice_number": "RENT-NEW",
                                                    "total_amount": "57.25"}))
        assert sorted(known.invoice_id for known in found) == ["MP-M0", "MP-M1"]  # 0 and 30 days before

    def test_an_invoice_number_whose_key_is_longer_than_itself_is_recorded_and_found(self, scheduler):
        """Case-folded, ß is ss: a number of 64 characters made a key of 65, which PostgreSQL and SQL
        Server refused, and the verdict's row (all AP would see of the invoice) was dead-lettered."""
        number = "Rechnung-Straße-" + "7" * 48
        verdict = judge({**INVOICE, "invoice_id": "MP-9", "invoice_number": number})
        scheduler.record([verdict])
        assert [row["invoice_id"] for row in scheduler.rows()] == ["MP-9"]
        found = scheduler.decided_invoices(lookups({"vendor_id": " v100", "invoice_number": number}))
        assert [k.invoice_id for k in found] == ["MP-9"]
        other = number[:-1] + "8"  # the same first 64 characters of its key: found by the column, told apart
        assert scheduler.decided_invoices(lookups({"vendor_id": "V100", "invoice_number": other})) == []

    def test_a_total_that_rounds_past_the_column_is_recorded_and_looked_up_without_it(self, scheduler):
        """99999999999999.99999 is under 10^14, but 10^14 at NUMERIC(18, 4)'s four places: PostgreSQL
        and SQL Server refused the row (numeric overflow), the bad invoice's verdict was dead-lettered,
        and every duplicate lookup of a batch with it failed."""
        over = {**INVOICE, "invoice_id": "MP-9", "invoice_number": "INV-9", "total_amount": "99999999999999.99999"}
        scheduler.record([judge(over)])
        assert [(row["invoice_id"], row["total_amount"]) for row in scheduler.rows()] == [("MP-9", None)]
        assert [k.invoice_id for k in scheduler.decided_invoices(lookups(over))] == ["MP-9"]

    def test_every_version_of_an_invoice_is_found_with_its_po_and_status(self, scheduler):
        moved = judge({**INVOICE, "po_number": "PO-5002"}).model_copy(update={"invoice_version": 2})
        scheduler.record([READY, change(InvoiceStatus.RPA_FAILED, "s1"), moved, REVIEW])
        assert [(v.invoice_id, v.invoice_version, v.po_number, v.status)
                for v in scheduler.versions_of({"MP-1001", "MP-404"})] == [
            ("MP-1001", 1, "PO-5001", "rpa_failed"), ("MP-1001", 2, "PO-5002", moved.status.value)]
        assert scheduler.versions_of(set()) == []

    def test_the_events_of_its_history_are_found_by_their_ids(self, scheduler):
        scheduler.record([READY, change(InvoiceStatus.SENT_TO_RPA, "MP-1001:v1:sent_to_rpa:withdrawn-at-rpa")])
        asked = {"MP-1001:v1:sent_to_rpa:withdrawn-at-rpa", "MP-1001:v2:sent_to_rpa:withdrawn-at-rpa"}
        assert scheduler.recorded(asked) == {"MP-1001:v1:sent_to_rpa:withdrawn-at-rpa"}
        assert scheduler.recorded(set()) == set()

    def test_an_invoice_number_goes_to_the_rpa_bot_with_one_invoice(self, scheduler):
        first = NumberClaim("k1", "MP-1", 1)
        assert scheduler.claim_numbers([first]) == [None]
        assert scheduler.claim_numbers([first, NumberClaim("k2", "MP-2", 1)]) == [None, None]  # a replay: its own
        assert scheduler.claim_numbers([NumberClaim("k1", "MP-3", 1)]) == [("MP-1", 1)]  # not yet decided: counts
        assert scheduler.claim_numbers([NumberClaim("k1", "MP-1", 2)]) == [("MP-1", 1)]  # its own version too
        assert scheduler.claim_numbers([]) == []

    @pytest.mark.parametrize("status,kept", [(InvoiceStatus.ENTERED, True), (InvoiceStatus.SENT_TO_RPA, True),
                                             (InvoiceStatus.RPA_FAILED, True), (InvoiceStatus.SUPERSEDED, False)])
    def test_another_version_of_an_invoice_takes_its_number_only_from_one_that_is_not_in_sampro(
            self, scheduler, status, kept):
        # rpa_failed keeps it: AP may release that version, and processscheduler may show so a moment late.
        first, edit = NumberClaim("k1", "MP-1001", 1), NumberClaim("k1", "MP-1001", 2)
        scheduler.record([READY])
        assert scheduler.claim_numbers([first]) == [None]
        scheduler.record([change(status, "s1")])
        assert scheduler.claim_numbers([edit]) == ([("MP-1001", 1)] if kept else [None])
        if not kept:  # the edit holds it now: the first, released again, is refused by it
            assert scheduler.claim_numbers([first]) == [("MP-1001", 2)]

    @pytest.mark.parametrize("recorded", [None, InvoiceStatus.RPA_FAILED, InvoiceStatus.SENT_TO_RPA])
    def test_a_version_takes_the_number_of_the_one_its_po_agent_superseded_for_it_before_it_shows(
            self, scheduler, recorded):
        # The PO agent superseded version 1 and handed version 2 over in one step; the sink may not
        # have recorded the supersede yet.
        scheduler.record([READY, *([change(recorded, "s1")] if recorded else [])])
        assert scheduler.claim_numbers([NumberClaim("k1", "MP-1001", 1)]) == [None]
        assert scheduler.claim_numbers([NumberClaim("k1", "MP-1001", 3, replaces=2)]) == [("MP-1001", 1)]
        assert scheduler.claim_numbers([NumberClaim("k1", "MP-1002", 2, replaces=1)]) == [("MP-1001", 1)]
        assert scheduler.claim_numbers([NumberClaim("k1", "MP-1001", 2, replaces=1)]) == [None]
        assert scheduler.claim_numbers([NumberClaim("k1", "MP-1001", 1)]) == [("MP-1001", 2)]

    @pytest.mark.parametrize("status,kept", [(InvoiceStatus.ENTERED, True), (InvoiceStatus.RPA_FAILED, True),
                                             (InvoiceStatus.SUPERSEDED, False)])
    def test_another_version_under_another_number_is_refused_while_the_first_keeps_its_invoice(
            self, scheduler, status, kept):
        """A vendor's edit may change the number and the PO: the invoice id is taken too."""
        scheduler.record([READY])
        assert scheduler.claim_numbers([NumberClaim("k1", "MP-1001", 1)]) == [None]
        scheduler.record([change(status, "s1")])
        assert scheduler.claim_numbers([NumberClaim("k2", "MP-1001", 2)]) == ([("MP-1001", 1)] if kept else [None])
        # Refused, it took neither key: another invoice of that number goes.
        assert scheduler.claim_numbers([NumberClaim("k2", "MP-7", 1)]) == ([None] if kept else [("MP-1001", 2)])

    def test_a_version_replacing_one_handed_over_in_the_same_batch_takes_its_keys(self, scheduler):
        assert scheduler.claim_numbers([NumberClaim("k1", "MP-1", 1), NumberClaim("k1", "MP-1", 2, replaces=1),
                                        NumberClaim("k2", "MP-1", 1)]) == [None, None, ("MP-1", 2)]
        assert scheduler.claim_numbers([NumberClaim("k1", "MP-1", 1)]) == [("MP-1", 2)]

    def test_a_rejection_recorded_late_does_not_give_up_the_number(self, scheduler):
        """MP-1001 was po_not_found, then judged ready again and handed over while processscheduler
        showed po_not_found still (or recorded it only then): another invoice of its number took it
        over, and both were mailed. Nothing judges an invoice again once the bot has it."""
        scheduler.record([change(InvoiceStatus.PO_NOT_FOUND, "s0")])
        assert scheduler.claim_numbers([NumberClaim("k1", "MP-1001", 1)]) == [None]
        assert scheduler.claim_numbers([NumberClaim("k1", "MP-9", 1)]) == [("MP-1001", 1)]
        scheduler.record([change(InvoiceStatus.BAD_INVOICE, "s0b")])
        assert scheduler.claim_numbers([NumberClaim("k1", "MP-9", 1)]) == [("MP-1001", 1)]
        scheduler.record([change(InvoiceStatus.SENT_TO_RPA, "s1"), change(InvoiceStatus.WITHDRAWN, "s2")])
        assert scheduler.claim_numbers([NumberClaim("k1", "MP-9", 1)]) == [None]  # withdrawn since: given up

    def test_a_number_a_new_version_took_a_moment_ago_is_kept_though_processscheduler_shows_only_the_old(
            self, scheduler):
        scheduler.record([READY, change(InvoiceStatus.SUPERSEDED, "s1")])  # version 2 is not recorded yet
        assert scheduler.claim_numbers([NumberClaim("k2", "MP-1001", 2)]) == [None]
        assert scheduler.claim_numbers([NumberClaim("k2", "MP-7", 1)]) == [("MP-1001", 2)]

    def test_a_number_in_sampro_is_kept_though_a_newer_version_of_its_invoice_was_withdrawn(self, scheduler):
        scheduler.record([READY, change(InvoiceStatus.ENTERED, "s1")])
        assert scheduler.claim_numbers([NumberClaim("k1", "MP-1001", 1)]) == [None]
        scheduler.record([change(InvoiceStatus.WITHDRAWN, "s2").model_copy(update={"invoice_version": 2})])
        assert scheduler.claim_numbers([NumberClaim("k1", "MP-9", 1)]) == [("MP-1001", 1)]

    def test_of_two_invoices_of_one_number_in_a_batch_the_first_takes_it(self, scheduler):
        assert scheduler.claim_numbers([NumberClaim("k1", "MP-1", 1), NumberClaim("k1", "MP-2", 1),
                                        NumberClaim("k1", "MP-1", 1)]) == [None, ("MP-1", 1), None]

    @pytest.mark.parametrize("status,kept", [(InvoiceStatus.ENTERED, True), (InvoiceStatus.RPA_FAILED, True),
                                             (InvoiceStatus.SENT_TO_RPA, True), (InvoiceStatus.WITHDRAWN, False)])
    def test_a_number_is_given_up_by_an_invoice_withdrawn_since(self, scheduler, status, kept):
        scheduler.record([READY])
        assert scheduler.claim_numbers([NumberClaim("k1", "MP-1001", 1)]) == [None]
        scheduler.record([change(status, "s1")])
        answer = scheduler.claim_numbers([NumberClaim("k1", "MP-9", 1), NumberClaim("k1", "MP-10", 1)])
        assert answer == ([("MP-1001", 1), ("MP-1001", 1)] if kept else [None, ("MP-9", 1)])


class SqlSchedulerContract(ProcessSchedulerContract):
    @pytest.fixture
    def engine(self):
        raise NotImplementedError

    @pytest.fixture
    def scheduler(self, engine):
        upgrade(engine)
        return SqlProcessScheduler(engine)

    def test_the_query_itself_reads_no_invoice_of_the_same_total_dated_outside_the_window(self, scheduler,
                                                                                           monkeypatch):
        """Read and left out after (`matches_lookup`), a flat-fee vendor's years of invoices of one total
        were still read, made into earlier invoices and compared for each invoice of it."""
        monkeypatch.setattr("connectors.scheduler.sink.matches_lookup", lambda known, asked: True)
        scheduler.record(monthly(120))
        found = scheduler.decided_invoices(lookups({"vendor_id": "V100", "invoice_number": "RENT-NEW",
                                                    "total_amount": "57.25"}))
        assert sorted(known.invoice_id for known in found) == ["MP-M0", "MP-M1"]

    def test_rows_decided_before_the_duplicate_keys_get_them_from_the_migration(self, engine):
        upgrade(engine, "0005")
        with engine.begin() as conn:  # a row as revision 0005 wrote it
            conn.execute(text(
                "INSERT INTO processscheduler (invoice_id, invoice_version, vendor_id, invoice_number, status, "
                "invoice_document, created_at, updated_at) VALUES ('MP-OLD', 1, 'V100 ', 'Inv-0042', 'entered', "
                ":document, :at, :at)"),
            {"document": json.dumps({"total_amount": "9.50", "invoice_date": "2026-11-03"}), "at": AT})
        upgrade(engine)
        found = SqlProcessScheduler(engine).decided_invoices(lookups({"vendor_id": "v100", "invoice_number": "INV42"}))
        assert [(k.invoice_id, k.total_amount, k.invoice_date) for k in found] == [
            ("MP-OLD", Decimal("9.50"), date(2026, 11, 3))]

    def test_rows_decided_before_revision_0011_are_counted_and_listed_by_their_finding_codes(self, engine):
        upgrade(engine, "0010")
        findings = [{"code": "PRICE_MISMATCH", "line_no": 1}, {"code": "TAX_MISMATCH"}, {"code": "PRICE_MISMATCH"}]
        with engine.begin() as conn:  # rows as revision 0010 wrote them: held with findings, entered without
            for invoice_id, status, http_status, reasons in (("MP-OLD", "manual_review", 422, findings),
                                                             ("MP-OK", "entered", 200, [])):
                conn.execute(text("INSERT INTO processscheduler (invoice_id, invoice_version, status, http_status, "
                                  "reasons, decided_at, created_at, updated_at) "
                                  "VALUES (:id, 1, :status, :http, :reasons, :at, :at, :at)"),
                             {"id": invoice_id, "status": status, "http": http_status, "reasons": json.dumps(reasons),
                              "at": AT})
        upgrade(engine)
        read_model = SqlInvoiceReadModel(engine)
        assert read_model.kpi(AT).by_reason == {"PRICE_MISMATCH": 1, "TAX_MISMATCH": 1}
        assert [row.invoice_id for row in read_model.invoices(InvoiceQuery(reason_code="TAX_MISMATCH")).items] == [
            "MP-OLD"]
        assert read_model.invoices(InvoiceQuery(reason_code="PRICE")).total == 0  # a code, not a part of one
        for step in ("upgraded", "downgraded and upgraded again"):
            with engine.connect() as conn:
                codes = conn.execute(text("SELECT reason_codes FROM processscheduler ORDER BY id")).scalars().all()
            assert codes == [" PRICE_MISMATCH TAX_MISMATCH ", None], step
            downgrade(engine, "0010")
            upgrade(engine)

    def test_a_migration_stopped_half_way_leaves_nothing_and_runs_again(self, engine):
        """SQLite's driver committed each ALTER TABLE by itself: 0011's column stayed without its
        backfill, and every later start failed on 'duplicate column name'."""
        upgrade(engine, "0010")

        def stopped(conn, cursor, statement, *args):
            if statement.startswith("UPDATE processscheduler SET reason_codes"):  # the backfill, after the column
                raise RuntimeError("the worker was stopped here")

        with engine.begin() as conn:
            conn.execute(text("INSERT INTO processscheduler (invoice_id, invoice_version, status, http_status, "
                              "reasons, decided_at, created_at, updated_at) VALUES ('MP-OLD', 1, 'manual_review', "
                              "422, :reasons, :at, :at, :at)"), {"reasons": json.dumps([{"code": "TAX_MISMATCH"}]),
                                                                 "at": AT})
        event.listen(engine, "before_cursor_execute", stopped)
        try:
            with pytest.raises(Exception, match="stopped here"):
                upgrade(engine)
        finally:
            event.remove(engine, "before_cursor_execute", stopped)
        with engine.connect() as conn:
            assert "reason_codes" not in {column["name"] for column in inspect(conn).get_columns("processscheduler")}
        upgrade(engine)
        assert SqlInvoiceReadModel(engine).kpi(AT).by_reason == {"TAX_MISMATCH": 1}

    def test_two_starts_that_upgrade_at_once_both_find_the_schema_upgraded(self, engine):
        upgrade(engine, "0008")
        failures: list[BaseException] = []

        def start() -> None:
            try:
                upgrade(engine)
            except BaseException as error:  # noqa: BLE001 - what the other start raised is the point
                failures.append(error)

        starts = [threading.Thread(target=start) for _ in range(3)]
        for thread in starts:
            thread.start()
        for thread in starts:
            thread.join(60)
        assert failures == []
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == ["0016"]

    def test_rows_keyed_before_rules_2026_12_12_are_found_by_the_keys_of_these_rules(self, engine):
        """Keyed with the Hangul filler the rules compare without since 2026.12.12, MP-4 (entered) was
        found by no key a resend of INV-4 asked for, and its number at the RPA bot was free."""
        upgrade(engine, "0015")
        with engine.begin() as conn:  # as 0015's rules keyed it: the filler kept
            conn.execute(text("INSERT INTO processscheduler (invoice_id, invoice_version, vendor_id, invoice_number, "
                              "status, vendor_key, number_key, loose_number_key, total_amount, invoice_date, "
                              "created_at, updated_at) VALUES ('MP-4', 1, 'V100', :number, 'entered', 'v100', "
                              ":key, :loose, 57.25, '2026-11-03', :at, :at)"),
                         {"number": "INV-4\u3164", "key": "inv-4\u3164", "loose": "inv4\u1160", "at": AT})
            old = hashlib.sha256("v100\x00inv-4\u3164".encode()).hexdigest()
            conn.execute(text("INSERT INTO rpa_invoice_numbers VALUES (:key, 'MP-4', 1, :at)"), {"key": old, "at": AT})
        upgrade(engine)
        scheduler = SqlProcessScheduler(engine)
        found = scheduler.decided_invoices(lookups({"vendor_id": "V100", "invoice_number": "INV-4"}))
        assert [known.invoice_id for known in found] == ["MP-4"]
        new = hashlib.sha256(b"v100\x00inv-4").hexdigest()
        assert scheduler.claim_numbers([NumberClaim(new, "MP-6", 1)]) == [("MP-4", 1)]

    def test_versions_handed_over_before_revision_0010_hold_their_invoice_from_the_migration(self, engine):
        upgrade(engine, "0009")
        numbers = [("n1", "MP-1", 1, None), ("n2", "MP-1", 2, "superseded"), ("n3", "MP-2", 1, "superseded"),
                   ("n4", "MP-2", 2, "withdrawn"), ("n5", "MP-3", 1, "sent_to_rpa"),
                   ("n6", "MP-4", 1, "entered"), ("n7", "MP-4", 2, "rpa_failed")]
        with engine.begin() as conn:  # MP-1 v1 is not in processscheduler yet: it keeps its number
            for key, invoice_id, version, status in numbers:
                conn.execute(text("INSERT INTO rpa_invoice_numbers VALUES (:key, :id, :version, :at)"),
                             {"key": key, "id": invoice_id, "version": version, "at": AT})
                if status:
                    conn.execute(text("INSERT INTO processscheduler (invoice_id, invoice_version, status, created_at, "
                                      "updated_at) VALUES (:id, :version, :status, :at, :at)"),
                                 {"id": invoice_id, "version": version, "status": status, "at": AT})
        upgrade(engine)
        scheduler = SqlProcessScheduler(engine)
        with engine.begin() as conn:  # MP-4 v2 gives up its number after all: v1 is in Sampro still
            conn.execute(text("UPDATE processscheduler SET status = 'superseded' WHERE invoice_id = 'MP-4'"
                              " AND invoice_version = 2"))
        assert scheduler.claim_numbers([NumberClaim("new", "MP-1", 3), NumberClaim("new2", "MP-2", 3),
                                        NumberClaim("new3", "MP-3", 2), NumberClaim("new4", "MP-4", 3)]) == [
            ("MP-1", 1), None, ("MP-3", 1), ("MP-4", 1)]
        downgrade(engine, "0009")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM rpa_invoice_numbers")).scalar() == 8  # 7 and MP-2 v3's

    def test_a_number_another_worker_takes_between_the_read_and_the_write_is_seen_not_overwritten(self, scheduler):
        racer = RacingWorker(scheduler.engine, NumberClaim("k1", "MP-OTHER", 1))
        assert scheduler.claim_numbers([NumberClaim("k2", "MP-2", 1), NumberClaim("k1", "MP-1", 1)]) == [
            None, ("MP-OTHER", 1)]
        assert racer.raced
        assert scheduler.claim_numbers([NumberClaim("k2", "MP-3", 1)]) == [("MP-2", 1)]  # the read again took k2


    def test_another_version_another_worker_hands_over_meanwhile_under_another_number_is_seen(self, scheduler):
        racer = RacingWorker(scheduler.engine, NumberClaim("k9", "MP-1", 2))
        assert scheduler.claim_numbers([NumberClaim("k1", "MP-1", 1)]) == [("MP-1", 2)]
        assert racer.raced


class RacingWorker:
    """Another worker's mail flow, which hands over the same number just before this one's insert."""

    def __init__(self, engine, claim: NumberClaim):
        self.engine, self.claim, self.raced = engine, claim, False
        event.listen(engine, "before_cursor_execute", self.before)

    def before(self, conn, cursor, statement, *args):
        if not self.raced and statement.startswith("INSERT INTO rpa_invoice_numbers"):
            self.raced = True
            SqlProcessScheduler(self.engine).claim_numbers([self.claim])


class TestInMemoryScheduler(ProcessSchedulerContract):
    @pytest.fixture
    def scheduler(self):
        return InMemoryProcessScheduler()


class TestSqliteScheduler(SqlSchedulerContract):
    @pytest.fixture
    def engine(self, sqlite_engine):
        return sqlite_engine

    def test_a_large_batch_of_hand_offs_stays_under_sql_servers_parameters_a_statement(self, scheduler):
        """SQLite, like SQL Server, takes an IN list as one parameter a value."""
        parameters: list[int] = []
        event.listen(scheduler.engine, "before_cursor_execute", lambda conn, cursor, statement, params, context, many:
                     parameters.append(len(params[0] if many else params)))
        claims = [NumberClaim(f"k{n}", f"MP-{n}", 1) for n in range(1_500)]
        scheduler.record([READY.model_copy(update={"invoice_id": f"MP-{n}"}) for n in range(1_500)])
        assert scheduler.claim_numbers(claims) == [None] * 1_500
        assert scheduler.claim_numbers([NumberClaim(f"k{n}", "MP-X", 1) for n in range(1_500)]) == [
            (f"MP-{n}", 1) for n in range(1_500)]
        assert parameters and max(parameters) <= 2_100, max(parameters)


class TestPostgresScheduler(SqlSchedulerContract):
    @pytest.fixture
    def engine(self, scheduler_pg_engine):
        return scheduler_pg_engine

    def test_a_write_that_waits_for_a_row_lock_past_its_limit_is_an_outage_and_writes_once_it_is_let_go(
            self, engine, tmp_path):
        """A DBA's UPDATE left open on a row the worker writes: processscheduler as the worker makes it
        had no lock timeout, and its write waited for as long as that session held the lock, the
        worker's loop with it, readiness green."""
        url = engine.url.render_as_string(hide_password=False)
        settings = Settings(scheduler_db_url=url, scheduler_lock_wait_seconds=0.3, data_dir=tmp_path, _env_file=None)
        scheduler = process_scheduler(settings)
        scheduler.record([change(InvoiceStatus.WAITING_FOR_PO, "w1")])
        with engine.connect() as dba:
            # Ended by the server after 10 s: a write that waits without end fails this test, not hangs it.
            dba.execute(text("SET LOCAL idle_in_transaction_session_timeout = '10s'"))
            dba.execute(text("UPDATE processscheduler SET updated_at = now() WHERE invoice_id = 'MP-1001'"))
            with pytest.raises(Unavailable, match="processscheduler is unavailable: .*lock timeout"):
                scheduler.record([READY])
            dba.rollback()
        scheduler.record([READY])
        assert [row["status"] for row in scheduler.rows()] == ["ready_to_process"]
        scheduler.engine.dispose()
