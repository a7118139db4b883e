"""One contract for every source of Sampro changes: in memory, and SQL polling on SQLite and
PostgreSQL (the Sampro stand-in's tables, changed as Sampro changes them)."""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import text, update

from connectors.sampro.changes import InMemorySamproChanges, PollingSamproChanges, change_id
from connectors.sampro.standin import SamproStandIn
from connectors.watermarks import FileWatermark
from rules.lifecycle import PurchaseOrderChanged
from rules.models import PurchaseOrder
from tests.unit.rules.builders import PO


def po(number: str, **changes) -> PurchaseOrder:
    return PurchaseOrder.model_validate({**PO, "po_number": number, **changes})


STATE = "sampro-watermark.json"


def started(engine, tmp_path, **options) -> PollingSamproChanges:
    """The polling source as a worker starts it (again, after a restart: the same state file)."""
    return PollingSamproChanges(engine, FileWatermark(tmp_path / STATE), lookback_seconds=300, **options)


def going(engine, tmp_path, **options) -> tuple[SamproStandIn, PollingSamproChanges]:
    """A Sampro stand-in with PO-0, and a source past its first poll (which starts at Sampro's
    newest change); what changes after has a time of its own."""
    standin = SamproStandIn(engine)
    standin.create_schema()
    standin.load_purchase_orders([po("PO-0")])
    source = started(engine, tmp_path, **options)
    source.poll()
    source.commit()
    time.sleep(0.002)
    return standin, source


class SamproChangesContract:
    """`arranged` gives (source, change): `change(po_number)` changes that PO in Sampro."""

    @pytest.fixture
    def arranged(self):
        raise NotImplementedError

    def test_a_changed_po_is_one_change_named_by_the_po_and_its_time(self, arranged):
        source, change = arranged
        change("PO-1")
        (found,) = source.poll()
        assert found.po_number == "PO-1" and found.event_id == change_id("PO-1", found.changed_at)

    def test_nothing_is_final_until_commit_and_nothing_comes_twice_after_it(self, arranged):
        source, change = arranged
        change("PO-1")
        first = source.poll()
        assert source.poll() == first  # not committed: read again
        source.commit()
        assert source.poll() == []
        change("PO-2")
        assert [found.po_number for found in source.poll()] == ["PO-2"]


class TestInMemory(SamproChangesContract):
    @pytest.fixture
    def arranged(self):
        source = InMemorySamproChanges()

        def change(po_number: str) -> None:
            at = datetime.now(UTC).replace(microsecond=0)
            source.waiting.append(PurchaseOrderChanged(event_id=change_id(po_number, at), po_number=po_number,
                                                       changed_at=at))
        return source, change


