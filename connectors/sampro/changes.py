"""Sampro changes by SQL polling: the embedded default, and the way where CDC is not allowed.

Each poll asks the PO header and line tables for the times at which each PO's rows changed
(`updated_at`) after where its last read of that table stopped (a cursor: the time and PO, in the
database's order, so that a page may end inside the thousands of POs of one mass update), a page
at most, and makes one `PurchaseOrderChanged` per PO: at the newest of its times not yet made into
a change. A row committed late, with a time before a change of its PO already sent, is so a change
of its own and never hidden behind that one. Every tenth of the look-back window, a poll also
reads the whole window behind the cursors, for rows committed late with an earlier time. (Read on
every poll, the window cost the worker's loop 160 ms every 2 s once 20,000 POs had changed in
it, as when the bot enters invoices at month end.)

A change's event id is the PO and the change's time, so a change read again (in the window, or
after a crash before `commit`) is the same event, and the PO agent applies it once. The cursors
and the events of the window are a JSON state in processscheduler, which every worker shares
(`connectors.watermarks`), written by `commit` once the events are safely produced: some 35 bytes
for each PO changed in the look-back, 700 kB after a mass update of 20,000 POs, read whole (and one
poll's changes) until it leaves the window. On its very
first poll the source starts at Sampro's newest change: what changed before the pipeline ran
cannot clear anything.

Sampro's rows are input from outside: a row whose PO number no stream could be keyed by is
logged and passed over, and a cursor never moves past the present by Sampro's own clock
(which may be local time), so that one row stamped in the future (a typo, a clock that was
wrong) cannot hide every later change.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, Select, and_, func, or_, select

from connectors.marketplace_table import stream_key_problem
from connectors.ports import SamproChanges
from connectors.sampro.reader import padless
from connectors.sampro.tables import SamproNames, StampClock, sampro_tables
from connectors.sql import as_utc, database_clocks, mapped_errors
from connectors.watermarks import SavedState, WatermarkStore
from rules.lifecycle import PurchaseOrderChanged
from rules.limits import Limits

log = logging.getLogger(__name__)

# Changes read from each table at most per poll: a mass update in Sampro (200,000 POs in one
# transaction) was one poll of 10 s and 211 MB, and one batch of 200,000 events. A full page makes
# the next poll due at once.
PAGE_SIZE = 5000


def change_id(po_number: str, changed_at: datetime, transaction: str | None = None) -> str:
    """The change's name: its PO and time, and the database transaction that made it where the source
    knows it (Debezium, `connectors/debezium/sampro_decoder.py`: its time in milliseconds, as
    Debezium gives it). A poller sees no transactions: its time to the microsecond, as the row's
    column reads back, the same at every read (to the millisecond, a receipt posted 400 us after a
    price change of its PO, committed after the poll that read that one, was the change sent
    already, and its held invoices waited for the PO's next change)."""
    if transaction is not None:
        return f"sampro:{po_number}:{int(as_utc(changed_at).timestamp() * 1000)}@{transaction}"
    return f"sampro:{po_number}:{(as_utc(changed_at) - EPOCH) // MICROSECOND}"


Cursor = tuple[datetime, Any]
"""Where the reads of one table stopped: a millisecond, every one before it read, and the last PO
of it read, as the database gave it (padding and all, so that it compares as the database
compares it): "" for none yet, None for all. A millisecond: a time read
back from the database may have lost digits (SQL Server keeps 100 ns, Python 1 us, and a driver
may bind 1 ms), and a cursor at a time the rows do not have would never move."""

MILLISECOND = timedelta(milliseconds=1)
MICROSECOND = timedelta(microseconds=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _millisecond(at: datetime) -> datetime:
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def _to_the_millisecond(event_id: str) -> str:
    """The id an older release gave a change (`change_id` to the millisecond): the state it left
    names those, and every change of its window was sent again after an upgrade."""
    named, _, micros = event_id.rpartition(":")
    return f"{named}:{int(micros) // 1000}"


def _micros(event_id: Any) -> int:
    """The microsecond a change's id names (`change_id`; one kept by an older version names a
    millisecond); 0 for what names none (forgotten)."""
    try:
        number = int(str(event_id).rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return 0
    return number * 1000 if number < 10**14 else number  # 10**14 ms is the year 5138; 10**14 us, 1973


class PollingSamproChanges(SamproChanges):
    def __init__(self, engine: Engine, state: WatermarkStore, names: SamproNames = SamproNames(),
                 lookback_seconds: float = 300, clock: Callable[[], float] = time.monotonic,
                 limits: Limits = Limits(), page_size: int = PAGE_SIZE, stamped_in: StampClock = "later"):
        self.engine, self.state, self.limits, self.page_size = engine, SavedState(state), limits, page_size
        self.stamped_in = stamped_in
        tables = sampro_tables(names)
        self.tables = {"po_header": tables.po_header, "po_line": tables.po_line}
        self.lookback = timedelta(seconds=lookback_seconds)
        self.window_every, self.clock = lookback_seconds / 10, clock
        self._loaded = False  # the state is read at the first poll, when processscheduler may answer
        self._cursors: dict[str, Cursor] | None = None  # None: not started yet
        self._emitted: set[str] = set()
        self._window_read_at: float | None = None  # never yet: the first poll reads the window
        self._backlog = False
        self._pending: tuple[dict[str, Cursor], set[str], float | None, bool] | None = None

    def _load(self) -> tuple[dict[str, Cursor] | None, set[str]]:
        state = self.state.read()
        return self._read_cursors(state.get("cursors"), state.get("watermark")), set(state.get("emitted", []))

    def _read_cursors(self, cursors: Any, watermark: Any) -> dict[str, Cursor] | None:
        """The cursors of a state; None for none, or for one that cannot be read (start afresh,
        saying so). An older version kept only `watermark`, one time for both tables, every PO of
        which it had read (a millisecond partly read: the window reads the rest)."""
        found = None
        try:
            if isinstance(cursors, dict) and cursors.keys() == self.tables.keys():
                found = {table: (_millisecond(as_utc(datetime.fromisoformat(at))), po)
                         for table, (at, po) in cursors.items()}
        except (TypeError, ValueError):
            pass
        try:
            if found is None and isinstance(watermark, str):
                found = dict.fromkeys(self.tables, (_millisecond(as_utc(datetime.fromisoformat(watermark))), None))
        except ValueError:
            pass
        if found is None and (cursors is not None or watermark is not None):
            log.warning("Sampro's polling state cannot be read (cursors %.200r, watermark %.200r): polling starts "
                        "at Sampro's newest change, and a change made before it is not seen", cursors, watermark)
        return found

    def newest_query(self, table: str) -> Select[Any]:
        """Where the first poll starts: the table's newest change."""
        return select(func.max(self.tables[table].c.updated_at))

    def group_query(self, table: str, cursor: Cursor, limit: int) -> Select[Any]:
        """The rest of the millisecond the last page stopped in, by PO: a page in the order of time
        could not say which POs of it, at later microseconds, it had not reached yet."""
        column, po = self.tables[table].c.updated_at, self.tables[table].c.po_number
        at, last = cursor
        return (select(po, column).where(column >= at, column < at + MILLISECOND, po > last).distinct()
                .order_by(po).limit(limit))

    def after_query(self, table: str, cursor: Cursor, limit: int) -> Select[Any]:
        """A page of a table's changes after the cursor's millisecond, oldest first (the lines of a
        PO written in one transaction share their time, and are one row here)."""
        column, po = self.tables[table].c.updated_at, self.tables[table].c.po_number
        return (select(po, column).where(column >= cursor[0] + MILLISECOND).distinct()
                .order_by(column, po).limit(limit))

    def window_query(self, table: str, cursor: Cursor, since: datetime) -> Select[Any]:
        """A table's changes behind the cursor, stamped after `since`, the look-back before Sampro's
        clock: rows committed late. (From the cursor, the window of a quiet Sampro after a mass
        update held the whole update, read again every tenth of the look-back for good.)"""
        column, po = self.tables[table].c.updated_at, self.tables[table].c.po_number
        at, last = cursor
        upto = column < at + MILLISECOND if last is None else or_(column < at, and_(column < at + MILLISECOND,
                                                                                   po <= last))
        return select(po, column).where(column > since, upto).distinct()

    def poll(self) -> list[PurchaseOrderChanged]:
        """The POs changed since the last commit, oldest change first: a page of each table at
        most, and the look-back window every tenth of it."""
        started = not self._loaded
        if started:
            self._cursors, self._emitted = self._load()
            self._loaded = True
        now = self.clock()
        whole_window = self._window_read_at is None or now - self._window_read_at >= self.window_every
        read: list[Any] = []  # (PO, time) of each change read
        cursors: dict[str, Cursor] = {}
        backlog = False
        with mapped_errors("sampro"), self.engine.connect() as conn:
            utc, local = database_clocks(conn)
            present = max(utc, local)
            stamped = {"later": present, "utc": utc, "local": local}[self.stamped_in]
            since = stamped - self.lookback
            for table in self.tables:
                cursor = self._cursors[table] if self._cursors else self._newest(conn, table, present)
                if cursor[0] > present:  # one an older version let run ahead of the clock comes back
                    cursor = (_millisecond(present), None)
                if whole_window:
                    read.extend(conn.execute(self.window_query(table, cursor, since)).all())
                if self._cursors:
                    page, cursor, more = self._page(conn, table, cursor, present)
                    read.extend(page)
                    backlog |= more
                cursors[table] = cursor
        if started:
            self._check_clock(max(at for at, _ in cursors.values()), stamped, utc, local)
        changes: dict[str, tuple[str, datetime]] = {}  # change id -> (PO, time)
        for padded, changed_at in read:
            po_number = padless(padded)
            if (problem := stream_key_problem(po_number, self.limits)) is not None:
                log.warning("Sampro changed a PO whose number cannot key a stream (%s): %r; passed over",
                            problem, po_number if not isinstance(po_number, str) else po_number[:80])
                continue
            moment = as_utc(changed_at)
            changes[change_id(po_number, moment)] = (po_number, moment)
        # The window's changes are remembered, so that the next poll skips them (and makes no event
        # of them: the window is most of what a busy Sampro polls); on the first poll they are
        # only remembered.
        unsent: dict[str, datetime] = {}  # PO -> its newest time not made into a change yet
        for event_id, (po, at) in changes.items():
            if event_id not in self._emitted and _to_the_millisecond(event_id) not in self._emitted and (
                    po not in unsent or at > unsent[po]):
                unsent[po] = at
        fresh = [] if self._cursors is None else [
            PurchaseOrderChanged(event_id=change_id(po, at), po_number=po, changed_at=at)
            for po, at in sorted(unsent.items(), key=lambda item: (item[1], item[0]))]
        # A read of the whole window remembers what is in it now, and so forgets what left it.
        # Ahead of a table's cursor (stamped later than the present, or read by the other table
        # first), a change is remembered until it is older than the window.
        horizon = (as_utc(since) - EPOCH) // MICROSECOND
        remembered = {event_id for event_id in self._emitted if _micros(event_id) > horizon} | set(changes) \
            if whole_window else self._emitted | set(changes)
        self._pending = (cursors, remembered, now if whole_window else self._window_read_at, backlog)
        return fresh

    def _page(self, conn: Connection, table: str, cursor: Cursor, present: datetime) -> tuple[list[Any], Cursor, bool]:
        """The changes of a table after the cursor, a page at most; the cursor after them; and
        whether more may follow at once."""
        read: list[Any] = []
        at, last = cursor
        while True:
            budget = self.page_size - len(read)
            if last is not None:
                group = conn.execute(self.group_query(table, (at, last), budget)).all()
                read.extend(group)
                if len(group) == budget:
                    if group[-1][0] == last:  # the database compares POs otherwise than it orders them
                        log.warning("Sampro's %s gave a page of changes that does not move past %s; the rest of "
                                    "that millisecond is left to the look-back window", table, (at, last))
                        return read, (at, None), True
                    return read, (at, group[-1][0]), True
                budget -= len(group)
            rows = conn.execute(self.after_query(table, (at, None), budget)).all()
            if not rows:
                return read, (at, None), False
            newest = as_utc(rows[-1][1])
            if len(rows) < budget or _millisecond(newest) > present:
                # Never past the present: a row stamped later is read again by each poll until then
                # (its change is remembered, so made once), and hides no change after it.
                return [*read, *rows], (_millisecond(min(newest, present)), None), False
            # A full page: its last millisecond may go on past it, and is read next by PO (its
            # rows here are read again then); every millisecond before it is read whole.
            at, last = _millisecond(newest), ""
            kept = [row for row in rows if as_utc(row[1]) < at]
            if kept:
                return [*read, *kept], (at, last), True
            # The page was all one millisecond (one mass update): read by PO now.

    def _check_clock(self, newest: datetime, stamped: datetime, utc: datetime, local: datetime) -> None:
        """A warning where the newest change read is near the other clock than `stamped`, the one
        `SAMPRO_CLOCK` names, and hours from it: set wrongly, the window holds none of the rows
        committed late. (A Sampro quiet for hours tells nothing.)"""
        other = local if stamped == utc else utc
        if abs(newest - other) <= self.lookback < abs(newest - stamped):
            named = "utc" if other == utc else "local"
            log.warning("Sampro's newest change read (%s) is near the database's %s clock, not the one "
                        "INVOICE_AUTOMATION_SAMPRO_CLOCK=%s names: rows committed late would never be read. "
                        "Set it to %s if Sampro stamps updated_at in %s time.", newest.isoformat(), named,
                        self.stamped_in, named, named.upper() if named == "utc" else "local")

    def _newest(self, conn: Connection, table: str, present: datetime) -> Cursor:
        """Where the first poll starts: the table's newest change, every PO of its millisecond read."""
        newest = conn.execute(self.newest_query(table)).scalar()
        return _millisecond(min(as_utc(newest), present) if newest is not None else present), None

    def commit(self) -> None:
        """Makes the last poll durable: the next poll, here or after a restart, starts after it."""
        if self._pending is None:
            return
        cursors, self._emitted, self._window_read_at, self._backlog = self._pending
        self._cursors, self._pending = cursors, None
        # `watermark` as an older version reads it, the earliest of the cursors: one that takes the
        # polling over (a rolling upgrade, a rollback) reads again what it cannot tell was read.
        watermark = min(at for at, _ in cursors.values()).isoformat()
        self.state.save({"watermark": watermark, "emitted": sorted(self._emitted),
                         "cursors": {table: [at.isoformat(), po] for table, (at, po) in cursors.items()}})

    def backlog(self) -> bool:
        return self._backlog

    def forget(self) -> None:
        self._pending = None
        if self.state.behind:  # the store lacks this worker's last commit: what it holds is older
            return
        self._loaded = False
        self._window_read_at = None  # the window is read whole, against what the store remembers of it


class InMemorySamproChanges(SamproChanges):
    """Changes handed in by a unit test, polled once each."""

    def __init__(self) -> None:
        self.waiting: list[PurchaseOrderChanged] = []
        self._polled = 0

    def poll(self) -> list[PurchaseOrderChanged]:
        self._polled = len(self.waiting)
        return list(self.waiting)

    def commit(self) -> None:
        del self.waiting[: self._polled]
        self._polled = 0

    def backlog(self) -> bool:
        return False

    def forget(self) -> None:
        self._polled = 0  # the waiting changes are its whole state
