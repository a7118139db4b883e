"""Sampro changes by SQL polling: the embedded default, and the way where CDC is not allowed.

Each poll asks the PO header and line tables for the times at which each PO's rows changed
(`updated_at`) since the watermark, and makes one `PurchaseOrderChanged` per PO: at the newest of
its times not yet made into a change. A row committed late, with a time before a change of its
PO already sent, is so a change of its own and never hidden behind that one. Every tenth of the
look-back window, a poll reads the whole window behind the watermark instead, for rows committed
late with an earlier time. (Read on every poll, the window cost the worker's loop 160 ms every
2 s once 20,000 POs had changed in it, as when the bot enters invoices at month end.)

A change's event id is the PO and the change's time, so a change read again (in the window, or
after a crash before `commit`) is the same event, and the PO agent applies it once. The watermark
and the events of the window are a small JSON state in processscheduler, which every worker shares
(`connectors.watermarks`), written by `commit` once the events are safely produced. On its very
first poll the source starts at Sampro's newest change: what changed before the pipeline ran
cannot clear anything.

Sampro's rows are input from outside: a row whose PO number no stream could be keyed by is
logged and passed over, and the watermark never moves past the present by Sampro's own clock
(which may be local time), so that one row stamped in the future (a typo, a clock that was
wrong) cannot hide every later change.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Select, func, select

from connectors.marketplace_table import stream_key_problem
from connectors.ports import SamproChanges
from connectors.sampro.reader import padless
from connectors.sampro.tables import SamproNames, sampro_tables
from connectors.sql import as_utc, database_now, mapped_errors
from connectors.watermarks import SavedState, WatermarkStore
from rules.lifecycle import PurchaseOrderChanged
from rules.limits import Limits

log = logging.getLogger(__name__)


def change_id(po_number: str, changed_at: datetime) -> str:
    return f"sampro:{po_number}:{int(as_utc(changed_at).timestamp() * 1000)}"


class PollingSamproChanges(SamproChanges):
    def __init__(self, engine: Engine, state: WatermarkStore, names: SamproNames = SamproNames(),
                 lookback_seconds: float = 300, clock: Callable[[], float] = time.monotonic,
                 limits: Limits = Limits()):
        self.engine, self.state, self.limits = engine, SavedState(state), limits
        self.tables = sampro_tables(names)
        self.lookback = timedelta(seconds=lookback_seconds)
        self.window_every, self.clock = lookback_seconds / 10, clock
        self._loaded = False  # the state is read at the first poll, when processscheduler may answer
        self._watermark: datetime | None = None
        self._emitted: set[str] = set()
        self._window_read_at: float | None = None  # never yet: the first poll reads the window
        self._pending: tuple[datetime | None, set[str], float | None] | None = None

    def _load(self) -> tuple[datetime | None, set[str]]:
        state = self.state.read()
        try:
            mark = as_utc(datetime.fromisoformat(state["watermark"])) if state.get("watermark") else None
        except (TypeError, ValueError):  # not a time: start afresh, as from a state that cannot be read
            mark = None
        return mark, set(state.get("emitted", []))

    def newest_change_queries(self) -> list[Select[Any]]:
        """Where the first poll starts: the newest change of each table."""
        return [select(func.max(table.c.updated_at)) for table in (self.tables.po_header, self.tables.po_line)]

    def change_queries(self, since: datetime) -> list[Select[Any]]:
        """The statements a poll runs: per table, each PO and time of a change after `since` (the
        lines of a PO written in one transaction share their time, and are one row here)."""
        return [select(table.c.po_number, table.c.updated_at).where(table.c.updated_at > since).distinct()
                for table in (self.tables.po_header, self.tables.po_line)]

    def poll(self) -> list[PurchaseOrderChanged]:
        """The POs changed since the last commit, oldest change first."""
        if not self._loaded:
            self._watermark, self._emitted = self._load()
            self._loaded = True
        now = self.clock()
        whole_window = self._window_read_at is None or now - self._window_read_at >= self.window_every
        with mapped_errors("sampro"), self.engine.connect() as conn:
            present = database_now(conn)
            # One an older version let run ahead of the clock comes back to the present.
            watermark = min(self._watermark, present) if self._watermark else None
            if watermark is None:
                newest = [conn.execute(query).scalar() for query in self.newest_change_queries()]
                known = [as_utc(moment) for moment in newest if moment is not None]
                watermark = min(max(known), present) if known else present
            changes: dict[str, tuple[str, datetime]] = {}  # change id -> (PO, time)
            passed_over: list[datetime] = []
            for query in self.change_queries(watermark - self.lookback if whole_window else watermark):
                for padded, changed_at in conn.execute(query).all():
                    po_number = padless(padded)
                    if (problem := stream_key_problem(po_number, self.limits)) is not None:
                        log.warning("Sampro changed a PO whose number cannot key a stream (%s): %r; passed over",
                                    problem, po_number if not isinstance(po_number, str) else po_number[:80])
                        passed_over.append(as_utc(changed_at))
                        continue
                    moment = as_utc(changed_at)
                    changes[change_id(po_number, moment)] = (po_number, moment)
        # The window's changes are remembered, so that the next poll skips them (and makes no event
        # of them: the window is most of what a busy Sampro polls); on the first poll they are
        # only remembered.
        unsent: dict[str, datetime] = {}  # PO -> its newest time not made into a change yet
        for event_id, (po, at) in changes.items():
            if event_id not in self._emitted and (po not in unsent or at > unsent[po]):
                unsent[po] = at
        fresh = [] if self._watermark is None else [
            PurchaseOrderChanged(event_id=change_id(po, at), po_number=po, changed_at=at)
            for po, at in sorted(unsent.items(), key=lambda item: (item[1], item[0]))]
        # A read of the whole window remembers what is in it now, and so forgets what left it.
        remembered = set(changes) if whole_window else self._emitted | set(changes)
        # Never past the present: a row stamped later is read again by each poll until then (its
        # change is remembered, so made once), and a watermark left in the future comes back.
        latest = min(max([watermark, *passed_over, *(at for _, at in changes.values())]), present)
        self._pending = (latest, remembered, now if whole_window else self._window_read_at)
        return fresh

    def commit(self) -> None:
        """Makes the last poll durable: the next poll, here or after a restart, starts after it."""
        if self._pending is None:
            return
        self._watermark, self._emitted, self._window_read_at = self._pending
        self._pending = None
        mark = self._watermark.isoformat() if self._watermark else None
        self.state.save({"watermark": mark, "emitted": sorted(self._emitted)})

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

    def forget(self) -> None:
        self._polled = 0  # the waiting changes are its whole state
