"""Which of the worker's dependencies is down, since when and why; and the worker's own metrics.

The runtime reports every outage it waits out and every recovery; `/readyz` and `/metrics` of
the worker's small HTTP server read them here, so an operator sees "sampro down since 10:42:07
(connection refused)" rather than a quiet worker.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from connectors.kafka_clients import MAX_POLL_INTERVAL
from rules.errors import Misconfigured
from rules.models import Verdict
from streams.settings import PREFIX

log = logging.getLogger(__name__)
DEPENDENCIES = ("kafka", "sampro", "processscheduler", "smtp", "marketplace")


@dataclass(frozen=True)
class Outage:
    since: datetime
    detail: str


class WorkerHealth:
    def __init__(self, registry: CollectorRegistry | None = None, stalled_after: float = MAX_POLL_INTERVAL,
                 clock: Callable[[], float] = time.monotonic):
        self.registry = registry or CollectorRegistry()
        # A step longer than Kafka's max.poll.interval: its consumer has left the group.
        self.stalled_after, self._clock = stalled_after, clock
        self._in_step: dict[str, float] = {}  # per runtime: when the step its loop is in began
        self._outages: dict[str, Outage] = {}
        # Who waits for each dependency that is down (a flow, a source, the restore, the commit, the
        # Kafka client): it is back when the last of them is. Cleared by whichever answered first,
        # /readyz said ready while another flow's partition was still held for it, and flapped.
        self._waiting: dict[str, set[str]] = {}
        self._lock = threading.Lock()
        self._started: dict[str, bool] = {}  # per runtime: joined its group and restored its state
        self._lag: dict[str, dict[tuple[str, int], int]] = {}  # per consumer group
        self._lag_shown: set[tuple[str, int]] = set()
        self.up = Gauge("invoice_automation_worker_dependency_up", "1 when the dependency answers, 0 while the "
                        "worker waits for it", ["dependency"], registry=self.registry)
        self.down_since = Gauge("invoice_automation_worker_dependency_down_since_seconds", "Unix time the "
                                "dependency went down (0 while it is up)", ["dependency"], registry=self.registry)
        for name in DEPENDENCIES:
            self.up.labels(name).set(1)
            self.down_since.labels(name).set(0)
        # The counts of what a batch did are counted once it is committed: a batch read again (held
        # for a dependency, a lost transaction) or decided again record by record does it all again.
        self.records = Counter("invoice_automation_worker_records_total", "Records processed, by flow: counted "
                               "once, when committed", ["flow"], registry=self.registry)
        self.dead_letters = Counter("invoice_automation_worker_dead_letters_total",
                                    "Records sent to the dead-letter topic, by flow and stage", ["flow", "stage"],
                                    registry=self.registry)
        self.put_off = Counter("invoice_automation_worker_put_off_total",
                               "Messages a dependency that answers put off for later (a mail server's 4xx to one "
                               "email), by dependency: their partition waits, the others go on; a rate that "
                               "does not fall is a server that puts every message off", ["dependency"],
                               registry=self.registry)
        self.forwarded = Counter("invoice_automation_worker_forwarded_total",
                                 "Records forwarded to their key's partition from another, by flow and topic: "
                                 "counted once, when committed", ["flow", "topic"], registry=self.registry)
        self.verdicts = Counter("invoice_automation_worker_verdicts_total", "Verdicts given, by status: counted "
                                "once, when committed", ["status"], registry=self.registry)
        self.batch_seconds = Histogram("invoice_automation_worker_batch_seconds",
                                       "Time from reading a batch to committing it",
                                       buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
                                       registry=self.registry)
        self.stage_seconds = Counter("invoice_automation_worker_stage_seconds_total",
                                     "Time spent in each stage of the work, by flow and stage (where a batch's "
                                     "time goes; the pipeline benchmark prints it per invoice)", ["flow", "stage"],
                                     registry=self.registry)
        self.lag = Gauge("invoice_automation_worker_consumer_lag", "Messages not yet read, by topic and partition "
                         "(as of librdkafka's last statistics)", ["topic", "partition"], registry=self.registry)

    def count_emitted(self, messages: Iterable[Any]) -> None:
        """The messages a committed batch emitted: its verdicts, by status."""
        for message in messages:
            if isinstance(message, Verdict):
                self.verdicts.labels(message.status.value).inc()

    @contextmanager
    def timed(self, flow: str, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.stage_seconds.labels(flow, stage).inc(time.perf_counter() - started)

    @contextmanager
    def in_step(self, runtime: str) -> Iterator[None]:
        """The runtime's loop is in a step: readiness says so once it has been longer than
        `stalled_after`. A step stuck in a call that never returned (a write waiting on a lock)
        read and committed nothing, and the group let its partitions go, while readiness said ready."""
        self._in_step[runtime] = self._clock()
        try:
            yield
        finally:
            self._in_step.pop(runtime, None)

    def uses(self, dependencies: tuple[str, ...]) -> None:
        """The worker's role uses only these: the others leave the gauges (a `--role mail` worker
        reported Sampro and the marketplace up, which it never asks)."""
        for name in DEPENDENCIES:
            if name not in dependencies:
                for gauge in (self.up, self.down_since):
                    try:
                        gauge.remove(name)
                    except KeyError:  # removed before
                        pass

    def set_started(self, runtime: str, started: bool) -> None:
        self._started[runtime] = started

    @property
    def started(self) -> bool:
        """Every runtime of the worker has joined its group and restored its state."""
        return bool(self._started) and all(self._started.values())

    def record_lag(self, lag: dict[tuple[str, int], int], group: str = "") -> None:
        """The lag of the partitions this worker holds now in the group; partitions it gave up leave
        the gauge."""
        with self._lock:
            self._lag[group] = lag
            every = {key: messages for held in self._lag.values() for key, messages in held.items()}
            # Set, then the partitions given up removed: cleared first, a scrape in between saw none.
            for (topic, partition), messages in every.items():
                self.lag.labels(topic, str(partition)).set(messages)
            for topic, partition in self._lag_shown - every.keys():
                self.lag.remove(topic, str(partition))
            self._lag_shown = set(every)

    def down(self, dependency: str, detail: str, waiting: str = "") -> None:
        """`waiting` (a flow, a source, ...) waits for `dependency`, which did not answer."""
        with self._lock:
            self._waiting.setdefault(dependency, set()).add(waiting)
            if dependency in self._outages:
                return
            self._outages[dependency] = Outage(datetime.now(UTC), detail)
        log.error("%s is down (%s); the worker pauses what needs it and tries again", dependency, detail)
        self.up.labels(dependency).set(0)
        self.down_since.labels(dependency).set(self._outages[dependency].since.timestamp())

    def back(self, dependency: str, waiting: str = "") -> None:
        """`waiting` waits for `dependency` no longer; it is back when nothing else does."""
        with self._lock:
            holders = self._waiting.get(dependency, set())
            holders.discard(waiting)
            if holders:
                return
            self._waiting.pop(dependency, None)
            outage = self._outages.pop(dependency, None)
        if outage is not None:
            seconds = (datetime.now(UTC) - outage.since).total_seconds()
            log.warning("%s is back after %.1f s; the paused work goes on", dependency, seconds)
            self.up.labels(dependency).set(1)
            self.down_since.labels(dependency).set(0)

    def waits(self, dependency: str, waiting: str) -> bool:
        with self._lock:
            return waiting in self._waiting.get(dependency, ())

    def outages(self) -> dict[str, Outage]:
        with self._lock:
            return dict(self._outages)

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        outages = self.outages()
        now = self._clock()
        for runtime, began in list(self._in_step.items()):
            if (seconds := now - began) > self.stalled_after:
                outages["loop"] = Outage(datetime.now(UTC) - timedelta(seconds=seconds), (
                    f"{runtime}: in one step for {seconds:.0f} s, longer than Kafka's max.poll.interval "
                    f"({self.stalled_after:g} s): nothing is read or committed, and its consumer has left the "
                    "group; `kill -USR1 <worker pid>` logs where it waits"))
        body = {"ready": self.started and not outages, "started": self.started,
                "down": {name: {"since": outage.since.isoformat(), "detail": outage.detail}
                         for name, outage in sorted(outages.items())}}
        return bool(body["ready"]), body


def lag_from_statistics(text: str) -> dict[tuple[str, int], int]:
    """Per assigned partition, the last stable (or high) offset minus the next offset the worker
    reads. librdkafka's own `consumer_lag` counts from the committed offset, which the worker's
    transactions commit through the producer, unseen by the consumer's statistics."""
    lag = {}
    for topic, stats in json.loads(text).get("topics", {}).items():
        for number, partition in stats.get("partitions", {}).items():
            if int(number) < 0 or not partition.get("desired"):
                continue  # the internal "-1" partition, and partitions no longer assigned
            end = next((partition[key] for key in ("ls_offset", "hi_offset") if partition.get(key, -1) >= 0), None)
            position = next((partition[key] for key in ("app_offset", "committed_offset")
                             if partition.get(key, -1) >= 0), None)
            if end is not None and position is not None:
                lag[(topic, int(number))] = max(end - position, 0)
    return lag


def serve(health: WorkerHealth, host: str, port: int) -> ThreadingHTTPServer:
    """`/readyz` (200 or 503 with what is down) and `/metrics` (Prometheus), on a thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the http.server name)
            if self.path == "/metrics":
                self._send(200, generate_latest(health.registry), CONTENT_TYPE_LATEST)
            elif self.path in ("/readyz", "/healthz"):
                ready, body = health.readiness()
                status = 200 if ready or self.path == "/healthz" else 503
                self._send(status, json.dumps(body).encode(), "application/json")
            else:
                self._send(404, b'{"detail": "not found"}', "application/json")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:  # scrapes are not news
            pass

    try:
        server = ThreadingHTTPServer((host, port), Handler)
    except OSError as error:  # a host that does not resolve, a port taken
        raise Misconfigured(f"the worker cannot serve /readyz and /metrics on {PREFIX}WORKER_HTTP_HOST={host!r}, "
                            f"{PREFIX}WORKER_HTTP_PORT={port}: {error.strerror or error}") from None
    threading.Thread(target=server.serve_forever, name="worker-http", daemon=True).start()
    return server
