"""The broker is real: the project's client talks to it, and per-key order holds."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])[name].result(timeout=30)


def consume_all(bootstrap: str, topic: str, expected: int, timeout: float = 30) -> list:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{topic}", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    messages = []
    try:
        for _ in range(int(timeout * 10)):
            for message in consumer.consume(500, timeout=0.1):
                assert message.error() is None, message.error()
                messages.append(message)
            if len(messages) >= expected:
                break
    finally:
        consumer.close()
    return messages


def test_confluent_kafka_produces_and_consumes(kafka_bootstrap, unique_name):
    create_topic(kafka_bootstrap, unique_name, 1)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(10):
        producer.produce(unique_name, key=b"PO-1", value=f"invoice-{i}".encode())
    assert producer.flush(30) == 0
    values = [m.value().decode() for m in consume_all(kafka_bootstrap, unique_name, 10)]
    assert values == [f"invoice-{i}" for i in range(10)]


def test_several_partitions_keep_order_per_key(kafka_bootstrap, unique_name):
    create_topic(kafka_bootstrap, unique_name, 6)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "partitioner": "murmur2_random", "linger.ms": 5})
    keys = [f"PO-{n}" for n in range(40)]
    sequence = [key for key in keys for _ in range(25)]
    random.Random(7).shuffle(sequence)
    sent: dict[str, list[int]] = {key: [] for key in keys}
    for key in sequence:
        sent[key].append(len(sent[key]))
        producer.produce(unique_name, key=key.encode(), value=str(sent[key][-1]).encode())
    assert producer.flush(30) == 0
    messages = consume_all(kafka_bootstrap, unique_name, len(sequence))
    received: dict[str, list[int]] = {key: [] for key in keys}
    partitions: dict[str, set[int]] = {key: set() for key in keys}
    for message in messages:
        key = message.key().decode()
        received[key].append(int(message.value()))
        partitions[key].add(message.partition())
    assert received == sent
    assert all(len(p) == 1 for p in partitions.values())
    assert len(set().union(*partitions.values())) > 1  # the keys really were spread


def test_the_stream_broker_counts_the_records_behind_its_position_without_asking_the_broker(
        kafka_bootstrap, unique_name):
    """What back-pressure reads (streams/back_pressure.py): the last fetch's end less the position."""
    from streams.broker import KafkaStreamBroker

    create_topic(kafka_bootstrap, unique_name, 2)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(30):
        producer.produce(unique_name, key=f"PO-{i}".encode(), value=b"verdict", partition=i % 2)
    assert producer.flush(30) == 0
    broker = KafkaStreamBroker(kafka_bootstrap, f"g-{unique_name}")
    partitions = [(unique_name, 0), (unique_name, 1)]
    try:
        broker.subscribe([unique_name], lambda assigned: set(), lambda revoked: None)
        read = []
        for _ in range(100):
            read += broker.poll(10, 0.2)
            if len(read) >= 10:
                break
        assert 10 <= len(read) < 30
        # 15 records a partition; one not read from yet has no position, and counts as nothing
        # behind (never a stall on a partition that has nothing new).
        read_from = Counter(record.partition for record in read)
        assert broker.behind(partitions) == sum(15 - count for count in read_from.values())
        while len(read) < 30:
            read += broker.poll(30, 0.2)
        assert broker.behind(partitions) == 0
    finally:
        broker.close()


def test_the_stream_broker_waits_its_linger_for_a_fuller_batch_once_a_record_has_arrived(
        kafka_bootstrap, unique_name):
    """BATCH_LINGER_SECONDS: a batch is one transaction, so once a record is there the poll waits
    a little for more instead of committing a batch of one; it stops waiting once the batch is full."""
    from streams.broker import KafkaStreamBroker

    create_topic(kafka_bootstrap, unique_name, 1)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 0})
    broker = KafkaStreamBroker(kafka_bootstrap, f"g-{unique_name}", linger=10.0)
    try:
        broker.subscribe([unique_name], lambda assigned: set(), lambda revoked: None)
        producer.produce(unique_name, value=b"first")
        producer.flush(30)
        assert [record.value for record in broker.poll(1, 30)] == [b"first"]  # joined and fetching
        producer.produce(unique_name, value=b"0")
        producer.flush(30)

        def three_more() -> None:
            for i in range(1, 4):
                producer.produce(unique_name, value=str(i).encode())
            producer.flush(30)

        later = threading.Timer(0.5, three_more)
        later.start()
        started = time.monotonic()
        batch = broker.poll(4, 30)
        assert [record.value for record in batch] == [b"0", b"1", b"2", b"3"]
        assert time.monotonic() - started < 9  # full at four: the rest of the linger is not waited out
        later.join()
    finally:
        broker.close()


