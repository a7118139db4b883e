"""Pipeline throughput, latency and where the time goes, per workload, beside a plain Kafka
pass-through of the same messages on the same broker in the same run.

Workloads, named by what they model (each on topics and tables of its own):
- steady: one or two invoices per PO, the stand-in RPA bot entering what it is sent; then, once
  the bot has entered all of it, the same kind of invoices offered at a fixed rate (200/s, then
  2,000/s) for produce -> row latency;
- month-end: a burst uploaded at once (50,000 at --scale 1), the bot entering;
- busy-po: 1,000 invoices on 5 POs: each PO judges one invoice at a time and parks the rest until
  the bot has entered the one before (the parking path, and a PO with a long history).

For each: the pass-through (confluent-kafka consume -> produce, no decoding, no database), rows/s
into processscheduler (every invoice judged: no row left at waiting_for_po), the ratio, the
worker's RSS (at the end, and sampled each second over the run), and the worker's own stage
metric per invoice, so that a regression shows where it is. Figures are noisy on a small
machine; the ratios are what count.

Usage: python bench/pipeline_bench.py [--workload all|steady|month-end|busy-po] [--scale 1.0] [--workers 1]
                                     [--roles split|all] [--store memory://|rocksdb://]
By default the workers decide and one more worker sends the RPA emails (`worker --role`), as a
deployment that wants throughput runs them; `--roles all` measures workers that do everything.
Starts the local stack (PostgreSQL, Kafka) if it is not up, and stops it at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from confluent_kafka import Consumer, Producer  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from sqlalchemy import create_engine, func, select, text  # noqa: E402

from connectors.sampro.standin import SamproStandIn  # noqa: E402
from connectors.scheduler import SqlProcessScheduler, upgrade  # noqa: E402
from connectors.scheduler.tables import processscheduler  # noqa: E402
from devstack import LocalStack  # noqa: E402
from devstack.demo import _settings_env  # noqa: E402
from devstack.process import free_port  # noqa: E402
from devstack.worker import WorkerProcess  # noqa: E402
from devstack.workload import invoices, purchase_orders  # noqa: E402
from schemas.codec import SingleObjectCodec  # noqa: E402
from streams.settings import Settings  # noqa: E402
from streams.topics import ensure_topics  # noqa: E402

# The worker's stage metric, as the breakdown prints it: (flow, stage) -> label. The PO agent's
# "decide" includes its parts below it (and its encoding), printed beside it.
STAGES = {
    ("pipeline", "kafka poll"): "Kafka poll (deciding)",
    ("pipeline", "commit"): "Kafka produce + commit (deciding)",
    ("ingest-marketplace-cdc", "decode"): "ingest: decode",
    ("ingest-marketplace-cdc", "ingest"): "ingest: publish",
    ("decide-purchase-order-work", "decode"): "PO agent: decode",
    ("decide-purchase-order-work", "decide"): "PO agent: decide, all of it",
    ("decide-purchase-order-work", "ledger state"): "  ledger state load + save",
    ("decide-purchase-order-work", "sampro read"): "  Sampro read",
    ("decide-purchase-order-work", "processscheduler read"): "  processscheduler read (duplicates)",
    ("decide-purchase-order-work", "rules and ledger"): "  rules and ledger",
    ("decide-purchase-order-work", "encode"): "  encode verdicts and requests",
    ("record-in-processscheduler", "decode"): "sink: decode",
    ("record-in-processscheduler", "record"): "sink: processscheduler write",
    ("send-to-rpa-mailbox", "decode"): "mail: decode",
    ("send-to-rpa-mailbox", "mail"): "mail: SMTP + sent log",
    ("rpa-mail", "kafka poll"): "mail: Kafka poll",
    ("rpa-mail", "commit"): "mail: Kafka commit",
}


def produce(bootstrap: str, topic: str, stream, rate: float | None = None) -> dict[str, float]:
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random", "linger.ms": 5})
    codec, sent_at = SingleObjectCodec(), {}
    started = time.monotonic()
    for n, submission in enumerate(stream):
        if rate:
            delay = started + n / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        sent_at[submission.invoice_id] = time.time()
        producer.produce(topic, key=submission.po_number.encode(), value=codec.encode(submission))
        producer.poll(0)
    producer.flush(60)
    return sent_at


def passthrough(bootstrap: str, source: str, target: str, count: int) -> float:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-{uuid.uuid4().hex[:6]}",
                         "auto.offset.reset": "earliest"})
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    consumer.subscribe([source])
    seen, started = 0, None
    while seen < count:
        for message in consumer.consume(1000, timeout=1):
            if message.error():
                continue
            started = started or time.monotonic()
            producer.produce(target, key=message.key(), value=message.value())
            seen += 1
        producer.poll(0)
    producer.flush(60)
    consumer.commit(asynchronous=False)
    elapsed = time.monotonic() - started
    consumer.close()
    return count / elapsed


def judged(engine, like: str) -> tuple[int, int]:
    """Rows of the run, and those of them judged (not waiting for their PO), in one scan: a count
    scans every row of the run on the PostgreSQL the pipeline writes to (pg_stat_statements,
    steady at --scale 0.5: two counts every 0.2 s took 2.8 s of its time, one every 0.5 s 1.1 s)."""
    rows = (select(func.count(), func.count().filter(processscheduler.c.status == "waiting_for_po"))
            .where(processscheduler.c.invoice_id.like(like)))
    with engine.connect() as conn:
        total, waiting = conn.execute(rows).one()
    return total, total - waiting


def percentiles(seconds: list[float]) -> tuple[float, float]:
    """p50 and p99; a negative duration (clocks a little apart) counts as none."""
    ordered = sorted(max(0.0, value) for value in seconds)
    return statistics.median(ordered), ordered[max(0, int(len(ordered) * 0.99) - 1)]


def wait_judged(engine, like: str, count: int, timeout: float, rows_only: bool = False,
                started: float | None = None) -> tuple[float, float]:
    """Seconds until every invoice has a row, and until every one is judged (or has a row, `rows_only`),
    counted from `started` (by default, now): the workers decide while the invoices are produced."""
    started = time.monotonic() if started is None else started
    deadline, rows_at = started + timeout, None
    while time.monotonic() < deadline:
        total, done = judged(engine, like)
        if rows_at is None and total >= count:
            rows_at = time.monotonic() - started
        if done >= count or (rows_only and rows_at is not None):
            return rows_at or time.monotonic() - started, time.monotonic() - started
        time.sleep(0.5)  # at most 0.5 s late on a run of 30 s or more: under 2 %
    raise TimeoutError(f"{count - done:,} of {count:,} invoices not judged after {timeout:.0f} s")


def wait_entered(engine, like: str, timeout: float) -> float:
    """Seconds until no invoice of the run waits at the RPA bot: a latency is measured at the rate
    offered, not while the worker still works through the completions of an earlier burst."""
    started = time.monotonic()
    at_bot = (select(func.count()).select_from(processscheduler)
              .where(processscheduler.c.invoice_id.like(like), processscheduler.c.status == "sent_to_rpa"))
    while time.monotonic() - started < timeout:
        with engine.connect() as conn:
            if conn.execute(at_bot).scalar() == 0:
                return time.monotonic() - started
        time.sleep(0.5)
    raise TimeoutError(f"invoices still at the RPA bot after {timeout:.0f} s")


def cpu_seconds(roles: dict[int, str]) -> dict[str, float]:
    """CPU seconds used so far (Linux /proc), per part of the machine: the processes in `roles` by
    pid, PostgreSQL (its backends, and those it has reaped), the Kafka broker, and this script. The
    stand-in bot and the benchmark share the 2 cores with the worker; this shows how much."""
    tick, used = os.sysconf("SC_CLK_TCK"), defaultdict(float)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # ended meanwhile
            continue
        pid = int(entry.name)
        role = (roles.get(pid) or ("PostgreSQL" if command.startswith("postgres") else None)
                or ("Kafka" if "kafka.Kafka" in command else None) or ("this bench" if pid == os.getpid() else None))
        if role is not None:  # utime, stime, and the children's it has waited for
            used[role] += sum(int(value) for value in fields[11:15]) / tick
    return used


@dataclass
class Workers:
    """The worker processes, their stage metric and memory."""

    processes: list[WorkerProcess] = field(default_factory=list)

    def start(self, settings: Settings, count: int, logs: Path, roles: str) -> Workers:
        # split: `count` deciding workers and one for the RPA mailbox; all: `count` doing everything
        chosen = ["all"] * count if roles == "all" else ["decide"] * count + ["mail"]
        for n, role in enumerate(chosen):
            port = free_port()
            worker = WorkerProcess(_settings_env(settings.model_copy(update={"worker_http_port": port})),
                                   logs / f"worker-{n}-{role}.log", role)
            worker.http_port = port
            self.processes.append(worker.start())
        deadline = time.monotonic() + 120
        while not all(self._ready(worker) for worker in self.processes):
            if time.monotonic() > deadline:
                raise TimeoutError("the workers did not get ready: " + self.processes[0].last_lines())
            time.sleep(0.5)
        return self

    @staticmethod
    def _ready(worker: WorkerProcess) -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{worker.http_port}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def stage_seconds(self) -> dict[tuple[str, str], float]:
        total: dict[tuple[str, str], float] = defaultdict(float)
        for worker in self.processes:
            page = httpx.get(f"http://127.0.0.1:{worker.http_port}/metrics", timeout=5).text
            for family in text_string_to_metric_families(page):
                if family.name == "invoice_automation_worker_stage_seconds":
                    for sample in family.samples:
                        if sample.name.endswith("_total"):
                            total[(sample.labels["flow"], sample.labels["stage"])] += sample.value
        return total

    def rss_mib(self) -> float:
        kib = 0
        for worker in self.processes:
            for line in Path(f"/proc/{worker.process.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    kib += int(line.split()[1])
        return kib / 1024

    def stop(self) -> None:
        for worker in self.processes:
            worker.stop()


class RssTrace:
    """The workers' RSS once a second while a workload runs, to show whether it levels off."""

    def __init__(self, workers: Workers):
        self.workers, self.samples = workers, []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> RssTrace:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._done.wait(1.0):
            try:
                self.samples.append(self.workers.rss_mib())
            except OSError:  # a worker has gone: its log says why, the run fails on its own
                return

    def summary(self) -> str:
        if not self.samples:
            return "not sampled"
        at = [self.samples[min(len(self.samples) - 1, len(self.samples) * q // 4)] for q in (1, 2, 3)]
        return (f"at 1/4, 1/2, 3/4 of the run {at[0]:,.0f}, {at[1]:,.0f}, {at[2]:,.0f} MiB; "
                f"peak {max(self.samples):,.0f} MiB")


class Run:
    """One workload on topics, tables and a worker group of its own."""

    def __init__(self, name: str, endpoints, workers: int, roles: str = "split", store: str = "memory://"):
        self.name, self.endpoints, self.worker_count, self.roles = name, endpoints, workers, roles
        self.store = store
        self.prefix = f"bench{uuid.uuid4().hex[:6]}"
        self.data = Path(tempfile.mkdtemp(prefix="ia-bench-"))

    def __enter__(self) -> Run:
        for url in (self.endpoints.sampro_db_url, self.endpoints.scheduler_db_url):
            with create_engine(url).begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{self.prefix}"'))
        p, smtp_port = self.prefix, free_port()

        self.settings = Settings(
            kafka_bootstrap_servers=self.endpoints.kafka_bootstrap, app_id=p, data_dir=self.data, store=self.store,
            marketplace_source="debezium", invoices_topic=f"{p}.invoices", completions_topic=f"{p}.completions",
            commands_topic=f"{p}.commands", verdicts_topic=f"{p}.verdicts", rpa_requests_topic=f"{p}.rpa",
            dlq_topic=f"{p}.dlq", marketplace_topic=f"{p}.marketplace", sampro_changes_topic=f"{p}.sampro-changes",
            sampro_cdc_topic=f"{p}.sampro-cdc",
            sampro_db_url=self._in_schema(self.endpoints.sampro_db_url),
            scheduler_db_url=self._in_schema(self.endpoints.scheduler_db_url), smtp_port=smtp_port,
        )
        ensure_topics(self.settings)
        self.sampro = SamproStandIn(create_engine(self.settings.sampro_db_url))
        self.sampro.create_schema()
        self.engine = create_engine(self.settings.scheduler_db_url)
        upgrade(self.engine)
        self.bot = subprocess.Popen([sys.executable, "-m", "devstack.rpa_bot", str(smtp_port),
                                     self.settings.sampro_db_url, self.endpoints.kafka_bootstrap,
                                     self.settings.completions_topic], cwd=ROOT)
        self.workers = Workers()
        return self

    def _in_schema(self, url: str) -> str:
        return f"{url}?options=-csearch_path%3D{self.prefix}"

    def __exit__(self, *exc) -> None:
        self.workers.stop()
        self.bot.terminate()
        self.bot.wait(30)
        for url in (self.endpoints.sampro_db_url, self.endpoints.scheduler_db_url):
            with create_engine(url).begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{self.prefix}" CASCADE'))
        if exc[0] is None:
            shutil.rmtree(self.data, ignore_errors=True)
        else:
            print(f"  the workers' logs are in {self.data}")

    def throughput(self, count: int, per_po: float) -> dict[str, float]:
        """`count` invoices over count/per_po POs, produced at once: pass-through first, then the pipeline."""
        pos = purchase_orders(max(1, round(count / per_po)), self.prefix)
        stream = invoices(count, pos, self.prefix)
        self.sampro.load_purchase_orders(pos)
        produce(self.endpoints.kafka_bootstrap, f"{self.prefix}.source", stream)
        base = passthrough(self.endpoints.kafka_bootstrap, f"{self.prefix}.source", f"{self.prefix}.copy", count)
        self.workers.start(self.settings, self.worker_count, self.data, self.roles)
        before, cpu_before = self.workers.stage_seconds(), cpu_seconds(self._roles())
        started = time.monotonic()
        with RssTrace(self.workers) as rss:
            produce(self.endpoints.kafka_bootstrap, self.settings.invoices_topic, stream)
            rows_after, judged_after = wait_judged(self.engine, f"{self.prefix}-MP-%", count, timeout=3600,
                                                   started=started)
        stages = {key: seconds - before.get(key, 0.0) for key, seconds in self.workers.stage_seconds().items()}
        elapsed = time.monotonic() - started
        cpu = {role: seconds - cpu_before.get(role, 0.0) for role, seconds in cpu_seconds(self._roles()).items()}
        figures = {"pass-through msg/s": base, "rows/s": count / judged_after, "first rows/s": count / rows_after,
                   "elapsed s": elapsed, "rss MiB": self.workers.rss_mib()}
        self._print(count, figures, stages, cpu, rss)
        return figures

    def _roles(self) -> dict[int, str]:
        roles = {self.bot.pid: "stand-in RPA bot"}
        for worker in self.workers.processes:
            assert worker.process is not None
            roles[worker.process.pid] = "mail worker" if worker.role == "mail" else "worker"
        return roles

    def latency(self, rate: float, seconds: float, tag: str) -> tuple[float, float]:
        prefix = f"{self.prefix}{tag}"
        count = int(rate * seconds)
        settled = wait_entered(self.engine, f"{self.prefix}%", timeout=600)
        print(f"  (the bot entered what it had been sent before in {settled:.0f} s)")
        pos = purchase_orders(round(count / 1.5), prefix)
        self.sampro.load_purchase_orders(pos)
        sent_at = produce(self.endpoints.kafka_bootstrap, self.settings.invoices_topic,
                          invoices(count, pos, prefix), rate=rate)
        wait_judged(self.engine, f"{prefix}-MP-%", count, timeout=1800, rows_only=True)
        t = processscheduler
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.c.invoice_id, t.c.decided_at, t.c.created_at)
                                .where(t.c.invoice_id.like(f"{prefix}-MP-%"))).all()
        # created_at is stamped as the sink's batch begins its write: the write and its commit (the
        # "processscheduler write" stage, per invoice, in the throughput table) come after it.
        p50, p99 = percentiles([row.created_at.timestamp() - sent_at[row.invoice_id] for row in rows])
        # Of that, the verdict's way from the PO agent to processscheduler (verdicts topic, sink); a
        # row made by a status first (waiting_for_po: parked, not judged yet) has no verdict's time.
        sink50, sink99 = percentiles([(row.created_at - row.decided_at).total_seconds() for row in rows
                                      if row.decided_at is not None])
        print(f"  latency   produce -> processscheduler row (its write begun) at {rate:,.0f}/s for {seconds:.0f} s: "
              f"p50 {p50 * 1000:,.0f} ms, p99 {p99 * 1000:,.0f} ms  (target p99 < 1,000 ms); "
              f"of which decided -> row p50 {sink50 * 1000:,.0f} ms, p99 {sink99 * 1000:,.0f} ms")
        return p50, p99

    def _print(self, count: int, figures: dict[str, float], stages: dict[tuple[str, str], float],
               cpu: dict[str, float], rss: RssTrace) -> None:
        statuses = SqlProcessScheduler(self.engine).counts_by_status()
        base, rows = figures["pass-through msg/s"], figures["rows/s"]
        print(f"  baseline  pass-through of the same {count:,} messages: {base:>10,.0f} msg/s")
        workers = f"{self.worker_count} worker(s)" + (" + 1 mailing" if self.roles == "split" else "")
        print(f"  pipeline  every invoice judged, {workers}: {rows:>10,.0f} rows/s  "
              f"(first row of each: {figures['first rows/s']:,.0f}/s)  ratio {rows / base:.3f}  (target >= 0.25)")
        print(f"  statuses  {dict(sorted(statuses.items()))}")
        print(f"  memory    RSS of the {len(self.workers.processes)} worker process(es) together at the end: "
              f"{figures['rss MiB']:,.0f} MiB ({rss.summary()})")
        print("  where the worker's time goes, µs per invoice:")
        for key, label in STAGES.items():
            if key in stages:
                print(f"    {label:<42} {stages[key] / count * 1e6:>9,.0f}")
        print(f"    {'wall clock':<42} {figures['elapsed s'] / count * 1e6 * self.worker_count:>9,.0f}"
              f"  (elapsed x workers)")
        cores = os.cpu_count() or 1
        print(f"  machine   CPU per invoice, µs, of {cores * figures['elapsed s'] / count * 1e6:,.0f} "
              f"({cores} cores x elapsed): " + ", ".join(f"{role} {seconds / count * 1e6:,.0f}" for role, seconds
                                                       in sorted(cpu.items(), key=lambda item: -item[1])))


def run(args) -> None:
    stack = LocalStack(ROOT)
    fresh = stack.not_running(("postgres", "kafka"))
    endpoints = stack.up(("postgres", "kafka"))
    scale, chosen = args.scale, args.workload
    try:
        if chosen in ("all", "steady"):
            print(f"steady: {int(20_000 * scale):,} invoices, 1-2 per PO, the RPA bot entering")
            with Run("steady", endpoints, args.workers, args.roles, args.store) as steady:
                steady.throughput(int(20_000 * scale), per_po=1.5)
                for rate, seconds, tag in ((200, 30 * scale, "L"), (2_000, 10 * scale, "H")):
                    steady.latency(rate, seconds, tag)
        if chosen in ("all", "month-end"):
            print(f"month-end: a burst of {int(50_000 * scale):,} invoices uploaded at once, 1-2 per PO")
            with Run("month-end", endpoints, args.workers, args.roles, args.store) as month_end:
                month_end.throughput(int(50_000 * scale), per_po=1.5)
        if chosen in ("all", "busy-po"):
            print(f"busy-po: {int(1_000 * scale):,} invoices on 5 POs, judged one at a time per PO")
            with Run("busy-po", endpoints, args.workers, args.roles, args.store) as busy:
                busy.throughput(int(1_000 * scale), per_po=1_000 * scale / 5)
    finally:
        stack.down(fresh)
    print(f"run finished {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workload", choices=("all", "steady", "month-end", "busy-po"), default="all")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every workload's size")
    parser.add_argument("--workers", type=int, default=1, help="worker processes sharing the partitions")
    parser.add_argument("--roles", choices=("split", "all"), default="split",
                        help="split: the workers decide and one more sends the RPA emails (worker --role); "
                             "all: each worker does everything on one thread")
    parser.add_argument("--store", choices=("memory://", "rocksdb://"), default="memory://",
                        help="where the workers keep the ledgers (STORE): rocksdb:// keeps them on disk, so "
                             "the RSS of a long run shows what else grows")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
