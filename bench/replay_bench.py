"""Replay speed beside a bare read of the same topic, with the same client, in the same run.

1. 100,000 recorded verdicts (the devstack workload, every invoice judged and entered, with the
   status changes between them, as the verdicts topic holds them) are produced to a topic.
2. Baseline: confluent-kafka reads the whole topic and does nothing with it (records/s).
3. Decode only, one process: the same reader, and every verdict decoded as the replay decodes
   it, none judged: the ceiling a replay on one process reaches while judging costs what it does.
4. Replay: the same reader, and every verdict decoded and judged again with the rules
   (verdicts/s), one process per core; and on one process for reference.

Usage: python bench/replay_bench.py [--verdicts 100000]
Starts Kafka from the local stack if it is not up, and then stops it at the end.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from audit.replay import Selection, recorded_message, replay  # noqa: E402
from connectors.topic_reader import KafkaTopicReader  # noqa: E402
from devstack import LocalStack  # noqa: E402
from devstack.workload import decided, invoices, purchase_orders  # noqa: E402
from rules.models import Verdict  # noqa: E402
from rules.policy import Policy  # noqa: E402
from schemas.codec import SingleObjectCodec  # noqa: E402


def record(bootstrap: str, topic: str, count: int) -> int:
    pos = purchase_orders(max(1, count // 25), "RB")
    messages = decided(pos, invoices(count, pos, "RB"))
    codec = SingleObjectCodec()
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random", "linger.ms": 20,
                         "queue.buffering.max.messages": 1_000_000})
    for message in messages:
        producer.produce(topic, key=message.po_number.encode(), value=codec.encode(message))
        producer.poll(0)
    producer.flush(120)
    return len(messages)


def bare_read(reader: KafkaTopicReader, topic: str) -> tuple[int, float]:
    started = time.perf_counter()
    count = sum(1 for _ in reader.read(topic, reader.ranges(topic)))
    return count, time.perf_counter() - started


def decode_only(reader: KafkaTopicReader, topic: str) -> tuple[int, float]:
    """Reads and decodes each verdict as the replay does (status changes skipped by their header), judging none."""
    codec = SingleObjectCodec()
    started = time.perf_counter()
    count = sum(1 for r in reader.read(topic, reader.ranges(topic))
                if codec.kind(r.value or b"") is Verdict and recorded_message(codec, r.value or b""))
    return count, time.perf_counter() - started


def run(args) -> None:
    stack = LocalStack(ROOT)
    fresh = stack.not_running(("kafka",))
    bootstrap = stack.up(("kafka",)).kafka_bootstrap
    topic = f"bench-verdicts-{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 6, 1)])[topic].result()
    try:
        print(f"recording {args.verdicts:,} verdicts (and their status changes) ...")
        total = record(bootstrap, topic, args.verdicts)
        reader = KafkaTopicReader(bootstrap)
        bare_read(reader, topic)  # warm the page cache and the broker
        count, seconds = bare_read(reader, topic)
        print(f"baseline  bare read of the topic (confluent-kafka):     {count / seconds:>10,.0f} records/s "
              f"({count:,} records in {seconds:.2f} s)")
        verdicts, seconds = decode_only(reader, topic)
        print(f"ceiling   read + decode, no judging, 1 process: {verdicts / seconds:>10,.0f} verdicts/s "
              f"({count / seconds:,.0f} records/s)")
        results = {}
        for workers in (1, args.workers):
            started = time.perf_counter()
            # As the command runs it without --format: counts kept, no verdict crosses back from a process.
            report = replay(reader, topic, Selection(), Policy(), workers=workers, keep_items=False)
            seconds = time.perf_counter() - started
            results[workers] = (report.judged, seconds, report.changed)
            print(f"replay    {workers} process(es): {report.judged / seconds:>10,.0f} verdicts/s judged again "
                  f"({report.records_read / seconds:,.0f} records/s; "
                  f"{report.judged:,} verdicts in {seconds:.2f} s, "
                  f"{report.changed} changed)")
        verdicts, seconds, _ = results[args.workers]
        bare = count / bare_read(reader, topic)[1]
        ratio, rate = total / seconds / bare, verdicts / seconds
        print(f"ratio     replay records/s / bare read records/s: {ratio:.2f}  (target >= 0.33: "
              f"{'met' if ratio >= 1 / 3 else 'NOT met'}; >= 10,000 verdicts/s: "
              f"{'met' if rate >= 10_000 else 'NOT met'})")
    finally:
        admin.delete_topics([topic])
        stack.down(fresh)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--verdicts", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    run(parser.parse_args())


if __name__ == "__main__":
    main()
