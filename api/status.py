"""/readyz and /metrics from cheap state: what Kafka and the database answered at the last look,
at most `ttl` seconds ago, and looked at by one request at a time however many ask, so a flood of
probes or scrapes costs one look per `ttl` (no Kafka client, no KPI query per request). While one
request looks again, the others get the last answer: waiting, each held a thread of the pool the
API's other routes run in, and a slow database stalled them all behind a flood of probes. A look
that has gone on for HUNG_AFTER seconds has hung: its last answer no longer tells how things are."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


# A look (a ping, a read of the figures) that has not answered for this long (or the cache time, if
# longer) has hung: a ping is down, and figures read before it are not served as the state of things.
HUNG_AFTER = 5.0


def hung_after(ttl: float) -> float:
    return max(ttl, HUNG_AFTER)


class Cached(Generic[T]):
    """`before_first`: the answer while the first look is under way, for the requests that come
    meanwhile; without one they wait for it, as there is nothing to answer before it."""

    def __init__(self, compute: Callable[[], T], ttl: float, clock: Callable[[], float] = time.monotonic,
                 before_first: T | None = None):
        self.compute, self.ttl, self.clock = compute, ttl, clock
        self._lock = threading.Lock()
        self._value: T | None = before_first
        self._at: float | None = None
        self._wait_first = before_first is None
        self._looking_since: float | None = None  # the look under way, since when (clock)

    def get(self) -> T:
        if self._stale() and self._acquired():
            try:
                if self._stale():
                    self._looking_since = self.clock()
                    try:
                        self._value, self._at = self.compute(), self.clock()
                    finally:
                        self._looking_since = None
            finally:
                self._lock.release()
        return self._value  # type: ignore[return-value]

    def hung(self) -> bool:
        """The look under way has gone on for `hung_after(ttl)`: the last answer, given meanwhile,
        said the same for as long as a locked table or a connection that no longer answers held it."""
        since = self._looking_since
        return since is not None and self.clock() - since >= hung_after(self.ttl)

    def _acquired(self) -> bool:
        if self._at is None and self._wait_first:
            return self._lock.acquire()
        if self.ttl == 0:
            # Each request looks again, after the look under way; behind one that hangs, a request
            # waited for as long, and what it would have read next (Kafka after the database) with it.
            return self._lock.acquire(timeout=hung_after(self.ttl))
        return self._lock.acquire(blocking=False)

    def _stale(self) -> bool:
        return self._at is None or self.clock() - self._at >= self.ttl


class ReadinessProbe:
    """Each dependency's state: None while it answers, else since when it has not. Why it failed
    goes to the log only: its text names hosts, ports and drivers. A ping that has not answered
    for HUNG_AFTER seconds is down since it started: the last answer, given meanwhile, said ready
    for as long as a hung database kept the look waiting."""

    def __init__(self, pings: dict[str, Callable[[], None]], clock: Callable[[], datetime], ttl: float,
                 ticks: Callable[[], float] = time.monotonic):
        self.pings, self.clock, self.ttl, self.ticks = pings, clock, ttl, ticks
        self.down_since: dict[str, datetime] = {}
        # Not ready while the first look is under way: a database that did not answer at the API's
        # start held every probe's thread, until the pool the API's routes run in was used up.
        self._cached = Cached(self._look, ttl, ticks, before_first=dict.fromkeys(pings, clock()))
        self._pinging: tuple[str, datetime, float] | None = None  # the ping under way, since when (and tick)

    def _look(self) -> dict[str, datetime | None]:
        for name, ping in self.pings.items():
            started = self.clock()
            self._pinging = (name, started, self.ticks())
            try:
                ping()
            except Exception as exc:
                if name not in self.down_since:
                    log.warning("readiness: %s cannot be reached: %s: %s", name, type(exc).__name__, exc)
                    self.down_since[name] = started
                continue
            finally:
                self._pinging = None
            if self.down_since.pop(name, None) is not None:
                log.info("readiness: %s answers again", name)
        return {name: self.down_since.get(name) for name in self.pings}

    def states(self) -> dict[str, datetime | None]:
        states = self._cached.get()
        pinging = self._pinging
        if pinging is not None and self.ticks() - pinging[2] >= hung_after(self.ttl):
            name, since, _ = pinging
            states = {**states, name: states.get(name) or since}
        return states
