"""/metrics: the pipeline's figures, read from processscheduler and from Kafka at most once per
API_STATUS_CACHE_SECONDS however often Prometheus (or anyone) scrapes.

The pipeline's figures are not counted in this process, so every replica of the API reports the
same numbers and a restart loses nothing; only the API's own refused sign-ins are
(`invoice_automation_api_sign_in_failures_total`, api/auth.py). When Kafka or the database cannot
be read, the figures from the other one are still reported, and `invoice_automation_scrape_ok{source}`
says which failed. Each is read on its own, so one that hangs does not hold the other's figures
back, and a read that has hung (api/status.HUNG_AFTER) is a source not read: its last figures are
left out rather than served as if nothing had changed.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from functools import partial

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from api.status import Cached
from connectors.api_ports import InvoiceReadModel, PipelineLag, RpaSentLog

log = logging.getLogger(__name__)
PREFIX = "invoice_automation"
QUANTILES = (0.5, 0.95, 1.0)


def _quantiles(name: str, help_text: str, values: list[float]) -> GaugeMetricFamily:
    """Nearest-rank quantiles: the median of [10, 20] is 10 (int(q * n) gave 20, and the 0.95 of
    any 20 values or fewer was their maximum)."""
    family = GaugeMetricFamily(name, help_text, labels=["quantile"])
    if values:
        ordered = sorted(values)
        for q in QUANTILES:
            family.add_metric([str(q)], ordered[max(math.ceil(q * len(ordered)), 1) - 1])
    return family


def _scrape_ok(read: dict[str, int]) -> GaugeMetricFamily:
    ok = GaugeMetricFamily(f"{PREFIX}_scrape_ok", "1 when the source's figures are from a read that answered; 0 "
                           "when it failed, or has not answered for HUNG_AFTER (5 s) or the cache time if longer "
                           "(a table locked, a connection that no longer answers): its figures are then left out",
                           labels=["source"])
    for source, answered in read.items():
        ok.add_metric([source], answered)
    return ok


Read = tuple[bool, list[Metric]]  # whether the source answered, and its figures
NOT_READ: Read = (False, [])


class PipelineCollector(Collector):
    def __init__(self, read_model: InvoiceReadModel, lag: PipelineLag, sent_log: RpaSentLog,
                 clock: Callable[[], datetime], cache_seconds: float, ticks: Callable[[], float] = time.monotonic):
        self.read_model, self.lag, self.sent_log, self.clock = read_model, lag, sent_log, clock
        # One look per source: read together, a database query that hung kept Kafka's lag at its
        # figure from before, however many messages came meanwhile. While the first read waits for
        # a source that does not answer, scrapes get "not read" at once: waiting, each held a thread
        # of the pool the API's routes run in.
        self._sources = {source: Cached(partial(self._read, source, figures), cache_seconds, ticks,
                                        before_first=NOT_READ)
                         for source, figures in (("processscheduler", self._from_scheduler),
                                                 ("kafka", self._from_kafka))}

    def describe(self):
        return []  # nothing is read when the collector is registered, only when scraped

    def collect(self) -> Iterator[Metric]:
        read = {}
        for source, cached in self._sources.items():
            answered, families = cached.get()
            # A read under way that has hung: the figures before it said nothing changed, with
            # scrape_ok 1, for as long as it hung (while /readyz said the database was down).
            read[source] = int(answered and not cached.hung())
            if read[source]:
                yield from families
        yield _scrape_ok(read)

    @staticmethod
    def _read(source: str, figures: Callable[[], Iterator[Metric]]) -> Read:
        try:
            return True, list(figures())
        except Exception:
            log.exception("metrics: %s cannot be read", source)
            return NOT_READ

    def _from_scheduler(self):
        now = self.clock()
        figures = self.read_model.status_figures(now)
        invoices = GaugeMetricFamily(f"{PREFIX}_invoices", "Invoice versions in processscheduler by status",
                                     labels=["status"])
        for status, count in figures.by_status.items():
            invoices.add_metric([status], count)
        verdicts = GaugeMetricFamily(f"{PREFIX}_verdicts_last_hour", "Verdicts given in the last hour by status",
                                     labels=["status"])
        for status, count in figures.verdicts_last_hour.items():
            verdicts.add_metric([status], count)
        oldest = figures.oldest_waiting_since
        waiting = GaugeMetricFamily(f"{PREFIX}_oldest_waiting_seconds",
                                    "Age of the invoice that has waited longest at the RPA bot or for its PO")
        waiting.add_metric([], (now - oldest).total_seconds() if oldest else 0)
        trips = self.read_model.rpa_round_trips(now - timedelta(hours=1))
        yield from (invoices, verdicts, waiting,
                    _quantiles(f"{PREFIX}_rpa_round_trip_seconds",
                               "sent_to_rpa to entered or rpa_failed, outcomes of the last hour", trips))
        mean = GaugeMetricFamily(f"{PREFIX}_rpa_round_trip_mean_seconds", "Mean RPA round trip of the last hour")
        mean.add_metric([], statistics.fmean(trips) if trips else 0)
        doubt = GaugeMetricFamily(f"{PREFIX}_rpa_emails_in_doubt",
                                  "RPA emails cut off between the sent log and the mail server's answer: "
                                  "look for them in the RPA mailbox (SqlSentLog.in_doubt)")
        doubt.add_metric([], len(self.sent_log.in_doubt()))
        yield from (mean, doubt)

    def _from_kafka(self):
        now = self.clock()
        partitions = self.lag.lag()
        lag = GaugeMetricFamily(f"{PREFIX}_consumer_lag_messages",
                                "Messages the pipeline's consumer groups have not processed yet; on a partition "
                                "its group has committed nothing on (a worker role never started, offsets expired, "
                                "a partition not reached yet), everything its log keeps: a worker starts there",
                                labels=["topic"])
        latency = GaugeMetricFamily(f"{PREFIX}_processing_latency_seconds",
                                    "Age of the oldest message the pipeline has not processed yet (0 when caught "
                                    "up); absent while a pending message's time cannot be read (a transaction "
                                    "still open, a read that timed out): the lag still counts it",
                                    labels=["topic"])
        # A gauge: a counter must never go down, and this one does when `reprocess` rewinds the group.
        committed = GaugeMetricFamily(f"{PREFIX}_committed_offsets", "The consumer group's committed offsets, "
                                      "summed over the topic's partitions it has committed on (back when the "
                                      "group is rewound)", labels=["topic"])
        for topic in sorted({p.topic for p in partitions}):
            mine = [p for p in partitions if p.topic == topic]
            lag.add_metric([topic], sum(p.pending for p in mine))
            pending = [p for p in mine if p.pending]
            # Left out, not 0 (caught up) nor the age of the partitions whose oldest is known (maybe
            # younger): the age of a message whose time cannot be read is not known, and a gauge says
            # so by having no sample (a NaN goes into a dashboard's max and sum as if it were a figure).
            # The lag still counts the message.
            if all(p.oldest_pending_at is not None for p in pending):
                latency.add_metric([topic], max(((now - p.oldest_pending_at).total_seconds()
                                                 for p in pending if p.oldest_pending_at), default=0.0))
            committed.add_metric([topic], sum(p.committed for p in mine if p.committed is not None))
        yield from (lag, latency, committed)


def registry_for(read_model: InvoiceReadModel, lag: PipelineLag, sent_log: RpaSentLog,
                 clock: Callable[[], datetime], cache_seconds: float) -> CollectorRegistry:
    registry = CollectorRegistry()
    for collector in (ProcessCollector, PlatformCollector, GCCollector):
        collector(registry=registry)
    registry.register(PipelineCollector(read_model, lag, sent_log, clock, cache_seconds))
    return registry
