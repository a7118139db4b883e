"""The SQL polling source on SQLite and PostgreSQL: nothing skipped, nothing emitted twice."""

from __future__ import annotations

import re
import time
import tracemalloc
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import event, insert, select, text, update
from sqlalchemy.dialects import mssql, postgresql
from sqlalchemy.schema import CreateTable

from connectors.bounded_text import text_within
from connectors.marketplace_polling import InTimeOrder, PollingMarketplaceSource
from connectors.marketplace_table import marketplace_invoices, metadata
from connectors.sql import engine_for
from connectors.watermarks import FileWatermark

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def row(invoice_id: str, at: datetime, version: int = 1) -> dict:
    return {"invoice_id": invoice_id, "version": version, "vendor_id": "V100", "invoice_number": f"N-{invoice_id}",
            "po_number": "PO-1", "invoice_date": date(2026, 11, 20), "currency": "USD",
            "lines": [{"line_no": 1, "part_number": "AC-100", "quantity": 2, "unit_price": "15.50"}],
            "tax_amount": Decimal("0"), "extra_charges": [], "total_amount": Decimal("31.00"), "updated_at": at}


def test_postgresql_and_sql_server_order_pages_by_the_column_and_stamp_rows_with_now_as_before():
    """Only SQLite, which compares times as text, reads the column otherwise (`InTimeOrder`). SQL
    Server stamps UTC (tests/unit/connectors/test_marketplace_sql_server.py)."""
    page = select(marketplace_invoices.c.invoice_id).where(InTimeOrder(marketplace_invoices.c.updated_at) > T0) \
        .order_by(InTimeOrder(marketplace_invoices.c.updated_at))
    for dialect, now in ((postgresql.dialect(), "DEFAULT now()"),
                         (mssql.dialect(), "DEFAULT CAST(SYSUTCDATETIME() AS DATETIMEOFFSET(6))")):
        compiled = str(page.compile(dialect=dialect))
        assert "WHERE marketplace_invoices.updated_at > " in compiled, compiled
        assert compiled.endswith("ORDER BY marketplace_invoices.updated_at"), compiled
        assert now in str(CreateTable(marketplace_invoices).compile(dialect=dialect))


def test_postgresql_and_sql_server_measure_a_json_column_where_it_is_kept_and_send_it_within_the_limit():
    lines = select(*text_within(marketplace_invoices.c.lines, 256_000))
    assert "length(CAST(marketplace_invoices.lines AS TEXT)) > %(param_1)s" in str(lines.compile(
        dialect=postgresql.dialect()))
    assert "DATALENGTH(CAST(marketplace_invoices.lines AS NVARCHAR(max))) / 2 > :param_1" in str(lines.compile(
        dialect=mssql.dialect()))