class SqlPolling(SamproChangesContract):
    @pytest.fixture
    def engine(self):
        raise NotImplementedError

    @pytest.fixture
    def arranged(self, engine, tmp_path):
        standin = SamproStandIn(engine)
        standin.create_schema()
        standin.load_purchase_orders([po("PO-0")])
        source = started(engine, tmp_path)
        assert source.poll() == []  # the first poll starts at Sampro's newest change
        source.commit()

        def change(po_number: str) -> None:
            time.sleep(0.002)  # a millisecond of its own, as the cursor keeps them
            standin.load_purchase_orders([po(po_number, status="open")])
        return source, change

    @pytest.fixture
    def on_a_clock(self, engine, tmp_path):
        """(stand-in, source, clock, the change of PO-1 read and committed): the source's clock
        moves only when the test sets `clock[0]`."""
        clock = [0.0]
        standin, source = going(engine, tmp_path, clock=lambda: clock[0])
        standin.load_purchase_orders([po("PO-1")])
        (found,) = source.poll()
        source.commit()
        return standin, source, clock, found

    def test_a_row_committed_late_is_found_by_the_next_read_of_the_window_and_only_then(self, engine, on_a_clock):
        """Between reads of the window a poll reads what is newer than the watermark: a row
        committed late, with a time before it, waits for the window (a tenth of the look-back)."""
        standin, source, now, found = on_a_clock
        standin.load_purchase_orders([po("PO-2")])
        with engine.begin() as conn:  # as if stamped before the change just read, and committed now
            for table in (standin.tables.po_header, standin.tables.po_line):  # a millisecond before
                conn.execute(update(table).where(table.c.po_number == "PO-2")
                             .values(updated_at=found.changed_at - timedelta(milliseconds=1)))
        now[0] = 29.0
        assert source.poll() == []
        now[0] = 30.0
        assert [late.po_number for late in source.poll()] == ["PO-2"]

    def test_the_changes_an_older_release_named_by_the_millisecond_are_not_sent_again(self, engine, tmp_path):
        """Its state names the window's changes to the millisecond: after an upgrade, every change of
        the look-back window was sent again (20,000 POs judged again after a mass update)."""
        standin, source = going(engine, tmp_path)
        standin.load_purchase_orders([po("PO-1", status="open")])
        (sent,) = source.poll()
        source.commit()
        state = json.loads((tmp_path / STATE).read_text())
        state["emitted"] = [f"{named}:{int(micros) // 1000}" for named, _, micros in
                            (event_id.rpartition(":") for event_id in state["emitted"])]
        (tmp_path / STATE).write_text(json.dumps(state))
        assert started(engine, tmp_path).poll() == []

    def test_a_row_committed_late_in_the_millisecond_of_its_pos_change_sent_is_a_change_of_its_own(
            self, engine, on_a_clock):
        """A receipt posted a moment after a price change of its PO, committed after the poll that
        read that one: named by the millisecond, it was the change sent already."""
        standin, source, now, sent = on_a_clock
        millisecond = sent.changed_at.replace(microsecond=sent.changed_at.microsecond // 1000 * 1000)
        late = millisecond + timedelta(microseconds=999 if sent.changed_at.microsecond % 1000 != 999 else 998)
        with engine.begin() as conn:
            line = standin.tables.po_line
            conn.execute(update(line).where(line.c.po_number == "PO-1").values(updated_at=late))
        now[0] = 30.0
        (found,) = source.poll()
        assert (found.po_number, found.changed_at) == ("PO-1", late) and found.event_id != sent.event_id

    def test_a_row_committed_late_on_a_po_already_changed_is_a_change_of_its_own(self, engine, on_a_clock):
        """The PO's header keeps the newer time of the change already sent; a line committed late,
        stamped before it, is still a change to recheck the PO for, with an id of its own."""
        standin, source, now, sent = on_a_clock
        late = sent.changed_at - timedelta(milliseconds=5)
        with engine.begin() as conn:
            line = standin.tables.po_line
            conn.execute(update(line).where(line.c.po_number == "PO-1").values(updated_at=late))
        now[0] = 30.0
        (found,) = source.poll()
        assert (found.po_number, found.event_id) == ("PO-1", change_id("PO-1", late)) and found != sent
        source.commit()
        now[0] = 60.0
        assert source.poll() == []  # both times of PO-1 are remembered: neither comes again

    def test_a_restart_goes_on_from_the_last_commit(self, arranged, engine, tmp_path):
        source, change = arranged
        change("PO-1")
        source.poll()
        source.commit()
        change("PO-2")
        again = started(engine, tmp_path)
        assert [found.po_number for found in again.poll()] == ["PO-2"]

    def test_an_invoice_entered_against_a_po_is_a_change_of_the_po(self, arranged, engine):
        source, change = arranged
        change("PO-1")
        source.poll()
        source.commit()
        SamproStandIn(engine).enter_invoice(sampro_invoice_id="S-1", vendor_id="V100", invoice_number="INV-9",
                                            po_number="PO-1", invoice_date=None, total_amount=None,
                                            lines=[(1, 1)])
        assert [found.po_number for found in source.poll()] == ["PO-1"]

    def test_a_row_stamped_in_the_future_is_one_change_and_hides_no_change_after_it(self, arranged, engine):
        """A typo or a wrong clock in Sampro: the watermark stays at the present."""
        source, change = arranged
        change("PO-1")
        source.poll()
        source.commit()
        with engine.begin() as conn:
            for table in (SamproStandIn(engine).tables.po_header, SamproStandIn(engine).tables.po_line):
                conn.execute(update(table).where(table.c.po_number == "PO-1")
                             .values(updated_at=datetime(9999, 12, 31, tzinfo=UTC)))
        assert [found.po_number for found in source.poll()] == ["PO-1"]
        source.commit()
        change("PO-2")
        assert [found.po_number for found in source.poll()] == ["PO-2"]
        source.commit()
        assert source.poll() == []  # the future change is remembered: made once

    def test_a_watermark_left_in_the_future_comes_back_to_the_present(self, arranged, engine, tmp_path):
        source, change = arranged
        state = FileWatermark(tmp_path / STATE)
        state.write({**state.read(), "watermark": "9999-12-31T00:00:00+00:00"})
        change("PO-2")
        again = started(engine, tmp_path)
        assert [found.po_number for found in again.poll()] == ["PO-2"]

    def test_a_state_whose_cursors_cannot_be_read_goes_on_from_its_watermark_and_one_with_neither_says_so(
            self, arranged, engine, tmp_path, caplog):
        """A broken cursor skipped the watermark beside it: polling started at Sampro's newest
        change, and a PO changed while the worker was down never cleared its held invoices."""
        source, change = arranged
        state = FileWatermark(tmp_path / STATE)
        before = state.read()
        state.write({**before, "cursors": {"po_header": "garbage", "po_line": [1, 2]},
                     "watermark": before["cursors"]["po_header"][0]})
        change("PO-2")  # while the worker was down
        assert [found.po_number for found in started(engine, tmp_path).poll()] == ["PO-2"]
        assert "cannot be read" not in caplog.text
        state.write({**before, "cursors": "garbage", "watermark": "yesterday"})
        with caplog.at_level(logging.WARNING):
            assert started(engine, tmp_path).poll() == []
        assert "Sampro's polling state cannot be read (cursors 'garbage', watermark 'yesterday')" in caplog.text

    def test_a_po_number_no_stream_can_key_is_passed_over_and_the_rest_go_on(self, arranged, caplog):
        source, change = arranged
        change("PO\r\nX")
        change("PO-2")
        assert [found.po_number for found in source.poll()] == ["PO-2"]
        assert "cannot key a stream (contains the control character" in caplog.text
        source.commit()
        assert source.poll() == []

    def test_a_mass_update_is_read_a_page_at_a_time_each_change_once(self, engine, tmp_path):
        """200,000 POs changed in one transaction were one poll of 10 s and 211 MB, and one batch."""
        standin, source = going(engine, tmp_path, page_size=3)
        numbers = [f"PO-{n}" for n in range(1, 9)]
        standin.load_purchase_orders([po(number) for number in numbers])  # one time for all
        pages = []
        for _ in range(5):
            pages.append([found.po_number for found in source.poll()])
            source.commit()
            if not source.backlog():
                break
        assert [len(page) for page in pages] == [3, 3, 2]  # each table's page ends on the same PO here
        assert sorted(sum(pages, [])) == numbers
        assert len({found.changed_at for found in source.poll()}) == 0 and not source.backlog()
        again = started(engine, tmp_path, page_size=3)  # a restart after it sends nothing again
        assert again.poll() == []

    def test_a_read_of_the_window_reads_nothing_past_the_page(self, engine, tmp_path):
        clock = [0.0]
        standin, source = going(engine, tmp_path, page_size=3, clock=lambda: clock[0])
        standin.load_purchase_orders([po(f"PO-{n}") for n in range(1, 9)])
        clock[0] = 30.0  # the window is due
        assert [found.po_number for found in source.poll()] == ["PO-1", "PO-2", "PO-3"]

    def test_a_change_stamped_in_the_future_is_made_once_though_a_read_of_the_window_came_between(
            self, engine, tmp_path):
        """The window's read remembered only what it read, and forgot the change ahead of it."""
        clock = [0.0]
        standin, source = going(engine, tmp_path, page_size=2, clock=lambda: clock[0])
        standin.load_purchase_orders([po("PO-F")])
        with engine.begin() as conn:
            for table in (standin.tables.po_header, standin.tables.po_line):
                conn.execute(update(table).where(table.c.po_number == "PO-F")
                             .values(updated_at=datetime(9999, 12, 31, tzinfo=UTC)))
        found = [change.po_number for change in source.poll()]
        source.commit()
        time.sleep(0.002)
        standin.load_purchase_orders([po(f"PO-{n}") for n in range(1, 4)])  # more than a page
        clock[0] = 30.0  # the window is due
        for _ in range(4):
            found += [change.po_number for change in source.poll()]
            source.commit()
        assert sorted(found) == ["PO-1", "PO-2", "PO-3", "PO-F"]

    def test_the_window_holds_only_changes_stamped_within_the_look_back_of_sampro_s_clock(self, engine, tmp_path):
        """Behind the cursor instead, the window of a quiet Sampro after a mass update held the
        whole update, read again every tenth of the look-back for good."""
        standin = SamproStandIn(engine)
        standin.create_schema()
        standin.load_purchase_orders([po("PO-OLD"), po("PO-NEW")])
        now = datetime.now(UTC)
        with engine.begin() as conn:
            for number, at in (("PO-OLD", now - timedelta(seconds=400)), ("PO-NEW", now - timedelta(seconds=10))):
                for table in (standin.tables.po_header, standin.tables.po_line):
                    conn.execute(update(table).where(table.c.po_number == number).values(updated_at=at))
        source, since = started(engine, tmp_path), now - timedelta(seconds=300)
        with engine.connect() as conn:
            window = conn.execute(source.window_query("po_header", (now, None), since)).all()
            behind_the_old = conn.execute(source.window_query("po_header", (now - timedelta(seconds=399), None),
                                                              since)).all()
        assert [row[0] for row in window] == ["PO-NEW"] and behind_the_old == []

    def test_a_restart_goes_on_from_a_page_cut_inside_one_time(self, engine, tmp_path):
        standin, source = going(engine, tmp_path, page_size=2)
        standin.load_purchase_orders([po(f"PO-{n}") for n in range(1, 6)])
        first = [found.po_number for found in source.poll()]
        source.commit()
        again = started(engine, tmp_path, page_size=10)
        rest = [found.po_number for found in again.poll()]
        assert sorted(first + rest) == [f"PO-{n}" for n in range(1, 6)] and len(first) == 2

    def test_the_state_an_older_version_kept_is_read_as_every_po_of_its_time(self, arranged, engine, tmp_path):
        source, change = arranged
        change("PO-1")
        (sent,) = source.poll()
        source.commit()
        state = FileWatermark(tmp_path / STATE)
        in_its_millisecond = sent.changed_at.replace(microsecond=sent.changed_at.microsecond // 1000 * 1000)
        kept = state.read()
        assert kept["cursors"] == {table: [in_its_millisecond.isoformat(), None]
                                   for table in ("po_header", "po_line")}
        assert kept["watermark"] == in_its_millisecond.isoformat()  # what an older version reads: nothing skipped
        state.write({"watermark": sent.changed_at.isoformat(), "emitted": kept["emitted"]})  # as it writes
        change("PO-2")
        assert [found.po_number for found in started(engine, tmp_path).poll()] == ["PO-2"]

    def test_a_full_page_of_rows_stamped_in_the_future_is_no_backlog(self, arranged, engine, tmp_path):
        """Read again by every poll until their time comes, they would make the poller spin."""
        source, change = arranged
        for number in ("PO-1", "PO-2"):
            change(number)
        with engine.begin() as conn:
            for table in (SamproStandIn(engine).tables.po_header, SamproStandIn(engine).tables.po_line):
                conn.execute(update(table).where(table.c.po_number.in_(["PO-1", "PO-2"]))
                             .values(updated_at=datetime(9999, 12, 31, tzinfo=UTC)))
        paged = started(engine, tmp_path, page_size=2)
        assert sorted(found.po_number for found in paged.poll()) == ["PO-1", "PO-2"]
        paged.commit()
        assert not paged.backlog()
        assert paged.poll() == []


class TestSqlite(SqlPolling):
    @pytest.fixture
    def engine(self, sqlite_engine):
        return sqlite_engine

    @pytest.fixture
    def west_of_utc(self, monkeypatch):
        """This machine's local clock, which is SQLite's, five hours behind UTC (New York's in winter)."""
        monkeypatch.setenv("TZ", "EST5")
        time.tzset()
        yield
        monkeypatch.undo()
        time.tzset()

    @pytest.mark.parametrize("zone", ["UTC0", "EST5"])
    def test_the_first_poll_is_silent_on_the_clock_where_the_newest_change_is_near_the_one_set(
            self, engine, tmp_path, monkeypatch, caplog, zone):
        monkeypatch.setenv("TZ", zone)
        time.tzset()
        try:
            with caplog.at_level(logging.WARNING, logger="connectors.sampro.changes"):
                going(engine, tmp_path)  # stamped in UTC, SAMPRO_CLOCK=later
        finally:
            monkeypatch.undo()
            time.tzset()
        assert [r.getMessage() for r in caplog.records if "SAMPRO_CLOCK" in r.getMessage()] == []

    @pytest.mark.parametrize("stamped_in, found", [("local", ["PO-2"]), ("later", [])])
    def test_a_sampro_stamping_local_time_west_of_utc_has_the_hour_a_fall_back_stamps_again_read_once_told(
            self, engine, tmp_path, west_of_utc, stamped_in, found, caplog):
        """Sampro stamps GETDATE(), local time. A change stamped at 1:59 is read; the clocks go back
        an hour, and the next change is stamped 1:10, behind the cursor. Told (`SAMPRO_CLOCK=local`),
        the window reaches back from the local clock; from UTC's, five hours later, it reads nothing
        so stamped, and the first poll says so."""
        standin = SamproStandIn(engine)
        standin.create_schema()

        def changed_at(number: str, at: datetime) -> None:
            standin.load_purchase_orders([po(number)])
            with engine.begin() as conn:
                for table in (standin.tables.po_header, standin.tables.po_line):
                    conn.execute(update(table).where(table.c.po_number == number).values(updated_at=at))

        local, clock = datetime.now(), [0.0]
        changed_at("PO-0", local)
        source = started(engine, tmp_path, clock=lambda: clock[0], stamped_in=stamped_in)
        with caplog.at_level(logging.WARNING, logger="connectors.sampro.changes"):
            source.poll()
        warned = [r.getMessage().split(") ", 1)[-1] for r in caplog.records if "SAMPRO_CLOCK" in r.getMessage()]
        assert warned == ([] if found else [
            "is near the database's local clock, not the one INVOICE_AUTOMATION_SAMPRO_CLOCK=later names: rows "
            "committed late would never be read. Set it to local if Sampro stamps updated_at in local time."])
        source.commit()
        changed_at("PO-1", local + timedelta(minutes=49))  # at 1:59, the last change before the fall-back
        assert [found.po_number for found in source.poll()] == ["PO-1"]
        source.commit()
        changed_at("PO-2", local + timedelta(seconds=1))  # at 1:10, the clocks gone back
        clock[0] = 30.0  # the window is due
        assert [change.po_number for change in source.poll()] == found

    def test_a_page_ends_past_rows_whose_times_have_more_digits_than_python_reads(self, engine, tmp_path):
        """SQL Server's datetime2 keeps 100 ns, read back as 1 us: a cursor at the time as read
        named no row, and a mass update of more POs than a page was read as its first page, over
        and over, and nothing after it. SQLite keeps the digits a row is written with."""
        standin, source = going(engine, tmp_path, page_size=3)
        numbers = [f"PO-{n}" for n in range(1, 9)]
        standin.load_purchase_orders([po(number) for number in numbers])
        seven_digits = f"{datetime.now(UTC):%Y-%m-%d %H:%M:%S.%f}7"
        with engine.begin() as conn:
            for table in ("po_header", "po_line"):
                conn.execute(text(f"UPDATE {table} SET updated_at = :at WHERE po_number != 'PO-0'"),
                             {"at": seven_digits})
        time.sleep(0.002)
        found = []
        for _ in range(6):
            found += [change.po_number for change in source.poll()]
            source.commit()
            if not source.backlog():
                break
        assert sorted(found) == numbers

    def test_a_page_cut_inside_a_millisecond_goes_on_with_its_pos_not_reached_whatever_their_microsecond(
            self, engine, tmp_path):
        """A page in the order of time, cut inside a millisecond at PO-C, went on after PO-C: PO-A,
        later in that millisecond, was left to the window, which a cursor that moved on more than
        the look-back never reads."""
        clock = [0.0]
        standin, source = going(engine, tmp_path, page_size=2, clock=lambda: clock[0])
        standin.load_purchase_orders([po(name) for name in ("PO-A", "PO-B", "PO-C", "PO-X")])
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=400)
        stamps = {"PO-B": timedelta(microseconds=100), "PO-C": timedelta(microseconds=200),
                  "PO-A": timedelta(microseconds=500), "PO-X": timedelta(seconds=400)}
        with engine.begin() as conn:
            standin_tables = (SamproStandIn(engine).tables.po_header, SamproStandIn(engine).tables.po_line)
            for number, after in stamps.items():
                for table in standin_tables:
                    conn.execute(update(table).where(table.c.po_number == number).values(updated_at=start + after))
        state = FileWatermark(tmp_path / STATE)  # the cursor before them all
        state.write({**state.read(), "cursors": None, "watermark": (start - timedelta(seconds=1)).isoformat()})
        source = started(engine, tmp_path, page_size=2, clock=lambda: clock[0])
        found = []
        for _ in range(6):
            found += [change.po_number for change in source.poll()]
            source.commit()
        assert sorted(found) == ["PO-A", "PO-B", "PO-C", "PO-X"]  # PO-0's change, made at the start, is remembered

    def test_a_full_page_that_does_not_move_the_cursor_leaves_its_millisecond_to_the_window(self, engine, tmp_path):
        """A collation under which the database compares POs otherwise than it orders them would
        give the same page again and again, and the poller would read nothing after it."""
        standin = SamproStandIn(engine)
        standin.create_schema()
        source = started(engine, tmp_path, page_size=2)
        at = datetime(2026, 12, 1, 9, 0, 0, 123000, tzinfo=UTC)

        class SamePage:
            def execute(self, query):
                return SimpleNamespace(all=lambda: [("po-a", at), ("po-a", at + timedelta(microseconds=1))])

        assert source._page(SamePage(), "po_line", (at, "po-a"), at + timedelta(seconds=1))[1:] == ((at, None), True)


class TestPostgres(SqlPolling):
    @pytest.fixture
    def engine(self, sampro_pg_engine):
        return sampro_pg_engine
