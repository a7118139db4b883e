"""Live updates for every open dashboard from one poll of the read model per second.

The poll asks for rows changed since the last history event it saw, and recomputes the KPI
figures when something changed or every `kpi_every` seconds (waiting times and the per-minute
window move on by themselves), but not more often than every `kpi_at_most_every` seconds: on a
busy day something changes every second, so changed rows go out at once with the figures of the
last recompute, and fresh figures follow when that interval is up.

A recompute reads the status figures (counts by status, the last hour, the oldest wait: 77 ms on
PostgreSQL at 50,000 invoices in 60 days, bench/kpi_bench.py). AP's figures (the KPI period, the
open exceptions) and the findings by code read far more (0.5 s in all there): they are read again
only every `ap_every` seconds, and kept between, so a release shows in the status tiles at once
and in AP's open exceptions within that time.

Each subscriber gets the latest figures first, then every update, for as long as it may:
`still_allowed` is asked before each update and every `recheck_every` seconds, so a stream ends
soon after its session does. A browser that stops reading (a laptop lid shut on a held-open
connection) ends its stream once one send has waited `send_timeout` seconds: until then the
send holds, and no session check runs. A user has at most `streams_per_user` streams open, and
the API `streams_at_most` in all: each holds a connection, a queue and a session check every
`recheck_every` seconds, and one viewer's cookie opened hundreds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

from connectors.api_ports import InvoiceReadModel
from connectors.scheduler.read_model import IdRange

GAPS_AT_MOST = 100  # unread id ranges asked for again at once; the oldest goes first


def _aged(missing: list[IdRange], asked: dict[IdRange, float], now: float) -> dict[IdRange, float]:
    """Each range still unread, as old as the range asked that held it (a range read in part leaves
    the rest of it), or new; the newest GAPS_AT_MOST of them."""
    def since(gap: IdRange) -> float:
        return next((at for (first, final), at in asked.items() if first <= gap[0] <= final), now)
    return dict(sorted(((gap, since(gap)) for gap in missing), key=lambda item: item[1])[-GAPS_AT_MOST:])


def _encoded(update: dict[str, Any]) -> str:
    return json.dumps(update)


class LiveFeed:
    def __init__(self, read_model: InvoiceReadModel, clock: Callable[[], datetime], interval: float = 1.0,
                 kpi_every: float = 10.0, recheck_every: float = 5.0, kpi_at_most_every: float = 5.0,
                 ap_every: float = 60.0, send_timeout: float = 30.0, streams_per_user: int = 8,
                 streams_at_most: int = 500, gap_wait: float = 60.0):
        self.read_model, self.clock, self.interval, self.kpi_every = read_model, clock, interval, kpi_every
        self.kpi_at_most_every, self.ap_every = kpi_at_most_every, ap_every
        self.recheck_every, self.send_timeout = recheck_every, send_timeout
        self.streams_per_user, self.streams_at_most = streams_per_user, streams_at_most
        # History ids below the last read that were not there (another worker's transaction, which
        # took them, still open), and since when: asked for again for `gap_wait` seconds. Read past
        # them, the rows they changed never reached an open dashboard.
        self.gap_wait, self._gaps = gap_wait, dict[IdRange, float]()
        self.subscribers: set[asyncio.Queue[str]] = set()
        self.streams_of: Counter[str] = Counter()  # open streams per user
        self.latest: dict[str, Any] | None = None
        self._last_event: int | None = None
        self._kpi_at, self._ap_at, self._behind = 0.0, 0.0, False
        self._task: asyncio.Task | None = None

    def poll(self) -> dict[str, Any] | None:
        """One round (blocking I/O); the update to send, or None when nothing is new."""
        now = time.monotonic()
        asked = {gap: since for gap, since in self._gaps.items() if now - since < self.gap_wait}
        changes = self.read_model.changes(self._last_event, list(asked))
        gaps = _aged(changes.missing, asked, now)
        first = self._last_event is None
        since = time.monotonic() - self._kpi_at
        recompute = self.latest is None or since >= self.kpi_at_most_every
        # Behind: rows went out with older figures, which are brought up to date as soon as allowed.
        if not (first or changes.rows or since >= self.kpi_every or (self._behind and recompute)):
            self._last_event, self._gaps = changes.last_event, gaps
            return None
        if recompute:
            # Taken first: a database that fails is asked again at the recompute interval, not every
            # round (once there are figures to send meanwhile). Its rows are not lost: `_last_event`
            # and the gaps move only once an update is made.
            self._kpi_at = time.monotonic()
            figures = self._figures()
            self._behind = False
        else:
            figures, self._behind = self.latest["kpi"], True
        self._last_event, self._gaps = changes.last_event, gaps
        self.latest = {"kpi": figures, "changed": [row.model_dump(mode="json") for row in changes.rows]}
        return self.latest

    def _figures(self) -> dict[str, Any]:
        """All of the KPI when AP's figures are due, else fresh status figures over the last ones."""
        now, at = self.clock(), time.monotonic()
        if self.latest is None or at - self._ap_at >= self.ap_every:
            figures = self.read_model.kpi(now).model_dump(mode="json")
            self._ap_at = at  # only once read: a failed read is tried again on the next recompute
            return figures
        return {**self.latest["kpi"], **self.read_model.status_figures(now).model_dump(mode="json")}

    async def _run(self) -> None:
        while self.subscribers:
            try:
                update = await asyncio.to_thread(self.poll)
            except Exception as exc:  # the database is away: say so, and keep trying
                update = {"error": f"processscheduler cannot be read: {type(exc).__name__}"}
            if update is not None:
                self.deliver(update)
            await asyncio.sleep(self.interval)

    def deliver(self, update: dict[str, Any]) -> None:
        """A browser that stops reading gets the newest figures, not a backlog: its queue drops the
        oldest update, and the rows that one carried never reach the page, so the update it gets
        instead says `resync`, and the page reads its list and open invoice again.
        An update is encoded once, here, for every stream (and its resync once): encoded per stream
        on the event loop, 500 open dashboards took 0.5 s of it per poll of a busy minute's update
        (131 KB), and every request to the API waited."""
        encoded = _encoded(update)
        resync: str | None = None
        for queue in list(self.subscribers):
            dropped = queue.full()
            if dropped:
                queue.get_nowait()
                resync = resync or _encoded({**update, "resync": True})
            queue.put_nowait(resync if dropped else encoded)

    def refused(self, user: str) -> str | None:
        """Why `user` may not open another stream now, or None."""
        if self.streams_of[user] >= self.streams_per_user:
            return (f"{user} has {self.streams_of[user]} live streams open already, the most a user may: "
                    "close a dashboard tab")
        if sum(self.streams_of.values()) >= self.streams_at_most:
            return f"the API serves {self.streams_at_most} live streams already, the most it may: try again later"
        return None

    async def subscribe(self, still_allowed: Callable[[], Awaitable[bool]] | None = None, user: str = "",
                        ) -> AsyncIterator[str]:
        """Each update as JSON text, to send as it is. Nothing for a stream over the bounds: the
        route refuses those, but a burst of requests all passed its look before any of them started
        streaming."""
        if self.refused(user) is not None:
            return
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=20)
        if self.latest is not None:
            queue.put_nowait(_encoded({**self.latest, "changed": []}))
        self.subscribers.add(queue)
        self.streams_of[user] += 1
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        try:
            while still_allowed is None or await still_allowed():
                try:
                    update = await asyncio.wait_for(queue.get(), self.recheck_every)
                except TimeoutError:
                    continue
                yield update
        finally:
            self.subscribers.discard(queue)
            self.streams_of[user] -= 1
            if not self.streams_of[user]:
                del self.streams_of[user]

    async def close(self) -> None:
        self.subscribers.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