class MarketplaceSourceContract:
    @pytest.fixture
    def engine(self):
        raise NotImplementedError

    @pytest.fixture
    def clock(self) -> list[float]:
        """The sources' clock, which moves only when a test sets `clock[0]`."""
        return [0.0]

    @pytest.fixture
    def source_factory(self, engine, tmp_path, clock):
        metadata.create_all(engine)
        state = FileWatermark(tmp_path / "watermark.json")
        return lambda: PollingMarketplaceSource(engine, state, lookback_seconds=600, batch_size=50,
                                                clock=lambda: clock[0])

    def polled(self, source) -> list[tuple[str, int]]:
        polled = source.poll()
        source.commit()
        return [(e.invoice_id, e.version) for e in polled.events]

    def test_first_poll_returns_all_then_nothing(self, engine, source_factory):
        with engine.begin() as conn:
            conn.execute(insert(marketplace_invoices), [row("A", T0), row("B", T0 + timedelta(seconds=1))])
        source = source_factory()
        assert self.polled(source) == [("A", 1), ("B", 1)]
        assert self.polled(source) == []

    def test_the_document_is_canonical_with_exact_numbers(self, engine, source_factory):
        with engine.begin() as conn:
            conn.execute(insert(marketplace_invoices), [row("A", T0)])
        (event,) = source_factory().poll().events
        assert event.document["lines"][0]["quantity"] == "2" and event.document["invoice_date"] == "2026-11-20"
        # Money as decimal text (DESIGN §3), whatever scale the column keeps it at.
        assert Decimal(event.document["total_amount"]) == Decimal("31.00") and event.po_number == "PO-1"

    def test_a_new_version_is_returned_once(self, engine, source_factory):
        with engine.begin() as conn:
            conn.execute(insert(marketplace_invoices), [row("A", T0)])
        source = source_factory()
        self.polled(source)
        with engine.begin() as conn:
            conn.execute(update(marketplace_invoices).values(version=2, updated_at=T0 + timedelta(seconds=5)))
        assert self.polled(source) == [("A", 2)]
        assert self.polled(source) == []

    def test_a_row_committed_late_with_an_older_timestamp_is_found_by_the_next_read_of_the_window(
            self, engine, source_factory, clock):
        """Between reads of the window (a tenth of the look-back, 60 s here) a poll reads what is
        newer than the watermark; after a restart, the first poll reads the window."""
        with engine.begin() as conn:
            conn.execute(insert(marketplace_invoices), [row("B", T0 + timedelta(seconds=10))])
        source = source_factory()
        assert self.polled(source) == [("B", 1)]
        with engine.begin() as conn:  # its transaction started earlier, so its timestamp is older
            conn.execute(insert(marketplace_invoices), [row("A", T0 + timedelta(seconds=2))])
        clock[0] = 59.0
        assert self.polled(source) == []
        clock[0] = 60.0
        assert self.polled(source) == [("A", 1)]
        assert self.polled(source) == []
        with engine.begin() as conn:
            conn.execute(insert(marketplace_invoices), [row("C", T0 + timedelta(seconds=3))])
        assert self.polled(source_factory()) == [("C", 1)]

    def test_the_window_reads_whole_only_the_rows_it_has_not_emitted(self, engine, source_factory, clock):
        """Every row of the window came with its lines at every read of it, all but the late ones
        emitted already: 5 minutes of uploads at 50/s were 15,000 rows and their lines every 30 s."""
        with engine.begin() as conn:
            conn.execute(insert(marketplace_invoices), [row(f"E{n}", T0 + timedelta(seconds=n)) for n in range(1, 30)])
        source = source_factory()
        assert len(self.polled(source)) == 29
        with engine.begin() as conn:
            conn.execute(insert(marketplace_invoices), [row("LATE", T0)])
        whole: list[str] = []

        def whole_rows(conn, cursor, statement, parameters, context, executemany):
            if "lines" in statement and "LIMIT" not in statement.upper():  # not the page of new rows
                whole.append(statement)

        event.listen(engine, "before_cursor_execute", whole_rows)
        clock[0] = 60.0
        assert self.polled(source) == [("LATE", 1)]
        event.remove(engine, "before_cursor_execute", whole_rows)
        (statement,) = whole
        assert " IN " in statement.upper()  # the one row not emitted, by its id

    def test_the_first_poll_after_the_polling_came_back_reads_the_window(self, engine, source_factory):
        """Given partition 0 back (`forget`), the source reads the state again, and the window with it."""
        with engine.begin() as conn:
            conn.execute(insert(marketplace_invoices), [row("B", T0 + timedelta(seconds=10))])
        source = source_factory()
        assert self.polled(source) == [("B", 1)]
        with engine.begin() as conn:
            conn.execute(insert(marketplace_invoices), [row("A", T0 + timedelta(seconds=2))])
        source.forget()
        assert self.polled(source) == [("A", 1)]

    def test_a_version_changed_in_place_is_read_again_for_the_po_agent_to_refuse(self, engine, source_factory):
        """An edit that kept its version was dropped here without a word; the PO agent now refuses
        it, naming it (a dead letter), as it does one from Debezium."""
        with engine.begin() as conn:
            conn.execute(insert(marketplace_invoices), [row("A", T0)])
        source = source_factory()
        assert self.polled(source) == [("A", 1)]
        with engine.begin() as conn:
            conn.execute(update(marketplace_invoices).values(invoice_number="N-CHANGED",
                                                             updated_at=T0 + timedelta(seconds=5)))
        (again,) = source.poll().events
        assert (again.version, again.document["invoice_number"]) == (1, "N-CHANGED")

    def test_a_version_changed_in_place_and_committed_late_is_found_by_the_window(self, engine, source_factory,
                                                                                   clock):
        """The window picked rows by version alone: an edit that kept its version, stamped behind the
        watermark (a transaction's start), was never read, where a new row of the same commit was."""
        with engine.begin() as conn:
            conn.execute(insert(marketplace_invoices), [row("A", T0), row("B", T0 + timedelta(seconds=60))])
        source = source_factory()
        assert self.polled(source) == [("A", 1), ("B", 1)]
        with engine.begin() as conn:
            conn.execute(update(marketplace_invoices).where(marketplace_invoices.c.invoice_id == "A")
                         .values(invoice_number="N-CHANGED", updated_at=T0 + timedelta(seconds=30)))
        clock[0] = 120.0  # the window's next read
        (again,) = source.poll().events
        assert (again.invoice_id, again.document["invoice_number"]) == ("A", "N-CHANGED")

    def test_a_restart_does_not_repeat_or_skip(self, engine, source_factory):
        with engine.begin() as conn:
            conn.execute(insert(marketplace_invoices), [row("A", T0), row("B", T0)])
        assert self.polled(source_factory()) == [("A", 1), ("B", 1)]
        with engine.begin() as conn:
            conn.execute(insert(marketplace_invoices), [row("C", T0 + timedelta(seconds=1))])
        assert self.polled(source_factory()) == [("C", 1)]

    def test_an_uncommitted_poll_is_polled_again(self, engine, source_factory):
        with engine.begin() as conn:
            conn.execute(insert(marketplace_invoices), [row("A", T0)])
        assert [e.invoice_id for e in source_factory().poll().events] == ["A"]  # crashed before commit
        assert self.polled(source_factory()) == [("A", 1)]

    def test_more_rows_than_a_batch_arrive_over_several_polls(self, engine, source_factory):
        with engine.begin() as conn:
            conn.execute(insert(marketplace_invoices),
                         [row(f"I{n:03d}", T0 + timedelta(milliseconds=n)) for n in range(120)])
        source = source_factory()
        seen, backlog = [], []
        for _ in range(4):
            seen += self.polled(source)
            backlog.append(source.backlog())
        assert sorted(seen) == [(f"I{n:03d}", 1) for n in range(120)]
        assert backlog == [True, True, False, False]  # two full pages of 50: the next is due at once


    def test_a_lines_column_nested_too_deep_is_read_and_left_to_the_rules(self, engine, source_factory):
        with engine.begin() as conn:
            conn.execute(insert(marketplace_invoices), [row("A", T0)])
            cast = "CAST(:lines AS JSON)" if engine.dialect.name == "postgresql" else ":lines"
            conn.execute(text(f"UPDATE marketplace_invoices SET lines = {cast}"), {"lines": "[" * 5000 + "]" * 5000})
            conn.execute(insert(marketplace_invoices), [row("B", T0 + timedelta(seconds=1))])
        polled = source_factory().poll()
        assert [e.invoice_id for e in polled.events] == ["A", "B"]
        assert polled.events[0].document["lines"] == "unreadable: JSON nested deeper than 8 levels"

    def test_a_row_whose_identity_cannot_key_a_record_is_unreadable_and_the_rest_goes_on(self, engine, source_factory,
                                                                                         clock):
        with engine.begin() as conn:
            conn.execute(insert(marketplace_invoices), [row("A\r\nB", T0), row("..", T0 + timedelta(seconds=1)),
                                                        row("C", T0 + timedelta(seconds=2))])
        source = source_factory()
        first = source.poll()
        source.commit()
        assert [e.invoice_id for e in first.events] == ["C"]
        errors = sorted(u.error for u in first.unreadable)  # "..": the dashboard's links would lead elsewhere
        assert errors == ["invoice_id '..': a path step, not an id",
                          "invoice_id 'A\\r\\nB': contains the control character U+000D"]
        assert any(b"A\\r\\nB" in u.raw for u in first.unreadable)
        clock[0] = 60.0  # read again in the window
        assert self.polled(source) == [] and source.poll().unreadable == []  # moved past it, once

    def test_a_row_stamped_in_the_future_hides_no_row_written_after_it(self, engine, source_factory):
        """A clock that was wrong, or a typo: the watermark stays at the present."""
        now = datetime.now(UTC)
        with engine.begin() as conn:
            conn.execute(insert(marketplace_invoices), [row("A", now), row("Z", datetime(2099, 1, 1, tzinfo=UTC))])
        source = source_factory()
        assert self.polled(source) == [("A", 1), ("Z", 1)]
        assert not source.backlog()
        with engine.begin() as conn:
            conn.execute(insert(marketplace_invoices), [row("B", datetime.now(UTC))])
        assert self.polled(source) == [("B", 1)]
        assert self.polled(source_factory()) == []  # after a restart too, and Z only once

    def test_rows_stamped_on_the_first_day_a_date_holds_are_read_and_so_is_the_row_after_them(
            self, engine, source_factory):
        """.NET's DateTime.MinValue from a legacy import: the look-back window before it was an
        OverflowError at every poll, and no invoice after it was read."""
        first_day = datetime(1, 1, 1, tzinfo=UTC)
        with engine.begin() as conn:
            conn.execute(insert(marketplace_invoices), [row(f"OLD-{n}", first_day) for n in range(3)])
        source = source_factory()
        assert self.polled(source) == [(f"OLD-{n}", 1) for n in range(3)]
        with engine.begin() as conn:
            conn.execute(insert(marketplace_invoices), [row("A", datetime.now(UTC))])
        assert self.polled(source) == [("A", 1)] and self.polled(source_factory()) == []

    @pytest.fixture
    def east_of_utc(self, engine):
        """The engine, its database's local clock 8 hours ahead of UTC."""
        raise NotImplementedError

    def test_a_row_stamped_ahead_hides_no_row_written_after_it_where_the_database_runs_east_of_utc(
            self, east_of_utc, tmp_path):
        """The column keeps UTC instants: the database's local clock (UTC+8 here) is no present for
        it. Capped there, a row stamped 2 hours ahead hid every upload of the next 2 hours."""
        metadata.create_all(east_of_utc)
        now = datetime.now(UTC)
        with east_of_utc.begin() as conn:
            conn.execute(insert(marketplace_invoices), [row("A", now), row("SKEW", now + timedelta(hours=2))])
        source = PollingMarketplaceSource(east_of_utc, FileWatermark(tmp_path / "east.json"), lookback_seconds=600)
        assert self.polled(source) == [("A", 1), ("SKEW", 1)]
        with east_of_utc.begin() as conn:
            conn.execute(insert(marketplace_invoices), [row("B", datetime.now(UTC))])
        assert self.polled(source) == [("B", 1)]

    def test_a_full_page_of_rows_stamped_in_the_future_is_no_backlog(self, engine, source_factory, tmp_path):
        """Read again by every poll until their time comes, they would make the poller spin."""
        source_factory()  # the table
        with engine.begin() as conn:
            conn.execute(insert(marketplace_invoices), [row(name, datetime(2099, 1, 1, tzinfo=UTC)) for name in "YZ"])
        source = PollingMarketplaceSource(engine, FileWatermark(tmp_path / "paged.json"), batch_size=2)
        assert self.polled(source) == [("Y", 1), ("Z", 1)] and not source.backlog()

    def test_a_row_dead_lettered_then_fixed_by_the_vendor_goes_through(self, engine, source_factory):
        with engine.begin() as conn:
            conn.execute(insert(marketplace_invoices), [{**row("A", T0), "po_number": " "}])
        source = source_factory()
        assert self.polled(source) == []
        with engine.begin() as conn:
            conn.execute(update(marketplace_invoices).values(po_number="PO-1", version=2,
                                                             updated_at=T0 + timedelta(seconds=5)))
        assert self.polled(source) == [("A", 2)]