def _rss() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmRSS:"))


def test_the_stream_broker_fetches_a_backlog_ahead_only_as_far_as_its_prefetch_bound(kafka_bootstrap, unique_name):
    """A month-end burst is a backlog: librdkafka's default fetched 64 MiB of it ahead of the
    worker, which stayed in its RSS (80-90 MiB more here, against about 20 with the bound).
    librdkafka's statistics cannot say it: they queue behind the records fetched."""
    from streams.broker import PREFETCH_KBYTES, KafkaStreamBroker

    create_topic(kafka_bootstrap, unique_name, 4)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 20})
    for i in range(60_000):  # 84 MB of invoice-sized records
        producer.produce(unique_name, key=str(i).encode(), value=bytes(1_400))
        producer.poll(0)
    assert producer.flush(60) == 0
    del producer
    broker = KafkaStreamBroker(kafka_bootstrap, f"g-{unique_name}")
    before = _rss()
    try:
        broker.subscribe([unique_name], lambda assigned: set(), lambda revoked: None)
        taken = len(broker.poll(1, 30))  # joined and fetching
        for _ in range(40):  # 8 s of a worker that takes a record now and then
            taken += len(broker.poll(1, 0))
            time.sleep(0.2)
        grew = _rss() - before
    finally:
        broker.close()
    # The bound (16 MiB), a fetch of each partition past it (librdkafka allows that), and room for
    # the rest: 21 MiB here, 84 without the bound.
    assert PREFETCH_KBYTES <= 16 * 1024 and taken == 41 and grew < 48 << 20, grew >> 20


def test_restoring_a_changelog_partition_that_does_not_exist_says_so_at_once(kafka_bootstrap, unique_name):
    """Partitions added to the work topics while the pipeline runs, not to the changelog: the
    restore waited out its timeout, then called Kafka unavailable, again and again."""
    import pytest

    from rules.errors import Unavailable
    from streams.broker import KafkaStreamBroker

    create_topic(kafka_bootstrap, unique_name, 2)
    broker = KafkaStreamBroker(kafka_bootstrap, f"g-{unique_name}", timeout=20)
    started = time.monotonic()
    try:
        with pytest.raises(Unavailable) as raised:
            list(broker.restore(unique_name, {1: None, 2: None}, []))
    finally:
        broker.close()
    assert raised.value.dependency == "topic-partitions"
    assert f"{unique_name} [2]: desired partition is not available" in str(raised.value)
    assert time.monotonic() - started < 15  # not the restore's timeout of no progress


def test_a_restore_from_a_position_its_changelog_lacks_says_so_and_one_within_reads_on(kafka_bootstrap, unique_name):
    """A store kept from another pipeline's changelog (or from before Kafka was made anew) read on
    from its position: librdkafka's earliest reset laid this changelog's records over its data. Here
    the broker is asked which cluster holds the topic, as the store notes it beside its position."""
    import pytest

    from streams.broker import KafkaStreamBroker, StartOutOfRange

    create_topic(kafka_bootstrap, unique_name, 1)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(3):
        producer.produce(unique_name, key=f"PO-{i}".encode(), value=b"ledger")
    assert producer.flush(30) == 0
    broker = KafkaStreamBroker(kafka_bootstrap, f"g-{unique_name}", timeout=20)
    try:
        cluster = broker.cluster_of(unique_name)
        assert cluster and cluster != "None" and broker.cluster_of(unique_name) == cluster
        assert [offset for _, offset, _, _ in broker.restore(unique_name, {0: 1}, [])] == [1, 2]
        with pytest.raises(StartOutOfRange) as raised:
            list(broker.restore(unique_name, {0: 50}, []))
    finally:
        broker.close()
    assert raised.value.partition == 0 and f"{unique_name} [0] at offset 50" in str(raised.value)


