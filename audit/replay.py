"""`replay`: judge the verdicts recorded on the topic again, and say what would change.

Each verdict carries the invoice, the PO snapshot and the context it was judged with, so the
result depends only on the rules (and tolerances) given, never on today's Sampro. The topic is
cut into slices of offsets, and each process reads and judges its own slices: judging is what
costs, and no record has to cross from one process to another.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import cache, partial

from pydantic import BaseModel

from connectors.api_ports import OffsetRanges, TopicReader, TopicRecord
from rules.errors import Unavailable
from rules.limits import Limits
from rules.models import Verdict
from rules.policy import Policy
from rules.rejudge import compare, judge_again
from rules.table import rules_version
from schemas.codec import Codec, DecodeError, codec_for, from_record

# Offsets per piece of work: enough that starting a reader is noise, few enough to keep both
# cores busy to the end and the progress bar moving.
SLICE = 20_000


@dataclass(frozen=True)
class Selection:
    """Which recorded verdicts to judge again: a time range and/or invoices and POs."""

    since_ms: int | None = None
    until_ms: int | None = None
    invoice_ids: frozenset[str] = frozenset()
    po_numbers: frozenset[str] = frozenset()

    def admits_record(self, record: TopicRecord) -> bool:
        """Cheap checks on the raw record, before anything is decoded."""
        if self.since_ms is not None and record.timestamp_ms < self.since_ms:
            return False
        if self.until_ms is not None and record.timestamp_ms >= self.until_ms:
            return False
        if self.po_numbers and (record.key or b"").decode(errors="replace") not in self.po_numbers:
            return False
        value = record.value or b""
        return not self.invoice_ids or any(i.encode() in value for i in self.invoice_ids)

    def admits(self, verdict: Verdict) -> bool:
        return not self.invoice_ids or verdict.invoice_id in self.invoice_ids


@dataclass(frozen=True)
class ReplayedVerdict:
    invoice_id: str | None
    invoice_version: int | None
    po_number: str | None
    recorded_at: str
    partition: int
    offset: int
    recorded_rules_version: str
    recorded_status: str
    rederived_status: str | None  # None: recorded before verdicts carried their audit
    recorded_reasons: tuple[str, ...]
    rederived_reasons: tuple[str, ...]
    changed: bool
    added_reasons: tuple[str, ...]
    removed_reasons: tuple[str, ...]

    @property
    def of_note(self) -> bool:
        """What the summary counts: it would change, or it cannot be judged again."""
        return self.changed or self.rederived_status is None


# What a slice yields: its verdicts judged again (those kept), the records it could not decode, the
# verdicts the rules failed on, the records read, the verdicts judged.
JudgedSlice = tuple[list[ReplayedVerdict], list[str], list[str], int, int]


@dataclass
class ReplayReport:
    topic: str
    rules_version: str
    selection: Selection
    items: list[ReplayedVerdict] = field(default_factory=list)  # every verdict judged, or only those of note
    records_read: int = 0
    undecodable: list[str] = field(default_factory=list)
    judged: int = 0  # verdicts judged again, kept in `items` or not
    not_judged: list[str] = field(default_factory=list)  # verdicts the rules failed on: a bug, not bad data

    @property
    def changed(self) -> list[ReplayedVerdict]:
        return [item for item in self.items if item.changed]

    @property
    def not_rederivable(self) -> list[ReplayedVerdict]:
        return [item for item in self.items if item.rederived_status is None]

    def transitions(self) -> Counter[tuple[str, str]]:
        return Counter((i.recorded_status, i.rederived_status) for i in self.changed)

    def reason_changes(self) -> Counter[tuple[str, str]]:
        counts: Counter[tuple[str, str]] = Counter()
        for item in self.changed:
            counts.update((code, "added") for code in item.added_reasons)
            counts.update((code, "removed") for code in item.removed_reasons)
        return counts

    def summary(self) -> dict:
        """The report's head: everything but the verdicts one by one."""
        return {
            "topic": self.topic, "rules_version": self.rules_version,
            "selection": {"since_ms": self.selection.since_ms, "until_ms": self.selection.until_ms,
                          "invoice_ids": sorted(self.selection.invoice_ids),
                          "po_numbers": sorted(self.selection.po_numbers)},
            "records_read": self.records_read, "verdicts": self.judged, "changed": len(self.changed),
            "not_rederivable": len(self.not_rederivable), "undecodable": self.undecodable,
            "not_judged": self.not_judged,
            "transitions": [{"from": a, "to": b, "count": n} for (a, b), n in self.transitions().most_common()],
            "reason_changes": [{"code": c, "change": k, "count": n}
                               for (c, k), n in self.reason_changes().most_common()],
        }


