"""SQL polling of the marketplace table: the embedded default, and the fallback where logical
replication is not allowed.

Rows are read by (updated_at, invoice_id) watermark. A row committed late with an older
`updated_at` is still found: every tenth of the look-back window, a poll also reads the window
behind the watermark and emits what it has not emitted yet. (Read on every poll, the window made
a burst of uploads cost the square of its size: 50,000 rows took 28-36 s to read, polls up to
1.2-1.7 s long, against 12 s without it; and 5 minutes of uploads at 50/s are 15,000 rows every
2 s.) So a row is found when committed within nine tenths of the look-back after its time.
What was emitted inside the window is remembered durably with the watermark (a small JSON state
in processscheduler, `connectors.watermarks`), so a restart, or another worker taking the polling
over, goes on where the last commit left it and skips no version. Deletes cannot be seen by
polling; withdrawals need the Debezium source.

A page that cannot be read (a value the driver cannot convert) is read again row by row: the
row that fails alone comes back as unreadable, with its columns as text, for the dead-letter
topic, and the watermark moves past it, so one bad row never stops the vendors behind it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    DateTime,
    Engine,
    String,
    Text,
    and_,
    case,
    cast,
    func,
    literal_column,
    or_,
    select,
    true,
    type_coerce,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from connectors.bounded_text import AS_TEXT, CutOnSqlite, text_within
from connectors.marketplace_table import HEADER_FIELDS, invoice_document, stream_key_problem
from connectors.marketplace_table import marketplace_invoices as table
from connectors.ports import MarketplaceSource, Polled, UnreadableRow
from connectors.sql import as_utc, database_clocks, escaped_text, mapped_errors
from connectors.watermarks import SavedState, WatermarkStore
from rules.errors import DataError, Unavailable
from rules.lifecycle import InvoiceSubmitted
from rules.limits import Limits, json_size_problem
from rules.models import MAX_VERSION
from rules.parsing import UNREADABLE_COLUMN

log = logging.getLogger(__name__)

_JSON = ("lines", "extra_charges")
_CUT_ON_SQLITE = ("vendor_id", "invoice_number", "po_number", "currency")  # the invoice id keys its rows

Watermark = tuple[datetime, str]


class InTimeOrder(FunctionElement[datetime]):
    """The column's time as the pages are ordered and continued by: as it is; on SQLite, which
    compares times as text, a time in whole seconds (CURRENT_TIMESTAMP's, the table's default
    before) with the microseconds the watermark is written with. As it was, `2026-11-25 09:00:03`
    sorted before the watermark's `2026-11-25 09:00:03.000000`, and the rest of the second a page
    ended in was skipped: in a catch-up of 7,000 uploads, 230 invoices were never ingested."""

    type = DateTime(timezone=True)  # the watermark it is compared with is written as the column's
    name = "in_time_order"
    inherit_cache = True


@compiles(InTimeOrder)
def _as_it_is(element: InTimeOrder, compiler: SQLCompiler, **kw: Any) -> str:
    (time,) = element.clauses
    return compiler.process(time, **kw)


@compiles(InTimeOrder, "sqlite")
def _to_the_microsecond(element: InTimeOrder, compiler: SQLCompiler, **kw: Any) -> str:
    # Its text alone, not strftime(), which on every row made an idle poll of 100,000 rows 250 ms (20-40).
    (time,) = element.clauses
    text = type_coerce(time, String)
    return compiler.process(case((func.length(text) == len("2026-11-25 09:00:03"), text + ".000000"), else_=text),
                            **kw)


_UPDATED_AT = InTimeOrder(table.c.updated_at)
_EARLIEST = datetime.min.replace(tzinfo=UTC)
WINDOW_CHUNK = 1000  # ids in one IN list of the window's read (SQL Server takes 2,100 parameters)


def _read(limits: Limits) -> list[Any]:
    """The row's columns as the poller reads them, each within the limit of a row: the JSON as text
    (drivers parse JSON numbers into floats, and amounts must stay exact), with its length."""
    limit = limits.max_json_bytes
    header = [CutOnSqlite(c, limit).label(c.key) if c.key in _CUT_ON_SQLITE else c for c in table.c
              if c.key not in _JSON]
    return [*header, *(column for name in _JSON for column in text_within(table.c[name], limit))]


def _document(row: Any, limits: Limits) -> dict[str, Any]:
    header = {field: getattr(row, field) for field in HEADER_FIELDS}
    if header["invoice_date"] is not None:
        header["invoice_date"] = header["invoice_date"].isoformat()
    document = invoice_document(header, row.lines, row.extra_charges, limits)
    for name in _JSON:  # left in the database, measured there
        if (problem := json_size_problem(getattr(row, f"{name}_length") or 0, limits)) is not None:
            document[name] = f"{UNREADABLE_COLUMN}{problem}"
    return document


def _cut_problem(row: Any, limits: Limits) -> str | None:
    """Which header column SQLite kept longer than a whole row may be (`CutOnSqlite`)."""
    for name in _CUT_ON_SQLITE:
        value = getattr(row, name)
        if isinstance(value, str | bytes) and len(value) > limits.max_json_bytes:
            return f"{name}: more than {limits.max_json_bytes:,} characters"
    return None


class PollingMarketplaceSource(MarketplaceSource):
    def __init__(self, engine: Engine, state: WatermarkStore, lookback_seconds: float = 300, batch_size: int = 1000,
                 limits: Limits = Limits(), clock: Callable[[], float] = time.monotonic):
        self.engine = engine
        self.state = SavedState(state)
        self.lookback = timedelta(seconds=lookback_seconds)
        self.batch_size = batch_size
        self.limits = limits
        self._columns = _read(limits)
        self._loaded: tuple[Watermark | None, dict[str, list[Any]]] | None = None  # at the first poll
        self.window_every, self.clock = lookback_seconds / 10, clock
        self._window_read_at: float | None = None  # never yet: the first poll reads the window
        self._pending: tuple[Watermark | None, dict[str, list[Any]], bool, float | None] | None = None
        self._backlog = False

    def _load(self) -> tuple[Watermark | None, dict[str, list[Any]]]:
        state = self.state.read()
        mark = state.get("watermark")
        return ((datetime.fromisoformat(mark[0]), mark[1]) if mark else None), state.get("emitted", {})

    def poll(self) -> Polled:
        """New invoices and versions; call `commit()` once they are safely produced."""
        if self._loaded is None:
            self._loaded = self._load()
        watermark, emitted = self._loaded[0], dict(self._loaded[1])
        polled = Polled()
        now = self.clock()
        whole_window = self._window_read_at is None or now - self._window_read_at >= self.window_every
        rows, present, full, page_end = self._rows(watermark, polled, whole_window, emitted)
        for row in rows:
            updated_at, name = as_utc(row.updated_at), str(row.invoice_id)  # SQLite may hold a BLOB id
            known = emitted.get(name)
            # The same version at another time is read too: an edit that kept its version (the PO
            # agent refuses it, naming it) was dropped here without a word.
            if known is None or known[0] < _version(row) or (
                    known[0] == _version(row) and known[1] != updated_at.isoformat()):
                event = self._event(row, updated_at, polled)
                if event is not None:
                    polled.events.append(event)
                emitted[name] = [_version(row), updated_at.isoformat()]
        unreadable, polled.unreadable = polled.unreadable, []
        timeless = set()  # rows whose time cannot be read: every poll reads them again
        for row in unreadable:  # moved past, and dead-lettered once as it is
            at = row.updated_at.isoformat() if row.updated_at is not None else ""
            seen = [0, at, hashlib.sha256(row.raw).hexdigest()]
            # Its own version when it has one: the vendor's fixed version (a higher one) goes through.
            marker = [row.version, at] if row.version is not None else seen
            if row.updated_at is None:
                timeless.add(row.invoice_id)
            if row.version is None and emitted.get(row.invoice_id) == seen:
                continue  # read again, unchanged: dead-lettered already
            polled.unreadable.append(row)
            emitted[row.invoice_id] = marker
        watermark = page_end or watermark
        # Never past the present (the database's): one row stamped 2099 would hide every row after it.
        # A page that ends there read all there is till then.
        capped = _not_past(watermark, present)
        backlog, watermark = full and capped == watermark, capped
        if watermark is not None:
            horizon = _before(watermark[0], self.lookback).isoformat()
            # A row without a time is remembered while it is still read, not by a time: marked with
            # the watermark's, it was dead-lettered again whenever the watermark moved. It sorts after
            # every time, so a full page did not reach it: it is forgotten only once a page has.
            emitted = {k: v for k, v in emitted.items() if v[1] >= horizon or k in timeless or full and v[1] == ""}
        self._pending = (watermark, emitted, backlog, now if whole_window else self._window_read_at)
        return polled

    def _event(self, row: Any, updated_at: datetime, polled: Polled) -> InvoiceSubmitted | None:
        problem = _cut_problem(row, self.limits) or _key_problem(row, self.limits)
        if problem is None and not 1 <= _version(row) <= MAX_VERSION:
            problem = f"version {str(row.version)[:40]!r} is not a whole number from 1 to {MAX_VERSION}"
        if problem is None:
            try:
                return InvoiceSubmitted(invoice_id=row.invoice_id, version=row.version, po_number=row.po_number,
                                        document=_document(row, self.limits), received_at=updated_at)
            except DataError as error:  # a column the document cannot hold (`invoice_document`)
                problem = str(error)
        polled.unreadable.append(UnreadableRow(str(row.invoice_id)[:64], updated_at,
                                               json.dumps(_as_text(row)).encode(), problem, _version(row)))
        return None

    def commit(self) -> None:
        """Makes the last poll durable: the next poll, here or after a restart, starts after it."""
        if self._pending is None:
            return
        watermark, emitted, self._backlog, self._window_read_at = self._pending
        self._loaded, self._pending = (watermark, emitted), None
        mark = [watermark[0].isoformat(), watermark[1]] if watermark else None
        self.state.save({"watermark": mark, "emitted": emitted})

    def backlog(self) -> bool:
        return self._backlog

    def forget(self) -> None:
        self._pending = None
        if not self.state.behind:  # else the store lacks this worker's last commit: what it holds is older
            self._loaded = None
            self._window_read_at = None  # the window is read, against what the store remembers of it

    def _rows(self, watermark: Watermark | None, polled: Polled, whole_window: bool,
              emitted: dict[str, list[Any]]) -> tuple[list[Any], datetime, bool, Watermark | None]:
        """The rows to read, the database's present, whether the page of new rows was full, and the
        key of its last row as the database ordered it: the next page starts after that key, in the
        database's order of text, which a case-insensitive or locale collation (PostgreSQL's
        en_US.UTF-8, SQL Server's *_CI_AS) makes other than Python's. The page's greatest key by
        Python's order stopped the cursor: `mp-001` sorted after `MP-004`, the next page started
        after `mp-001`, and the rows between it and `MP-004` were never read."""
        rows: list[Any] = []
        full, page_end = False, None
        with mapped_errors("marketplace"), self.engine.connect() as conn:
            # The column keeps instants (timestamptz): the present is the database's UTC time. Its
            # local time, hours ahead east of UTC, let one row stamped ahead hide the next hours' uploads.
            present = database_clocks(conn)[0]
            for where, limited in self._pages(_not_past(watermark, present), whole_window):
                query = select(*self._columns).where(where).order_by(_UPDATED_AT, table.c.invoice_id)
                if limited:
                    query = query.limit(self.batch_size)
                try:
                    page = conn.execute(query).all() if limited else self._window(conn, where, emitted)
                    last = _page_end([(row.updated_at, row.invoice_id) for row in page]) if limited else None
                except Exception as error:
                    if isinstance(error, Unavailable) or _connection_lost(error):
                        raise
                    log.warning("a page of the marketplace table cannot be read (%s); reading it row by row", error)
                    conn.rollback()
                    page, last = self._one_by_one(conn, where, limited, polled)
                rows.extend(page)
                if limited:  # the rows that cannot be read count: they are moved past too
                    full = len(page) + len(polled.unreadable) >= self.batch_size
                    page_end = last
        return rows, present, full, page_end

    def _window(self, conn: Connection, where: ColumnElement[bool], emitted: dict[str, list[Any]]) -> list[Any]:
        """The window's rows not emitted yet: their keys first, then those rows whole. Read whole,
        every row of the window came with its lines at every read, all but the late ones emitted
        already (5 minutes of uploads at 50/s: 15,000 rows and their lines every 30 s)."""
        keys = conn.execute(select(table.c.invoice_id, table.c.version, table.c.updated_at).where(where)).all()
        wanted = [key.invoice_id for key in keys if _not_emitted(emitted, key)]
        rows: list[Any] = []
        for start in range(0, len(wanted), WINDOW_CHUNK):
            rows += conn.execute(select(*self._columns).where(
                where, table.c.invoice_id.in_(wanted[start:start + WINDOW_CHUNK]))).all()
        return sorted(rows, key=lambda row: (as_utc(row.updated_at), row.invoice_id))

    def _one_by_one(self, conn: Connection, where: ColumnElement[bool], limited: bool,
                    polled: Polled) -> tuple[list[Any], Watermark | None]:
        """The rows it can read, and the key of the last one whose time can be read, readable or not."""
        # Each row by its key, read with any bytes that are not UTF-8 escaped; on SQLite, which
        # keeps such bytes, by its rowid: an id read escaped is not the id stored.
        row_key = literal_column("rowid") if conn.dialect.name == "sqlite" else table.c.invoice_id
        keys_query = (select(table.c.invoice_id, cast(table.c.updated_at, Text).label("updated_at"),
                             row_key.label("row_key")).where(where).order_by(_UPDATED_AT, table.c.invoice_id))
        with escaped_text(conn):
            keys = conn.execute(keys_query.limit(self.batch_size) if limited else keys_query).all()
        rows: list[Any] = []
        for key in keys:
            single = select(*self._columns).where(row_key == key.row_key)
            try:
                rows.extend(conn.execute(single).all())
            except Exception as error:
                if _connection_lost(error):
                    raise
                conn.rollback()
                with escaped_text(conn):
                    raw = conn.execute(select(*(cast(c, AS_TEXT).label(c.name) for c in self._columns))
                                       .where(row_key == key.row_key)).first()
                polled.unreadable.append(UnreadableRow(str(key.invoice_id)[:64], _parsed_time(key.updated_at),
                                                       json.dumps(dict(raw._mapping) if raw else {}).encode(),
                                                       f"{type(error).__name__}: {error}"[:500]))
        return rows, _page_end([(_parsed_time(key.updated_at), key.invoice_id) for key in keys])

    def _pages(self, watermark: Watermark | None, whole_window: bool) -> list[tuple[Any, bool]]:
        """The next page of new rows, and the look-back window behind the watermark (late commits),
        each with whether it is limited to a page."""
        if watermark is None:
            return [(true(), True)]
        since, invoice_id = watermark
        newer = or_(_UPDATED_AT > since, and_(_UPDATED_AT == since, table.c.invoice_id > invoice_id))
        window = and_(_UPDATED_AT >= _before(since, self.lookback), ~newer)
        return [(newer, True), (window, False)] if whole_window else [(newer, True)]


def _key_problem(row: Any, limits: Limits) -> str | None:
    """Why the row's PO number or invoice id cannot key a record, naming which and its value."""
    for name in ("po_number", "invoice_id"):
        value = getattr(row, name)
        if (problem := stream_key_problem(value, limits)) is not None:
            return f"{name} {str(value)[:80]!r}: {problem}"
    return None


