"""How far the pipeline's consumer groups are behind their topics: messages, and the age of the oldest
message it has not processed yet (0 when caught up), which is how long new work waits."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from connectors.api_ports import PartitionLag, PipelineLag
from connectors.kafka_clients import KafkaCluster, client_config

if TYPE_CHECKING:
    from confluent_kafka import TopicPartition as KafkaTopicPartition


class InMemoryPipelineLag(PipelineLag):
    """A log of message timestamps per partition and a group's committed offsets, for unit tests."""

    def __init__(self) -> None:
        self.logs: dict[tuple[str, int], list[datetime]] = {}
        self.committed: dict[tuple[str, int], int] = {}

    def append(self, topic: str, partition: int, timestamps: Iterable[datetime]) -> None:
        self.logs.setdefault((topic, partition), []).extend(timestamps)

    def commit(self, topic: str, partition: int, offset: int) -> None:
        self.committed[(topic, partition)] = offset

    def lag(self) -> list[PartitionLag]:
        found = []
        for (topic, partition), offset in sorted(self.committed.items()):
            log = self.logs.get((topic, partition), [])
            found.append(PartitionLag(topic, partition, offset, len(log), log[offset] if offset < len(log) else None))
        return found


class KafkaPipelineLag(PipelineLag):
    """Committed offsets from the AdminClient, end offsets from the broker, and one read per
    lagging partition for the timestamp of its oldest pending message."""

    def __init__(self, bootstrap_servers: KafkaCluster | str, group_id: str, timeout: float = 5.0,
                 read_elsewhere: Mapping[str, str] | None = None):
        """`read_elsewhere`: topic -> the group that reads it instead of `group_id` (the RPA mailbox's)."""
        self.bootstrap, self.group_id, self.timeout = bootstrap_servers, group_id, timeout
        self.read_elsewhere = dict(read_elsewhere or {})

    def lag(self) -> list[PartitionLag]:
        from confluent_kafka import ConsumerGroupTopicPartitions
        from confluent_kafka.admin import AdminClient, OffsetSpec

        admin = AdminClient(client_config(self.bootstrap, "admin"))
        committed = []
        for group_id in sorted({self.group_id, *self.read_elsewhere.values()}):
            request = [ConsumerGroupTopicPartitions(group_id)]
            group = admin.list_consumer_group_offsets(request, request_timeout=self.timeout)[group_id]
            # A group's offsets on a topic another group reads now are left from before: not lag.
            committed += [tp for tp in group.result().topic_partitions
                          if tp.offset >= 0 and self.read_elsewhere.get(tp.topic, self.group_id) == group_id]
        if not committed:
            return []
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]  # unannotated in confluent-kafka (one shared spec)
        ends = admin.list_offsets({_tp(tp): latest for tp in committed}, request_timeout=self.timeout)
        end_of = {(tp.topic, tp.partition): future.result().offset for tp, future in ends.items()}
        lagging = [tp for tp in committed if end_of[(tp.topic, tp.partition)] > tp.offset]
        oldest, caught_up = self._timestamps(lagging, end_of)
        for tp in lagging:  # what lies past a caught-up partition's committed offset is markers, or aborted
            if (tp.topic, tp.partition) in caught_up:
                end_of[(tp.topic, tp.partition)] = tp.offset
        return sorted(
            (PartitionLag(tp.topic, tp.partition, tp.offset, end_of[(tp.topic, tp.partition)],
                          oldest.get((tp.topic, tp.partition))) for tp in committed),
            key=lambda lag: (lag.topic, lag.partition))

    def _timestamps(self, partitions: list[KafkaTopicPartition], end_of: dict[tuple[str, int], int]
                    ) -> tuple[dict[tuple[str, int], datetime], set[tuple[str, int]]]:
        """The timestamp of each partition's first pending message; and the partitions that have
        none: the worker commits past its last record, and a transaction's commit marker after it
        counted as one message pending on every partition, the probe waiting its whole timeout for
        it at every look. A partition is caught up only where its end was reached: a committed
        reader's end stops at a transaction still open (the last stable offset), which is where a
        stuck worker waits."""
        if not partitions:
            return {}, set()
        from confluent_kafka import Consumer, KafkaError

        # A group of its own that never commits, so the pipeline's offsets are only read; it reads
        # committed records only (librdkafka's default), as the worker does.
        consumer = Consumer(client_config(self.bootstrap, "lag-probe", **{
            "group.id": f"{self.group_id}.lag-probe", "enable.auto.commit": False, "enable.partition.eof": True}))
        found: dict[tuple[str, int], datetime] = {}
        caught_up: set[tuple[str, int]] = set()
        deadline = time.monotonic() + self.timeout
        try:
            consumer.assign([_tp(tp, tp.offset) for tp in partitions])
            while len(found) + len(caught_up) < len(partitions) and time.monotonic() < deadline:
                for message in consumer.consume(500, timeout=0.2):
                    topic, partition = message.topic(), message.partition()
                    if topic is None or partition is None:  # an error event: no message of a partition
                        continue
                    key, error = (topic, partition), message.error()
                    if key in found or key in caught_up:
                        continue
                    if error is None:
                        found[key] = datetime.fromtimestamp(message.timestamp()[1] / 1000, UTC)
                    elif error.code() == KafkaError._PARTITION_EOF and (message.offset() or -1) >= end_of[key]:
                        caught_up.add(key)
        finally:
            consumer.close()
        return found, caught_up


def _tp(tp: KafkaTopicPartition, offset: int | None = None) -> KafkaTopicPartition:
    from confluent_kafka import TopicPartition

    return TopicPartition(tp.topic, tp.partition) if offset is None else TopicPartition(tp.topic, tp.partition, offset)
