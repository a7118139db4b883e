"""Pipeline throughput and latency, beside a plain Kafka pass-through on the same broker in the same run.

1. Baseline: confluent-kafka consumes the invoices topic and produces every message to another
   topic (no decoding, no rules, no database): messages per second.
2. Throughput: N invoices of 5 lines over P POs are produced to the invoices topic; the worker
   decides them and commits rows into processscheduler (PostgreSQL): rows per second.
3. Latency: invoices offered at a fixed rate; produce time to processscheduler row (created_at).

Usage: python bench/pipeline_bench.py [--invoices 50000] [--pos 2000] [--rate 200] [--seconds 30] [--workers 1]
Starts the local stack (PostgreSQL, Kafka) if it is not up, and then stops it at the end.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from confluent_kafka import Consumer, Producer  # noqa: E402
from sqlalchemy import create_engine, func, select, text  # noqa: E402

from connectors.sampro.standin import SamproStandIn  # noqa: E402
from connectors.scheduler import SqlProcessScheduler, upgrade  # noqa: E402
from connectors.scheduler.tables import processscheduler  # noqa: E402
from devstack import LocalStack  # noqa: E402
from devstack.demo import _settings_env  # noqa: E402
from devstack.mailbox import SmtpServer  # noqa: E402
from devstack.worker import WorkerProcess  # noqa: E402
from devstack.workload import invoices, purchase_orders  # noqa: E402
from schemas.codec import SingleObjectCodec  # noqa: E402
from streams.settings import Settings  # noqa: E402
from streams.topics import ensure_topics  # noqa: E402


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


def wait_rows(engine, count: int, timeout: float) -> float:
    started, deadline = time.monotonic(), time.monotonic() + timeout
    with engine.connect() as conn:
        while time.monotonic() < deadline:
            if conn.execute(select(func.count()).select_from(processscheduler)).scalar() >= count:
                return time.monotonic() - started
            conn.commit()
            time.sleep(0.2)
    raise TimeoutError(f"fewer than {count} rows after {timeout:.0f} s")


def run(args) -> None:
    stack = LocalStack(ROOT)
    was_up = all(stack.status()[name]["running"] for name in ("postgres", "kafka"))
    endpoints = stack.up(("postgres", "kafka"))
    prefix = f"bench{uuid.uuid4().hex[:6]}"
    data = Path(tempfile.mkdtemp(prefix="ia-bench-"))
    schema = prefix
    for url in (endpoints.sampro_db_url, endpoints.scheduler_db_url):
        with create_engine(url).begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))

    def in_schema(url: str) -> str:
        return f"{url}?options=-csearch_path%3D{schema}"

    with SmtpServer() as mailbox:
        settings = Settings(
            kafka_bootstrap_servers=endpoints.kafka_bootstrap, app_id=prefix, data_dir=data,
            marketplace_source="debezium", invoices_topic=f"{prefix}.invoices",
            completions_topic=f"{prefix}.completions", commands_topic=f"{prefix}.commands",
            verdicts_topic=f"{prefix}.verdicts", rpa_requests_topic=f"{prefix}.rpa", dlq_topic=f"{prefix}.dlq",
            marketplace_topic=f"{prefix}.marketplace", sampro_db_url=in_schema(endpoints.sampro_db_url),
            scheduler_db_url=in_schema(endpoints.scheduler_db_url), smtp_port=mailbox.port,
        )
        ensure_topics(settings)
        pos = purchase_orders(args.pos, prefix)
        stream = invoices(args.invoices, pos, prefix)
        sampro = SamproStandIn(create_engine(settings.sampro_db_url))
        sampro.create_schema()
        sampro.load_purchase_orders(pos)
        engine = create_engine(settings.scheduler_db_url)
        upgrade(engine)

        print(f"producing {args.invoices:,} invoices of 5 lines over {args.pos:,} POs ...")
        produce(endpoints.kafka_bootstrap, settings.invoices_topic, stream)
        base = passthrough(endpoints.kafka_bootstrap, settings.invoices_topic, f"{prefix}.copy", args.invoices)
        print(f"baseline  confluent-kafka consume->produce pass-through: {base:>10,.0f} msg/s")

        workers = [WorkerProcess(_settings_env(settings), data / f"worker-{n}.log").start()
                   for n in range(args.workers)]
        try:
            elapsed = wait_rows(engine, args.invoices, timeout=1800)
            pipeline = args.invoices / elapsed
            statuses = SqlProcessScheduler(engine).counts_by_status()
            print(f"pipeline  invoices decided and committed into processscheduler by {args.workers} worker(s): "
                  f"{pipeline:>10,.0f} rows/s (incl. worker start-up) {statuses}")
            print(f"ratio     pipeline / pass-through: {pipeline / base:.2f}  (target >= 0.25)")

            latency_stream = invoices(int(args.rate * args.seconds), purchase_orders(args.pos, prefix + "L"),
                                      prefix + "L")
            sampro.load_purchase_orders(purchase_orders(args.pos, prefix + "L"))
            print(f"offering {args.rate:.0f} invoices/s for {args.seconds} s ...")
            sent_at = produce(endpoints.kafka_bootstrap, settings.invoices_topic, latency_stream, rate=args.rate)
            wait_rows(engine, args.invoices + len(latency_stream), timeout=600)
            with engine.connect() as conn:
                rows = conn.execute(select(processscheduler.c.invoice_id, processscheduler.c.created_at)
                                    .where(processscheduler.c.invoice_id.like(f"{prefix}L-%"))).all()
            latencies = sorted(max(0.0, row.created_at.astimezone(UTC).timestamp() - sent_at[row.invoice_id])
                               for row in rows)
            p50 = statistics.median(latencies)
            p99 = latencies[int(len(latencies) * 0.99) - 1]
            print(f"latency   produce -> processscheduler row at {args.rate:.0f}/s: p50 {p50 * 1000:,.0f} ms, "
                  f"p99 {p99 * 1000:,.0f} ms  (target p99 < 1000 ms)")
        finally:
            for worker in workers:
                worker.stop()
            for url in (endpoints.sampro_db_url, endpoints.scheduler_db_url):
                with create_engine(url).begin() as conn:
                    conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            if not was_up:
                stack.down()
    print(f"run finished {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--invoices", type=int, default=50_000)
    parser.add_argument("--pos", type=int, default=2_000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--workers", type=int, default=1, help="worker processes sharing the partitions")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
