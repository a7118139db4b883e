"""Cost that does not grow with history: the worker's cost per invoice on a PO with 1,000 invoices
already entered beside a PO with 1, and with 200,000 purchase orders beside 2,000, each printed
beside its baseline from the same run, with the process's memory.

What is timed is the worker's own path, through its composition root: the PO agent (ledger load
and save in the keyed state, Sampro read, duplicate lookups, rules, encoding), the
processscheduler sink and the RPA mail flow, on the Sampro stand-in and processscheduler in
PostgreSQL. Kafka is the in-memory broker and the mailbox an in-memory one: their cost per
message does not depend on history, and `pipeline_bench.py` measures them. The stand-in RPA bot
is this script: it answers every RPA request with a completion at once.

- depth: one PO gets N invoices, one after the other, each entered before the next comes (or,
  `held`, each waiting in AP's review for a price its PO does not have); then 200 more are timed
  one by one, and the median is the figure (a stall of the machine's does not move it).
  Baseline: the same 200 on a PO with one invoice before them.
- breadth: Sampro holds P purchase orders, the worker's state a ledger for each (restored from
  its changelog, as after a restart) and processscheduler a row for each; then 2,000 invoices on
  2,000 of those POs are offered in bursts of 250, and the median burst is the figure.
  Baseline: P = 2,000.

Usage: python bench/growth_bench.py [--depth 1000] [--breadth 200000] [--store memory://|rocksdb://]
Starts the local stack's PostgreSQL if it is not up, and stops it at the end.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, text  # noqa: E402

from connectors.ports import SchedulerEntry  # noqa: E402
from connectors.rpa_mail import InMemoryRpaMailer  # noqa: E402
from connectors.sampro.changes import InMemorySamproChanges  # noqa: E402
from connectors.sampro.standin import SamproStandIn  # noqa: E402
from devstack import LocalStack  # noqa: E402
from devstack.workload import invoices, purchase_orders  # noqa: E402
from rules.lifecycle import InvoiceSubmitted  # noqa: E402
from rules.models import CompletionOutcome, PurchaseOrder, RpaCompletion, Verdict  # noqa: E402
from rules.po_ledger import PurchaseOrderLedger  # noqa: E402
from streams.bootstrap import Pipeline, bootstrap  # noqa: E402
from streams.broker_memory import InMemoryBroker  # noqa: E402
from streams.settings import Settings  # noqa: E402

TIMED_DEPTH, TIMED_BREADTH, BURST = 200, 2_000, 250


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class World:
    """A worker on the in-memory broker over a Sampro and a processscheduler schema of its own."""

    def __init__(self, endpoints, store: str):
        self.prefix = f"growth{uuid.uuid4().hex[:6]}"
        self.endpoints, self.store = endpoints, store

    def __enter__(self) -> World:
        for url in (self.endpoints.sampro_db_url, self.endpoints.scheduler_db_url):
            with create_engine(url).begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{self.prefix}"'))
        p = self.prefix
        self.data = Path(tempfile.mkdtemp(prefix="ia-growth-"))
        settings = Settings(app_id=p, data_dir=self.data, store=self.store,
                            marketplace_source="debezium",
                            sampro_db_url=f"{self.endpoints.sampro_db_url}?options=-csearch_path%3D{p}",
                            scheduler_db_url=f"{self.endpoints.scheduler_db_url}?options=-csearch_path%3D{p}")
        self.sampro = SamproStandIn(create_engine(settings.sampro_db_url))
        self.sampro.create_schema()
        self.broker = InMemoryBroker(partitions=6)
        self.mailer = InMemoryRpaMailer()
        self.pipeline: Pipeline = bootstrap(settings, broker=self.broker, mailer=self.mailer,
                                            sampro_changes=InMemorySamproChanges())
        self.answered = 0
        return self

    def __exit__(self, *exc) -> None:
        self.pipeline.runtime.close()
        for url in (self.endpoints.sampro_db_url, self.endpoints.scheduler_db_url):
            with create_engine(url).begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{self.prefix}" CASCADE'))
        shutil.rmtree(self.data, ignore_errors=True)

    def start(self) -> None:
        self.pipeline.runtime.start()
        self.pipeline.runtime.step()  # assigned, state restored

    def submit(self, submissions: list[InvoiceSubmitted]) -> float:
        """Offers the invoices and works until every one is judged and every ready one entered;
        returns the seconds the worker spent."""
        topics, codec = self.pipeline.topics, self.pipeline.codec
        for submission in submissions:
            self.broker.append(topics.invoices, submission.po_number.encode(), codec.encode(submission))
        spent, idle = 0.0, 0
        while idle < 2:
            before = self._records()
            started = time.perf_counter()
            self.pipeline.runtime.step()
            spent += time.perf_counter() - started
            idle = idle + 1 if self._answer() == 0 and self._records() == before else 0
        return spent

    def _answer(self) -> int:
        """The stand-in bot: a completion for each RPA request not answered yet."""
        requests = self.mailer.sent[self.answered:]
        for request in requests:
            completion = RpaCompletion(
                event_id=f"done-{request.invoice_id}-v{request.invoice_version}", invoice_id=request.invoice_id,
                invoice_version=request.invoice_version, po_number=request.po_number,
                outcome=CompletionOutcome.SUCCESS, sampro_invoice_id=f"S-{request.invoice_id}",
                occurred_at=datetime.now(UTC))
            self.broker.append(self.pipeline.topics.completions, request.po_number.encode(),
                               self.pipeline.codec.encode(completion))
        self.answered += len(requests)
        return len(requests)

    def _records(self) -> int:
        return sum(len(partition) for log in self.broker.logs.values() for partition in log)

    def judged(self) -> int:
        codec = self.pipeline.codec
        return sum(1 for record in self.broker.records(self.pipeline.topics.verdicts)
                   if codec.kind(record.value or b"") is Verdict)

    def state_size(self) -> tuple[int, int]:
        """Keys and bytes of keys and values in the worker's ledger store (memory://)."""
        partitions = self.pipeline.ledgers.store.partitions.values()
        data = [item for partition in partitions for item in getattr(partition, "data", {}).items()]
        return len(data), sum(len(key) + len(value) for key, value in data)

    def ledger_bytes(self, po_number: str) -> int:
        store = self.pipeline.ledgers.store
        return max(len(store.partition(number).get(po_number) or b"") for number in range(6))

    def one_by_one(self, submissions: list[InvoiceSubmitted]) -> list[float]:
        """The seconds each invoice cost, offered alone."""
        return [self.submit([submission]) for submission in submissions]

    def preload(self, pos: list[PurchaseOrder]) -> None:
        """What P purchase orders with one invoice entered each leave behind: the POs in Sampro, a
        ledger each in the changelog (restored when the worker starts) and a processscheduler row."""
        for chunk in _chunks(pos, 20_000):
            self.sampro.add_purchase_orders(chunk)
        ledgers = self.pipeline.ledgers.store
        for po in pos:
            ledger = PurchaseOrderLedger(po_number=po.po_number, latest={f"{po.po_number}-MP-0": 1},
                                         completions_seen=[f"done-{po.po_number}-MP-0-v1"])
            key = po.po_number.encode()
            self.broker.append(ledgers.changelog_topic, key, ledger.model_dump_json().encode(),
                               self.broker.partition_of(key))
        rows = [SchedulerEntry((f"{po.po_number}-MP-0", 1), {
            "po_number": po.po_number, "vendor_id": po.vendor_id, "invoice_number": f"{po.po_number}-N",
            "status": "entered", "rules_version": "filler", "vendor_key": po.vendor_id.lower(),
            "number_key": f"{po.po_number}-n".lower(), "loose_number_key": po.po_number.lower(),
            "total_amount": 1, "reasons": []}, {
            "event_id": f"filler:{po.po_number}", "invoice_id": f"{po.po_number}-MP-0", "invoice_version": 1,
            "status": "entered", "occurred_at": datetime.now(UTC), "actor": None, "reason": None, "holds": None})
            for po in pos]
        for chunk in _chunks(rows, 5_000):
            self.pipeline.scheduler.record(chunk)
        self.analyze()

    def analyze(self) -> None:
        """Statistics, as autovacuum keeps them on tables that grew over months. Timed right after
        the bulk load without them, PostgreSQL read a batch of POs by hashing all of po_line, and
        looked up duplicates by scanning processscheduler: 2.1-2.5 ms per invoice at 200,000 POs
        where 1.1 ms was the cost with them, a measure of the load's timing and not of history."""
        for url in (self.endpoints.sampro_db_url, self.endpoints.scheduler_db_url):
            with create_engine(url).begin() as conn:
                tables = conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = :schema"),
                                      {"schema": self.prefix}).scalars().all()
                for table in tables:
                    conn.execute(text(f'ANALYZE "{self.prefix}"."{table}"'))


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start: start + size]


