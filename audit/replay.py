"""`replay`: judge the verdicts recorded on the topic again, and say what would change.

Each verdict carries the invoice, the PO snapshot and the context it was judged with, so the
result depends only on the rules (and tolerances) given, never on today's Sampro. The topic is
cut into slices of offsets, and each process reads and judges its own slices: judging is what
costs, and no record has to cross from one process to another.

A verdict the PO ledger wrote again (a reprocess, a recovery after a crash) is a copy, which the
pipeline applied once: it is counted as a copy, not judged again as another verdict.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, fields
from datetime import datetime
from functools import cache, partial
from operator import attrgetter

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


class JudgingProcessDied(Exception):
    """A process judging verdicts ended without a word, in the middle of its slices: the system
    killed it, most likely for memory (Linux's OOM killer sends SIGKILL). The replay judged only
    part of the topic, so it has no report to give."""


def verdict_identity(verdict: Verdict) -> tuple[str | None, int | None, str, datetime, str | None]:
    """What a verdict is the same verdict as when it comes again: the PO ledger tells a verdict
    again, unchanged, on a reprocess or a recovery after a crash, and the pipeline applies it once."""
    return (verdict.invoice_id, verdict.invoice_version, verdict.rules_version, verdict.evaluated_at,
            verdict.judged_after)


def _copy_key(verdict: Verdict) -> bytes:
    """The verdict's identity in 16 bytes, the same in every process (`hash` of a text is not), as
    one is kept for each verdict of the partition being read."""
    return hashlib.blake2b(repr(verdict_identity(verdict)).encode(), digest_size=16).digest()


@dataclass(frozen=True)
class Selection:
    """Which recorded verdicts to judge again: a time range and/or invoices and POs. The range is of
    when each record was written (Kafka's record time), not of when its verdict was given: Kafka
    finds the offsets of a time by record time, so the range is read exactly, where the time a
    verdict was given would need the topic read past the range's end for the verdicts written late.
    A copy a reprocess wrote in the range of a verdict given before it is in it, once."""

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
    # False: judged again without the duplicate checks beyond the very number, which its audit
    # (rules before 2026.12.1) kept nothing for; unchanged, it is not known to be unchanged.
    duplicates_judged: bool = True


NAMED = 1_000  # records named one by one in the report; past that, counted


@dataclass
class Tally:
    """What the summary shows of the verdicts judged, counted as they come: a million that would
    change were a million items kept in memory before the summary could be printed."""

    records_read: int = 0
    judged: int = 0  # verdicts judged again
    copies: int = 0  # verdicts written again (a reprocess, a recovery), left out of every other count
    changed: int = 0
    not_rederivable: int = 0
    duplicates_not_judged: int = 0  # judged again, but not by the duplicate checks beyond the number
    transitions: Counter[tuple[str, str | None]] = field(default_factory=Counter)
    reason_changes: Counter[tuple[str, str]] = field(default_factory=Counter)
    undecodable: list[str] = field(default_factory=list)  # the first NAMED records that could not be read
    undecodable_count: int = 0
    not_judged: list[str] = field(default_factory=list)  # the first NAMED verdicts the rules failed on: a bug
    not_judged_count: int = 0

    def count(self, item: ReplayedVerdict, times: int = 1) -> None:
        """`times=-1` takes a verdict counted before out again: a copy, found so once counted."""
        self.judged += times
        if item.rederived_status is None:
            self.not_rederivable += times
        elif not item.duplicates_judged:
            self.duplicates_not_judged += times
        if item.changed:
            self.changed += times
            self.transitions[(item.recorded_status, item.rederived_status)] += times
            for code in item.added_reasons:
                self.reason_changes[(code, "added")] += times
            for code in item.removed_reasons:
                self.reason_changes[(code, "removed")] += times
        if times < 0:
            self.copies -= times

    def undecodable_record(self, where: str) -> None:
        self.undecodable_count += 1
        if len(self.undecodable) < NAMED:
            self.undecodable.append(where)

    def not_judged_verdict(self, where: str) -> None:
        self.not_judged_count += 1
        if len(self.not_judged) < NAMED:
            self.not_judged.append(where)

    def add(self, other: Tally) -> None:
        self.records_read += other.records_read
        self.judged += other.judged
        self.copies += other.copies
        self.changed += other.changed
        self.not_rederivable += other.not_rederivable
        self.duplicates_not_judged += other.duplicates_not_judged
        self.transitions.update(other.transitions)
        self.reason_changes.update(other.reason_changes)
        self.undecodable_count += other.undecodable_count
        self.undecodable += other.undecodable[: NAMED - len(self.undecodable)]
        self.not_judged_count += other.not_judged_count
        self.not_judged += other.not_judged[: NAMED - len(self.not_judged)]


@dataclass(kw_only=True)
class ReplayReport(Tally):
    topic: str
    rules_version: str
    selection: Selection
    items: list[ReplayedVerdict] = field(default_factory=list)  # every verdict judged, when asked to keep them

    def summary(self) -> dict:
        """The report's head: everything but the verdicts one by one."""
        return {
            "topic": self.topic, "rules_version": self.rules_version,
            "selection": {"since_ms": self.selection.since_ms, "until_ms": self.selection.until_ms,
                          "invoice_ids": sorted(self.selection.invoice_ids),
                          "po_numbers": sorted(self.selection.po_numbers)},
            "records_read": self.records_read, "verdicts": self.judged, "copies": self.copies, "changed": self.changed,
            "not_rederivable": self.not_rederivable, "duplicates_not_judged": self.duplicates_not_judged,
            "undecodable_count": self.undecodable_count, "undecodable": self.undecodable,
            "not_judged_count": self.not_judged_count, "not_judged": self.not_judged,
            "transitions": [{"from": a, "to": b, "count": n} for (a, b), n in self.transitions.most_common()],
            "reason_changes": [{"code": c, "change": k, "count": n}
                               for (c, k), n in self.reason_changes.most_common()],
        }


def replay(
    reader: TopicReader, topic: str, selection: Selection, policy: Policy, *, limits: Limits = Limits(),
    schema_registry_url: str | None = None, workers: int | None = None, keep_items: bool = True,
    spool: Callable[[list[ReplayedVerdict]], None] | None = None,
    on_total: Callable[[int], None] = lambda total: None, on_progress: Callable[[int], None] = lambda n: None,
) -> ReplayReport:
    """`keep_items=False` keeps no verdict in `items`, only the counts the summary shows, and the
    copy key of each verdict of the partition being read (about 80 bytes each): memory that does
    not grow with the topic, only with its largest partition. `spool` is handed every verdict
    judged again, copies left out, in topic order: a full report written as the verdicts come (ten
    million kept for one took 5 GiB)."""
    ranges = reader.ranges(topic, selection.since_ms, selection.until_ms)
    on_total(sum(end - start for start, end in ranges.values()))
    report = ReplayReport(topic=topic, rules_version=rules_version(policy), selection=selection)
    judge = partial(_judge_slice, reader, topic, policy=policy, limits=limits, selection=selection,
                    schema_registry_url=schema_registry_url)
    slices = list(_slices(ranges, SLICE))
    # No more processes than slices: a topic of one slice is judged here, without starting any.
    workers = min(workers or os.cpu_count() or 1, len(slices))
    if workers <= 1:
        _collect(slices, map(judge, slices), report, keep_items, spool, on_progress)
    else:
        with _pool(workers) as pool:
            try:
                _collect(slices, _bounded_map(pool, judge, slices, in_flight=2 * workers), report, keep_items,
                         spool, on_progress)
            except KeyboardInterrupt:
                pool.shutdown(cancel_futures=True)  # the slices not started are not judged on the way out
                raise
            except BrokenProcessPool as error:
                # Said as the pool says it, it was a traceback and exit 1, which a CI job reads as
                # "some records could not be read": the auditor is told what died, and why it may have.
                raise JudgingProcessDied(
                    f"a process judging verdicts died before it finished ({workers} judged at once): most "
                    "likely the system killed it for lack of memory") from error
    return report


def _pool(workers: int) -> ProcessPoolExecutor:
    """Workers forked from a fork server that has imported this module and nothing else. Forked
    from the caller, they would inherit the locks its threads held at that moment: librdkafka is
    not fork-safe, and a child forked while a Kafka client lived in the caller crashed a replay.
    Ctrl-C is the caller's to handle: a worker that took it too printed its traceback, one each."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return ProcessPoolExecutor(workers, mp_context=context, initializer=_leave_ctrl_c_to_the_caller)


def _leave_ctrl_c_to_the_caller() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


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


Judged = list[tuple[bytes, tuple]]  # a slice's verdicts: each one's copy key and its ReplayedVerdict's fields
_fields_of = attrgetter(*(f.name for f in fields(ReplayedVerdict)))


def _collect(slices: list[tuple[int, int, int]], results: Iterable[tuple[Judged, Tally]],
             report: ReplayReport, keep_items: bool, spool: Callable[[list[ReplayedVerdict]], None] | None,
             on_progress: Callable[[int], None]) -> None:
    """`results` in the order of `slices`, each slice's verdicts counted in its tally. A verdict seen
    before in its partition is a copy: taken out of the counts again, and counted as one (copies
    share the PO's key, so its partition; a copy a reprocess wrote is in another slice than the
    verdict, often). The counting stays in the processes that judge: done here, with each verdict
    sent as an object, a replay judged 8 % fewer verdicts a second. Progress is told in offsets,
    as the total is: a transaction's commit marker holds an offset and is no record, and counted in
    records, the bar of a topic the pipeline wrote in transactions ended at half."""
    seen: set[bytes] = set()  # the verdicts of the partition being read, kept until the next one's
    partition_read = None
    wanted = keep_items or spool is not None
    for (partition, start, end), (judged, tally) in zip(slices, results, strict=True):
        if partition != partition_read:
            seen, partition_read = set(), partition
        report.add(tally)
        items = []
        for key, values in judged:
            if key in seen:
                report.count(ReplayedVerdict(*values), times=-1)
                continue
            seen.add(key)
            if wanted:
                items.append(ReplayedVerdict(*values))
        if spool is not None:
            spool(items)
        elif keep_items:
            report.items.extend(items)
        on_progress(end - start)


@cache
def _codec(schema_registry_url: str | None):
    """One codec per process (its schemas parsed, its registry client connected once)."""
    return codec_for(schema_registry_url)


def _judge_slice(reader: TopicReader, topic: str, piece: tuple[int, int, int], policy: Policy, limits: Limits,
                 selection: Selection, schema_registry_url: str | None) -> tuple[Judged, Tally]:
    """Reads one slice and judges its verdicts again: the counts, and each verdict with its copy key
    for `_collect` to find the copies, as a tuple (a dataclass took six times as long to pass
    between processes). Status changes share the topic: they are left out by their schema
    fingerprint, undecoded."""
    codec = _codec(schema_registry_url)
    partition, start, end = piece
    judged: Judged = []
    tally = Tally()
    for record in reader.read(topic, {partition: (start, end)}):
        tally.records_read += 1
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
            tally.undecodable_record(f"{where}: {error}")
            continue
        except Unavailable:  # the schema registry: an outage, waited for by the operator, not a bad record
            raise
        except Exception as error:  # one verdict is counted, never the end of an auditor's long run
            tally.not_judged_verdict(f"{where}: {type(error).__name__}: {str(error)[:300]}")
            continue
        item = ReplayedVerdict(
            invoice_id=message.invoice_id, invoice_version=message.invoice_version, po_number=message.po_number,
            recorded_at=record.recorded_at.isoformat(),
            partition=partition, offset=record.offset, recorded_rules_version=message.rules_version,
            recorded_status=comparison.recorded_status, rederived_status=comparison.rederived_status,
            recorded_reasons=comparison.recorded_codes, rederived_reasons=comparison.rederived_codes,
            changed=comparison.changed, added_reasons=comparison.added_codes, removed_reasons=comparison.removed_codes,
            duplicates_judged=comparison.duplicates_judged,
        )
        tally.count(item)
        judged.append((_copy_key(message), _fields_of(item)))
    return judged, tally


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