def _not_emitted(emitted: dict[str, list[Any]], key: Any) -> bool:
    """A version the window has not emitted, or has at another time (an edit that kept its version,
    committed late); a version that is not a whole number is read whole, as what it holds decides
    whether it was dead-lettered before."""
    known = emitted.get(str(key.invoice_id))
    return known is None or type(key.version) is not int or known[0] < key.version or (
        known[0] == key.version and known[1] != as_utc(key.updated_at).isoformat())


def _version(row: Any) -> int:
    """The row's version; 0 for one that is not a whole number (SQLite keeps any value in any column)."""
    return row.version if type(row.version) is int else 0


def _page_end(keys: list[tuple[datetime | None, Any]]) -> Watermark | None:
    """Where the next page starts: after the page's last row with a time, as the database ordered
    them; after the last row of the latest time it read, when an earlier row of the page had a
    later time than that last one (SQLite orders times as text, and `2026-11-25T05:00` sorts after
    `2026-11-25 06:00`: the cursor went back, and the same page was read at every poll). Before
    the rows of that time, as it started, it read them again at every poll, once SQLite's whole
    seconds compared as the watermark's (`InTimeOrder`)."""
    timed = [(as_utc(at), str(invoice_id)) for at, invoice_id in keys if at is not None]
    if not timed:
        return None
    latest = max(at for at, _ in timed)
    return [key for key in timed if key[0] == latest][-1]


def _before(moment: datetime, lookback: timedelta) -> datetime:
    """The start of the look-back window, at the first moment a datetime holds: rows stamped
    0001-01-01 (.NET's DateTime.MinValue, from a legacy import) made every poll an OverflowError,
    and no invoice was read again."""
    return moment - lookback if moment - _EARLIEST > lookback else _EARLIEST


def _not_past(watermark: Watermark | None, present: datetime) -> Watermark | None:
    """A watermark in the future (left by an older version) comes back to the present."""
    return (present, "") if watermark is not None and watermark[0] > present else watermark


def _connection_lost(error: BaseException) -> bool:
    from sqlalchemy.exc import DBAPIError, OperationalError

    return isinstance(error, OperationalError) or (isinstance(error, DBAPIError) and error.connection_invalidated)


def _parsed_time(text: str | None) -> datetime | None:
    try:
        return as_utc(datetime.fromisoformat(text)) if text else None
    except ValueError:
        return None


def _as_text(row: Any) -> dict[str, str | None]:
    return {key: None if value is None else str(value) for key, value in row._mapping.items()}