def replay(
    reader: TopicReader, topic: str, selection: Selection, policy: Policy, *, limits: Limits = Limits(),
    schema_registry_url: str | None = None, workers: int | None = None, keep_unchanged: bool = True,
    spool: Callable[[list[ReplayedVerdict]], None] | None = None,
    on_total: Callable[[int], None] = lambda total: None, on_progress: Callable[[int], None] = lambda n: None,
) -> ReplayReport:
    """`keep_unchanged=False` keeps in `items` only the verdicts that would change or have no audit
    record: what the summary shows, in memory that does not grow with the topic. `spool` is handed
    every verdict judged again, in topic order, and `items` keeps only those of note: a full report
    written as the verdicts come (ten million kept for one took 5 GiB)."""
    ranges = reader.ranges(topic, selection.since_ms, selection.until_ms)
    on_total(sum(end - start for start, end in ranges.values()))
    report = ReplayReport(topic=topic, rules_version=rules_version(policy), selection=selection)
    judge = partial(_judge_slice, reader, topic, policy=policy, limits=limits, selection=selection,
                    schema_registry_url=schema_registry_url, keep_unchanged=keep_unchanged or spool is not None)
    slices = list(_slices(ranges, SLICE))
    # No more processes than slices: a topic of one slice is judged here, without starting any.
    workers = min(workers or os.cpu_count() or 1, len(slices))
    if workers <= 1:
        _collect(map(judge, slices), report, spool, on_progress)
    else:
        with _pool(workers) as pool:
            _collect(_bounded_map(pool, judge, slices, in_flight=2 * workers), report, spool, on_progress)
    return report


def _pool(workers: int) -> ProcessPoolExecutor:
    """Workers forked from a fork server that has imported this module and nothing else. Forked
    from the caller, they would inherit the locks its threads held at that moment: librdkafka is
    not fork-safe, and a child forked while a Kafka client lived in the caller crashed a replay."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return ProcessPoolExecutor(workers, mp_context=context)


def _slices(ranges: OffsetRanges, size: int) -> Iterator[tuple[int, int, int]]:
    """(partition, start, end) pieces of at most `size` offsets, partition by partition."""
    for partition, (start, end) in sorted(ranges.items()):
        for first in range(start, end, size):
            yield partition, first, min(first + size, end)


def _bounded_map(pool: ProcessPoolExecutor, fn, items: Iterable, in_flight: int) -> Iterator:
    """`pool.map` that hands out only `in_flight` slices at a time: memory stays flat on a long topic."""
    pending: deque = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= in_flight:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _collect(results: Iterable[JudgedSlice], report: ReplayReport,
             spool: Callable[[list[ReplayedVerdict]], None] | None, on_progress: Callable[[int], None]) -> None:
    for items, undecodable, not_judged, read, judged in results:
        if spool is None:
            report.items.extend(items)
        else:
            spool(items)
            report.items.extend(item for item in items if item.of_note)
        report.undecodable.extend(undecodable)
        report.not_judged.extend(not_judged)
        report.records_read += read
        report.judged += judged
        on_progress(read)


@cache
def _codec(schema_registry_url: str | None):
    """One codec per process (its schemas parsed, its registry client connected once)."""
    return codec_for(schema_registry_url)


def _judge_slice(reader: TopicReader, topic: str, piece: tuple[int, int, int], policy: Policy, limits: Limits,
                 selection: Selection, schema_registry_url: str | None, keep_unchanged: bool) -> JudgedSlice:
    """Reads one slice and judges its verdicts again. Status changes share the topic: they are
    left out by their schema fingerprint, undecoded."""
    codec = _codec(schema_registry_url)
    partition, start, end = piece
    items, undecodable, not_judged, read, judged = [], [], [], 0, 0
    for record in reader.read(topic, {partition: (start, end)}):
        read += 1
        value = record.value or b""
        if not selection.admits_record(record) or codec.kind(value) not in (Verdict, None):
            continue
        where = f"{topic}[{partition}]@{record.offset}"
        try:
            message = recorded_message(codec, value)
            if not isinstance(message, Verdict) or not selection.admits(message):
                continue
            comparison = compare(message, judge_again(message, policy, limits))
        except DecodeError as error:
            undecodable.append(f"{where}: {error}")
            continue
        except Unavailable:  # the schema registry: an outage, waited for by the operator, not a bad record
            raise
        except Exception as error:  # one verdict is counted, never the end of an auditor's long run
            not_judged.append(f"{where}: {type(error).__name__}: {str(error)[:300]}")
            continue
        judged += 1
        item = ReplayedVerdict(
            invoice_id=message.invoice_id, invoice_version=message.invoice_version, po_number=message.po_number,
            recorded_at=record.recorded_at.isoformat(),
            partition=partition, offset=record.offset, recorded_rules_version=message.rules_version,
            recorded_status=comparison.recorded_status, rederived_status=comparison.rederived_status,
            recorded_reasons=comparison.recorded_codes, rederived_reasons=comparison.rederived_codes,
            changed=comparison.changed, added_reasons=comparison.added_codes, removed_reasons=comparison.removed_codes,
        )
        if keep_unchanged or item.of_note:
            items.append(item)
    return items, undecodable, not_judged, read, judged


def recorded_message(codec: Codec, value: bytes) -> BaseModel:
    """The recorded message, a verdict without its RPA payload: neither `judge_again` nor `compare`
    reads the payload, and validating its lines was most of a verdict's validation (the pipeline
    validated the payload before it wrote the verdict). A verdict that does not validate so is
    decoded in full, which names what is wrong as it always did."""
    model, record = codec.read_unvalidated(value)
    if model is not Verdict:
        return from_record(model, record)
    record["rpa_payload"] = None
    try:
        return from_record(Verdict, record)
    except DecodeError:
        return codec.decode(value)
