"""Reading the pipeline's topics for audit, outside the pipeline: no consumer group, no commits.

The reader only ever `assign`s partitions and never commits, so it cannot move the live
workers' offsets or show up as a member of their group. Time ranges become offsets per
partition through the broker's timestamp index (`offsets_for_times`).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from connectors.api_ports import OffsetRanges, TopicNotFound, TopicReader, TopicRecord
from connectors.kafka_clients import KafkaCluster, client_config, kafka_down

if TYPE_CHECKING:
    from confluent_kafka._types import HeadersType

METADATA_TIMEOUT = 10.0  # how long the first question waits for a broker before Kafka counts as down


class KafkaTopicReader(TopicReader):
    def __init__(self, bootstrap_servers: KafkaCluster | str, timeout: float = 30.0):
        self.bootstrap_servers, self.timeout = bootstrap_servers, timeout

    def _consumer(self) -> Consumer:
        # librdkafka wants a group id even for assign(); this one never joins nor commits.
        return Consumer(client_config(
            self.bootstrap_servers, "audit", **{
                "group.id": f"audit-reader-{uuid.uuid4().hex}", "enable.auto.commit": False,
                "enable.auto.offset.store": False, "auto.offset.reset": "earliest", "enable.partition.eof": True,
                "fetch.min.bytes": 1 << 16, "fetch.wait.max.ms": 50}))

    def ranges(self, topic: str, since_ms: int | None = None,
               until_ms: int | None = None) -> dict[int, tuple[int, int]]:
        consumer = self._consumer()
        try:
            marks = self._watermarks(consumer, topic)
            partitions = sorted(marks)
            starts = self._offsets_at(consumer, topic, partitions, since_ms, marks, low=True)
            ends = self._offsets_at(consumer, topic, partitions, until_ms, marks, low=False)
            return {p: (starts[p], max(starts[p], ends[p])) for p in partitions}
        except KafkaException as exc:
            raise kafka_down(self.bootstrap_servers, f"reading the offsets of {topic}", exc.args[0], consumer) from None
        finally:
            consumer.close()

    def log_starts(self, topic: str) -> dict[int, int]:
        consumer = self._consumer()
        try:
            # The low watermark: the log start offset, which retention moves on as it deletes.
            return {p: low for p, (low, _) in self._watermarks(consumer, topic).items()}
        except KafkaException as exc:
            raise kafka_down(self.bootstrap_servers, f"reading the offsets of {topic}", exc.args[0], consumer) from None
        finally:
            consumer.close()

    def _watermarks(self, consumer: Consumer, topic: str) -> dict[int, tuple[int, int]]:
        """Per partition, its first offset still held and the offset after its last."""
        metadata = consumer.list_topics(topic, timeout=min(self.timeout, METADATA_TIMEOUT)).topics.get(topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            raise TopicNotFound(f"topic {topic!r} does not exist on {self.bootstrap_servers}")
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=self.timeout)
                for p in sorted(metadata.partitions)}

    def _offsets_at(self, consumer: Consumer, topic: str, partitions: list[int], at_ms: int | None,
                    marks: dict[int, tuple[int, int]], low: bool) -> dict[int, int]:
        if at_ms is None:
            return {p: marks[p][0 if low else 1] for p in partitions}
        found = consumer.offsets_for_times([TopicPartition(topic, p, at_ms) for p in partitions], timeout=self.timeout)
        # -1: no record at or after the time, so the range ends at the partition's end.
        return {tp.partition: tp.offset if tp.offset >= 0 else marks[tp.partition][1] for tp in found}

    def read(self, topic: str, ranges: OffsetRanges) -> Iterator[TopicRecord]:
        pending = {p: end for p, (start, end) in ranges.items() if end > start}
        if not pending:
            return
        consumer = self._consumer()
        following = {p: ranges[p][0] for p in pending}  # the next offset wanted from each partition
        try:
            consumer.assign([TopicPartition(topic, p, ranges[p][0]) for p in pending])
            heard, broken = time.monotonic(), None
            while pending:
                # consume() waits for its count or the timeout: never ask for more than is left.
                left = sum(end - following[p] for p, end in pending.items())
                for message in consumer.consume(max(1, min(1000, left)), timeout=1.0):
                    partition = message.partition()
                    error = message.error()
                    if partition not in pending:
                        broken = error if error is not None and partition is None else broken
                        continue
                    heard = time.monotonic()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            pending.pop(partition)  # the end moved back (retention) or was reached
                            continue
                        if error.code() in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE):
                            raise kafka_down(self.bootstrap_servers, f"reading {topic}[{partition}]", error)
                        raise RuntimeError(f"reading {topic}[{partition}]: {error.str()}")
                    offset = message.offset()
                    if offset is None:  # librdkafka sets it on every message that is not an error
                        raise RuntimeError(f"reading {topic}[{partition}]: a message without an offset")
                    if offset >= pending[partition]:
                        pending.pop(partition)
                        continue
                    following[partition] = offset + 1
                    yield TopicRecord(topic, partition, offset, message.timestamp()[1], message.key(), message.value(),
                                      _headers(message.headers()))
                    heard = time.monotonic()  # the caller's time with the record is no silence of Kafka's
                    if offset + 1 >= pending[partition]:
                        pending.pop(partition)
                if pending and time.monotonic() - heard > self.timeout:
                    # Brokers away say so in errors of no partition, and librdkafka reconnects by
                    # itself: a read that hears nothing of its partitions for `timeout` ends, rather
                    # than wait for good.
                    raise kafka_down(self.bootstrap_servers, f"reading {topic}: nothing for {self.timeout:.0f} s",
                                     broken or "no broker answered")
        finally:
            consumer.close()


def _headers(headers: HeadersType | None) -> tuple[tuple[str, bytes], ...]:
    """As the runtime writes them: a consumed record's headers are a list of (name, bytes or None)."""
    pairs = headers.items() if isinstance(headers, dict) else headers or ()
    return tuple((name, text.encode() if isinstance(text, str) else text or b"") for name, text in pairs)