class TestSqliteSource(MarketplaceSourceContract):
    @pytest.fixture
    def engine(self, sqlite_engine):
        return sqlite_engine

    @pytest.fixture
    def east_of_utc(self, engine, monkeypatch):
        monkeypatch.setenv("TZ", "Asia/Singapore")  # SQLite's clock is this machine's
        time.tzset()
        yield engine
        monkeypatch.undo()
        time.tzset()

    @pytest.mark.parametrize("version", ["abc", 1.5, -3])
    def test_a_version_that_is_not_a_whole_number_is_dead_lettered_once_and_the_rest_goes_on(
            self, engine, source_factory, clock, version):
        """SQLite keeps any value in an INTEGER column: 'abc' failed every poll with a TypeError."""
        with engine.begin() as conn:
            conn.execute(insert(marketplace_invoices), [row("A", T0), row("C", T0 + timedelta(seconds=2))])
            conn.execute(text("UPDATE marketplace_invoices SET version = :v WHERE invoice_id = 'A'"), {"v": version})
        source = source_factory()
        first = source.poll()
        source.commit()
        assert [e.invoice_id for e in first.events] == ["C"] and [u.invoice_id for u in first.unreadable] == ["A"]
        clock[0] = 60.0  # read again in the window
        assert source.poll().unreadable == []

    def test_money_is_read_as_the_vendor_wrote_it_not_at_the_columns_scale(self, engine, source_factory):
        """SQLite keeps a REAL, which SQLAlchemy's NUMERIC(18, 4) rounded as it read it: a tax of
        1.00005 went to the rules as 1.0001, where they refuse a fifth digit after the point."""
        with engine.begin() as conn:
            conn.execute(insert(marketplace_invoices), [row("A", T0)])
            conn.execute(text("UPDATE marketplace_invoices SET tax_amount = 1.00005, total_amount = 32.00005"))
        (event,) = source_factory().poll().events
        assert (event.document["tax_amount"], event.document["total_amount"]) == ("1.00005", "32.00005")

    def test_a_row_the_driver_cannot_read_is_dead_lettered_once_and_the_rest_goes_on(self, engine, source_factory,
                                                                                     clock):
        with engine.begin() as conn:
            conn.execute(insert(marketplace_invoices), [row("A", T0), row("C", T0 + timedelta(seconds=2))])
            conn.execute(text("UPDATE marketplace_invoices SET invoice_date = 'garbage' WHERE invoice_id = 'A'"))
        source = source_factory()
        first = source.poll()
        source.commit()
        assert [e.invoice_id for e in first.events] == ["C"] and [u.invoice_id for u in first.unreadable] == ["A"]
        clock[0] = 60.0
        again = source.poll()
        assert again.events == [] and again.unreadable == []  # read again in the window, not dead-lettered again


    @pytest.mark.parametrize(("column", "stored", "named", "shown"), [
        ("vendor_id", "4DFC6C6C6572", "A", b'"vendor_id": "M\\\\xfcller"'),
        ("invoice_id", "4DFC31", "M\\xfc1", b'"invoice_id": "M\\\\xfc1"'),
    ])
    def test_a_row_with_text_that_is_not_utf8_is_dead_lettered_once_and_the_rest_goes_on(
            self, engine, source_factory, clock, column, stored, named, shown):
        """A vendor's cp1252 text imported as it was: sqlite3's error for it read as an outage, and
        the poller waited on the row for good."""
        with engine.begin() as conn:
            conn.execute(insert(marketplace_invoices), [row("A", T0), row("C", T0 + timedelta(seconds=2))])
            conn.execute(text(f"UPDATE marketplace_invoices SET {column} = CAST(X'{stored}' AS TEXT) "
                              "WHERE invoice_id = 'A'"))
        source = source_factory()
        first = source.poll()
        source.commit()
        assert [e.invoice_id for e in first.events] == ["C"] and [u.invoice_id for u in first.unreadable] == [named]
        assert shown in first.unreadable[0].raw and "decode" in first.unreadable[0].error
        clock[0] = 60.0  # read again in the window: told once
        again = source.poll()
        assert again.events == [] and again.unreadable == []


    def test_a_page_is_continued_in_the_databases_order_of_text_where_it_is_not_pythons(self, engine, tmp_path):
        """A case-insensitive collation (PostgreSQL's en_US.UTF-8 and SQL Server's *_CI_AS are
        locale orders too) sorts `mp-001` before `MP-002`, Python after `MP-004`: the cursor, taken
        as the page's greatest key by Python, stayed on `mp-001`, and the rows of that one upload
        after the first two pages, and every upload after them, were never read."""
        with engine.begin() as conn:
            conn.execute(text(str(CreateTable(marketplace_invoices).compile(engine)).replace(
                "invoice_id VARCHAR(64) NOT NULL", "invoice_id VARCHAR(64) COLLATE NOCASE NOT NULL")))
            conn.execute(insert(marketplace_invoices), [row(name, T0) for name in
                                                        ["mp-001", "MP-002", "MP-003", "MP-004", "MP-005", "MP-006"]])
            conn.execute(insert(marketplace_invoices), [row("MP-NEXT", T0 + timedelta(seconds=1))])
        source = PollingMarketplaceSource(engine, FileWatermark(tmp_path / "watermark.json"), batch_size=3)
        seen = [name for _ in range(4) for name, _version in self.polled(source)]
        assert seen == ["mp-001", "MP-002", "MP-003", "MP-004", "MP-005", "MP-006", "MP-NEXT"]

    def test_a_row_whose_time_cannot_be_read_is_dead_lettered_once_while_the_watermark_moves_on(
            self, engine, source_factory, clock):
        """Marked with the watermark's time, such a row (SQLite keeps any text in a DATETIME column,
        and sorts it after every time) was dead-lettered again by every poll that read a newer upload."""
        with engine.begin() as conn:
            conn.execute(insert(marketplace_invoices), [row("BAD", T0), row("A", T0)])
            conn.execute(text("UPDATE marketplace_invoices SET updated_at = 'n/a' WHERE invoice_id = 'BAD'"))
        source = source_factory()
        dead_lettered = []
        for n in range(1, 4):
            polled = source.poll()
            source.commit()
            dead_lettered += [row.invoice_id for row in polled.unreadable]
            with engine.begin() as conn:
                conn.execute(insert(marketplace_invoices), [row(f"N{n}", T0 + timedelta(seconds=n))])
            clock[0] += 120.0  # the look-back window read too
        assert dead_lettered == ["BAD"]
        assert [name for name, _ in self.polled(source)] == ["N3"]


    def test_a_page_whose_last_row_is_an_earlier_time_than_another_does_not_send_the_cursor_back(
            self, engine, tmp_path):
        """SQLite orders times as text: `2026-11-25T05:00` (isoformat()'s form) sorts after
        `2026-11-25 23:00` (CURRENT_TIMESTAMP's). Started after the page's last row, the cursor went
        back to 05:00, and the same full page was read at every poll."""
        stamps = {"S1": "2026-11-25 23:00:00", "T1": "2026-11-25T05:00:00", "S2": "2026-11-26 08:00:00",
                  "S3": "2026-11-26 09:00:00", "S4": "2026-11-26 10:00:00"}
        metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(insert(marketplace_invoices), [row(name, T0) for name in stamps])
            for name, stamp in stamps.items():
                conn.execute(text("UPDATE marketplace_invoices SET updated_at = :at WHERE invoice_id = :id"),
                             {"at": stamp, "id": name})
        source = PollingMarketplaceSource(engine, FileWatermark(tmp_path / "watermark.json"), batch_size=2)
        seen = {name for _ in range(5) for name, _version in self.polled(source)}
        assert seen == set(stamps) and not source.backlog()

    def test_a_row_whose_time_cannot_be_read_is_not_dead_lettered_again_after_a_full_page(self, engine, tmp_path):
        """It sorts after every time, so a full page of other rows did not read it, and it was forgotten."""
        metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(insert(marketplace_invoices), [row("BAD", T0), row("A", T0)])
            conn.execute(text("UPDATE marketplace_invoices SET updated_at = 'n/a' WHERE invoice_id = 'BAD'"))
        source = PollingMarketplaceSource(engine, FileWatermark(tmp_path / "watermark.json"), batch_size=3)
        dead_lettered = []
        for burst in range(3):
            with engine.begin() as conn:
                conn.execute(insert(marketplace_invoices), [row(f"N{burst}-{n}", T0 + timedelta(seconds=burst + 1))
                                                            for n in range(4)])
            for _ in range(3):
                polled = source.poll()
                source.commit()
                dead_lettered += [unreadable.invoice_id for unreadable in polled.unreadable]
        assert dead_lettered == ["BAD"]

    def test_an_invoice_id_sqlite_keeps_as_a_blob_is_dead_lettered_and_the_rest_goes_on(self, engine, source_factory):
        """Kept as bytes in the poller's memory, it broke the save of its state at every poll."""
        with engine.begin() as conn:
            conn.execute(insert(marketplace_invoices), [row("A", T0), row("BLOB", T0)])
            conn.execute(text("UPDATE marketplace_invoices SET invoice_id = CAST('BLOB' AS BLOB) "
                              "WHERE invoice_id = 'BLOB'"))
        source = source_factory()
        first = source.poll()
        source.commit()
        assert [e.invoice_id for e in first.events] == ["A"] and "not text" in first.unreadable[0].error
        with engine.begin() as conn:
            conn.execute(insert(marketplace_invoices), [row("C", T0 + timedelta(seconds=1))])
        assert self.polled(source) == [("C", 1)]


    def test_rows_stamped_in_whole_seconds_are_all_read_page_after_page(self, engine, source_factory):
        """SQLite's CURRENT_TIMESTAMP, the column's own default before, keeps whole seconds as text
        (`2026-11-25 09:00:03`), which sorts before the watermark's `2026-11-25 09:00:03.000000`:
        the rest of the second a page ended in was skipped, and in a catch-up of 7,000 uploads 230
        invoices were never ingested."""
        source = source_factory()  # pages of 50: each ends inside a second of 7 uploads
        with engine.begin() as conn:
            for n in range(140):
                second = (T0 + timedelta(seconds=n // 7)).strftime("%Y-%m-%d %H:%M:%S")
                conn.execute(text("INSERT INTO marketplace_invoices (invoice_id, po_number, lines, updated_at) "
                                  "VALUES (:id, 'PO-1', '[]', :at)"), {"id": f"MP-{n:03d}", "at": second})
        seen = [name for _ in range(4) for name, _version in self.polled(source)]
        assert seen == [f"MP-{n:03d}" for n in range(140)]

    def test_the_watermark_the_release_before_saved_inside_a_second_is_read_on(self, engine, tmp_path):
        """Its state is what it was: a watermark at microseconds, the rows emitted by their times."""
        metadata.create_all(engine)
        at = T0.strftime("%Y-%m-%d %H:%M:%S")
        with engine.begin() as conn:
            for name in ("MP-A", "MP-B", "MP-C", "MP-D"):
                conn.execute(text("INSERT INTO marketplace_invoices (invoice_id, po_number, lines, updated_at) "
                                  "VALUES (:id, 'PO-1', '[]', :at)"), {"id": name, "at": at})
        state = FileWatermark(tmp_path / "watermark.json")
        state.write({"watermark": [T0.isoformat(), "MP-B"],
                    "emitted": {name: [1, T0.isoformat()] for name in ("MP-A", "MP-B")}})
        source = PollingMarketplaceSource(engine, state, lookback_seconds=600, batch_size=50)
        assert self.polled(source) == [("MP-C", 1), ("MP-D", 1)] and self.polled(source) == []

    def test_a_row_the_table_stamps_itself_keeps_the_milliseconds(self, engine, source_factory):
        source = source_factory()
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO marketplace_invoices (invoice_id, po_number, lines) "
                              "VALUES ('A', 'PO-1', '[]')"))
            stamped = conn.execute(text("SELECT updated_at FROM marketplace_invoices")).scalar()
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}000", stamped)  # as the watermark is
        (event,) = source.poll().events
        assert event.received_at.isoformat(timespec="microseconds").startswith(stamped.replace(" ", "T"))


    @pytest.mark.parametrize("broken", [None, "invoice_date"])  # a row the driver cannot read: read again as text
    def test_json_columns_over_the_limit_are_reported_by_their_size_without_being_read(
            self, engine, source_factory, broken):
        """Read whole before the limit applied: 20 rows of 50 MB lines took the poller from 209 MB
        to 1,261 MB, and a page is 1,000 rows: it crashed out of memory on the same page again and again."""
        big = '[{"line_no": 1, "description": "' + "x" * 8_000_000 + '"}]'
        with engine.begin() as conn:
            conn.execute(insert(marketplace_invoices), [row("A", T0), row("B", T0 + timedelta(seconds=1))])
            conn.execute(text("UPDATE marketplace_invoices SET lines = :big, extra_charges = :big "
                              "WHERE invoice_id = 'A'"), {"big": big})
            if broken:
                conn.execute(text(f"UPDATE marketplace_invoices SET {broken} = 'garbage' WHERE invoice_id = 'A'"))
        polled = _polled_within_2_mb(source_factory())
        if broken:
            assert [e.invoice_id for e in polled.events] == ["B"] and len(polled.unreadable[0].raw) < 1_000
        else:
            too_large = f"unreadable: {len(big):,} bytes of JSON; at most 256,000"
            assert (polled.events[0].document["lines"], polled.events[0].document["extra_charges"]) == (too_large,) * 2
            assert polled.events[1].document["lines"][0]["part_number"] == "AC-100"

    def test_a_header_column_longer_than_a_whole_row_on_sqlite_is_dead_lettered_without_being_read(
            self, engine, source_factory):
        """SQLite keeps a VARCHAR(64) of any length: a vendor id of 8 MB was read whole, as lines were."""
        with engine.begin() as conn:
            conn.execute(insert(marketplace_invoices), [row("A", T0), row("B", T0 + timedelta(seconds=1))])
            conn.execute(text("UPDATE marketplace_invoices SET vendor_id = :big WHERE invoice_id = 'A'"),
                         {"big": "V" * 8_000_000})
        polled = _polled_within_2_mb(source_factory())
        assert [e.invoice_id for e in polled.events] == ["B"]
        assert [(u.invoice_id, u.error) for u in polled.unreadable] == [
            ("A", "vendor_id: more than 256,000 characters")]


class TestPostgresSource(MarketplaceSourceContract):
    @pytest.fixture
    def engine(self, marketplace_pg_engine):
        return marketplace_pg_engine

    @pytest.fixture
    def east_of_utc(self, engine):
        options = f"{engine.url.query['options']} -ctimezone=Asia/Singapore"
        east = engine_for(engine.url.update_query_dict({"options": options}).render_as_string(hide_password=False))
        yield east
        east.dispose()


def _polled_within_2_mb(source):
    """The poll, whose memory must stay under 2 MB however large a column in the database is."""
    tracemalloc.start()
    polled = source.poll()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 2_000_000, f"{peak:,} bytes taken by the poll"
    return polled