@contextmanager
def timed_phase(label: str) -> Iterator[None]:
    started = time.perf_counter()
    yield
    print(f"  ({label}: {time.perf_counter() - started:,.0f} s)", flush=True)


def depth(endpoints, history: int, store: str) -> None:
    print(f"depth: {TIMED_DEPTH} invoices, one after the other, on a PO with 1 and with {history:,} before")
    with World(endpoints, store) as world:  # the process's first world pays what the others do not
        po = _deep_po(world.prefix)
        world.sampro.load_purchase_orders([po])
        world.start()
        world.one_by_one(_ready(invoices(2 * TIMED_DEPTH, [po], world.prefix)))
    for kind in ("entered", "held"):
        figures = {}
        for before in (1, history):
            with World(endpoints, store) as world, timed_phase(f"{before:,} {kind} before"):
                po = _deep_po(world.prefix)
                world.sampro.load_purchase_orders([_held_by_price(po) if kind == "held" else po, _warm_up_po(po)])
                world.start()
                warm_up = _ready(invoices(30, [_warm_up_po(po)], f"{world.prefix}W"))
                world.one_by_one(warm_up)
                stream = _ready(invoices(2 * (before + TIMED_DEPTH), [po], world.prefix))[:before + TIMED_DEPTH]
                world.one_by_one(stream[:before])
                world.analyze()
                each = world.one_by_one(stream[before:])
                assert world.judged() == len(warm_up) + before + TIMED_DEPTH, "every invoice judged"
                figures[before] = statistics.median(each)  # a stall of the machine's does not move it
                print(f"  {before:>9,} {kind} before: {figures[before] * 1e6:>8,.0f} µs per invoice (median)  "
                      f"(the PO's own value {world.ledger_bytes(po.po_number):,} bytes, RSS {rss_mib():,.0f} MiB)",
                      flush=True)
        ratio = figures[history] / figures[1]
        print(f"  ratio {history:,} {kind} / 1: {ratio:.2f}  (target <= 2: {'met' if ratio <= 2 else 'NOT met'})")