@dataclass
class InMemoryTopicReader(TopicReader):
    """Topics as lists of records per partition, for unit tests of what reads them."""

    topics: dict[str, dict[int, list[TopicRecord]]] = field(default_factory=dict)
    deleted_before: dict[str, dict[int, int]] = field(default_factory=dict)  # topic -> partition -> its log start

    def delete_records(self, topic: str, partition: int, before: int) -> None:
        """As retention (or Kafka's DeleteRecords) does: the records before `before` are gone, the
        others keep their offsets."""
        self.deleted_before.setdefault(topic, {})[partition] = before

    def log_starts(self, topic: str) -> dict[int, int]:
        if topic not in self.topics:
            raise TopicNotFound(f"topic {topic!r} does not exist")
        return {p: self.deleted_before.get(topic, {}).get(p, 0) for p in self.topics[topic]}

    def append(self, topic: str, partition: int, timestamp_ms: int, key: bytes | None, value: bytes | None,
               headers: tuple[tuple[str, bytes], ...] = ()) -> None:
        log = self.topics.setdefault(topic, {}).setdefault(partition, [])
        log.append(TopicRecord(topic, partition, len(log), timestamp_ms, key, value, headers))

    def ranges(self, topic: str, since_ms: int | None = None,
               until_ms: int | None = None) -> dict[int, tuple[int, int]]:
        def first_at(kept: list[TopicRecord], at_ms: int | None, default: int, end: int) -> int:
            if at_ms is None:
                return default
            return next((r.offset for r in kept if r.timestamp_ms >= at_ms), end)

        out = {}
        for p, log_start in self.log_starts(topic).items():
            log = self.topics[topic][p]
            kept = log[log_start:]
            start, end = first_at(kept, since_ms, log_start, len(log)), first_at(kept, until_ms, len(log), len(log))
            out[p] = (start, max(start, end))
        return out

    def read(self, topic: str, ranges: OffsetRanges) -> Iterator[TopicRecord]:
        for p, (start, end) in sorted(ranges.items()):
            log_start = self.deleted_before.get(topic, {}).get(p, 0)
            yield from self.topics.get(topic, {}).get(p, [])[max(start, log_start):end]