def test_the_stream_broker_places_a_key_where_the_producers_put_it(kafka_bootstrap, unique_name):
    """What the runtime checks a stateful flow's records by (a record elsewhere is forwarded): the
    partition librdkafka's murmur2 partitioner, as Java's default, gave each key."""
    import pytest

    from rules.errors import Unavailable
    from streams.broker import KafkaStreamBroker

    create_topic(kafka_bootstrap, unique_name, 7)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "partitioner": "murmur2_random"})
    keys = [f"PO-{n}".encode() for n in range(200)] + ["PO-ä-ß".encode(), b"x" * 64]
    for key in keys:
        producer.produce(unique_name, key=key, value=b"work")
    assert producer.flush(30) == 0
    placed = {message.key(): message.partition() for message in consume_all(kafka_bootstrap, unique_name, len(keys))}
    broker = KafkaStreamBroker(kafka_bootstrap, f"g-{unique_name}")
    try:
        assert {key: broker.partition_for(unique_name, key) for key in keys} == placed
        assert len(set(placed.values())) == 7
        with pytest.raises(Unavailable, match="reading the partitions of"):  # the record waits, unchecked never
            broker.partition_for(f"{unique_name}-none", b"PO-1")
    finally:
        broker.close()


def _at_the_edge(make, fits: bool) -> bytes:
    """The longest value `make(length)` the worker's size check takes, or the shortest it refuses."""
    from streams.record_size import MAX_RECORD_BYTES, too_large

    low, high = 1, MAX_RECORD_BYTES  # taken at `low`, refused at `high`
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if too_large(make(middle)) is None else (low, middle)
    return make(low if fits else high)


def test_a_record_the_worker_takes_once_compressed_the_broker_takes(
        kafka_bootstrap, unique_name):
    """streams.record_size measures with zstd, as the producer sends, whether a record gets under
    the broker's 1 MiB: at the very edge of what it takes, for text that compresses little and
    much, the transaction commits. A record that does not compress is refused by the check, as
    the broker refuses it."""
    import pytest

    from streams.broker import KafkaStreamBroker, LostBatch, Output
    from streams.record_size import KAFKA_TAKES, too_large

    create_topic(kafka_bootstrap, unique_name, 1)
    noise = random.Random(11).randbytes(8_000_000)
    makers = {
        "random bytes, a tenth repeated": lambda n: bytes(b if i % 10 else 0 for i, b in enumerate(noise[:n])),
        "hex part numbers": lambda n: noise[: (n + 1) // 2].hex().encode()[:n],
        "random letters": lambda n: bytes(65 + b % 52 for b in noise[:n]),
        # Repeats too short for zstd's fast levels, not for DEFLATE's: zlib, once the measure here,
        # made 0.98 MB of 2.5 MB that zstd made 1.24 MB of.
        "4-byte tokens": lambda n: b"".join(noise[4 * (b % 256): 4 * (b % 256) + 4] for b in noise[:(n + 3) // 4])[:n],
    }
    taken = {name: _at_the_edge(make, fits=True) for name, make in makers.items()}
    assert all(len(value) > KAFKA_TAKES for value in taken.values())  # each is taken compressed only
    broker = KafkaStreamBroker(kafka_bootstrap, f"g-{unique_name}")
    try:
        broker.begin()
        for value in taken.values():
            broker.produce(Output(unique_name, b"PO-1", value))
        broker.commit({})
        assert [m.value() for m in consume_all(kafka_bootstrap, unique_name, 4)] == list(taken.values())
        # What compresses no further: the check refuses it, and so would the broker, for the whole batch.
        incompressible = noise[:1_100_000]
        assert too_large(incompressible) is not None
        broker.begin()
        broker.produce(Output(unique_name, b"PO-1", incompressible))
        with pytest.raises(LostBatch, match="too large"):
            broker.commit({})
    finally:
        broker.close()