def _deep_po(prefix: str) -> PurchaseOrder:
    """A PO with room for every invoice."""
    po = purchase_orders(2, prefix)[1]  # the workload's PO 0 is a closed one
    room = Decimal(10**9)
    return po.model_copy(update={"lines": [line.model_copy(update={"quantity_ordered": room,
                                                                   "quantity_received": room})
                                           for line in po.lines]})


def _held_by_price(po: PurchaseOrder) -> PurchaseOrder:
    """The PO as Sampro has it for the held case: its first line a dollar under what the invoices
    say, so that each one waits in AP's review (manual_review) and stays on the PO's ledger."""
    first = po.lines[0].model_copy(update={"unit_price": po.lines[0].unit_price - 1})
    return po.model_copy(update={"lines": [first, *po.lines[1:]]})


def _warm_up_po(po: PurchaseOrder) -> PurchaseOrder:
    """Another PO, on which each case first decides a few invoices (connections, statement caches)."""
    return po.model_copy(update={"po_number": f"{po.po_number}-W"})


def _ready(stream: list[InvoiceSubmitted]) -> list[InvoiceSubmitted]:
    """The workload's invoices without its deliberate price and total errors (every 7th and 11th)."""
    return [submission for number, submission in enumerate(stream) if number % 7 and number % 11]


def breadth(endpoints, wide: int, store: str) -> None:
    print(f"breadth: {TIMED_BREADTH:,} invoices on 2,000 and on {wide:,} purchase orders, each with one entered")
    figures = {}
    for count in (2_000, wide):
        with World(endpoints, store) as world, timed_phase(f"{count:,} POs"):
            pos = purchase_orders(count, world.prefix)
            world.preload(pos)
            world.start()
            chosen = random.Random(11).sample(pos, TIMED_BREADTH)
            stream = [submission.model_copy(update={"invoice_id": f"{submission.po_number}-MP-1"})
                      for submission in invoices(TIMED_BREADTH, chosen, world.prefix)]
            bursts = [world.submit(burst) / len(burst) for burst in _chunks(stream, BURST)]
            assert world.judged() == TIMED_BREADTH, "every invoice judged"
            figures[count] = statistics.median(bursts)
            keys, size = world.state_size()
            print(f"  {count:>9,} POs: {figures[count] * 1e6:>8,.0f} µs per invoice (median of {len(bursts)} bursts)"
                  f"  (the worker's state: {keys:,} keys, {size / 2**20:,.1f} MiB of keys and values; "
                  f"RSS of this process {rss_mib():,.0f} MiB, workload and in-memory topics included)", flush=True)
    ratio = figures[wide] / figures[2_000]
    print(f"  ratio {wide:,} / 2,000: {ratio:.2f}  (target <= 2: {'met' if ratio <= 2 else 'NOT met'})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depth", type=int, default=1_000, help="invoices entered on the deep PO before")
    parser.add_argument("--breadth", type=int, default=200_000, help="purchase orders in the wide case")
    parser.add_argument("--store", default="memory://", choices=("memory://", "rocksdb://"))
    args = parser.parse_args()
    stack = LocalStack(ROOT)
    fresh = stack.not_running(("postgres",))
    endpoints = stack.up(("postgres",))
    try:
        depth(endpoints, args.depth, args.store)
        breadth(endpoints, args.breadth, args.store)
    finally:
        stack.down(fresh)
    print(f"run finished {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")


if __name__ == "__main__":
    main()
