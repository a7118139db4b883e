"""How far the pipeline's consumer groups are behind their topics: messages, and the age of the oldest
message it has not processed yet (0 when caught up), which is how long new work waits. A partition a
group should read and has committed nothing on (a `--role mail` worker never started, offsets
expired after the group stopped for longer than Kafka keeps them, a partition no worker got to yet)
has everything its log keeps pending: the workers start such a partition at its beginning."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from connectors.api_ports import PartitionLag, PipelineLag
from connectors.kafka_clients import KafkaCluster, client_config

if TYPE_CHECKING:
    from confluent_kafka import TopicPartition as KafkaTopicPartition
    from confluent_kafka.admin import AdminClient, OffsetSpec


class InMemoryPipelineLag(PipelineLag):
    """A log of message timestamps per partition and a group's committed offsets, for unit tests.
    Every partition with a log is one the group should read."""

    def __init__(self) -> None:
        self.logs: dict[tuple[str, int], list[datetime]] = {}
        self.committed: dict[tuple[str, int], int] = {}
        self.log_starts: dict[tuple[str, int], int] = {}

    def append(self, topic: str, partition: int, timestamps: Iterable[datetime]) -> None:
        self.logs.setdefault((topic, partition), []).extend(timestamps)

    def commit(self, topic: str, partition: int, offset: int) -> None:
        self.committed[(topic, partition)] = offset

    def delete_records(self, topic: str, partition: int, before: int) -> None:
        """As retention does: the log starts at `before` from now on."""
        self.log_starts[(topic, partition)] = before

    def lag(self) -> list[PartitionLag]:
        found = []
        for topic, partition in sorted(self.logs.keys() | self.committed.keys()):
            log = self.logs.get((topic, partition), [])
            read = PartitionLag(topic, partition, self.committed.get((topic, partition)), len(log), None,
                                self.log_starts.get((topic, partition), 0))
            oldest = log[read.position] if read.position < len(log) else None
            found.append(PartitionLag(read.topic, read.partition, read.committed, read.end, oldest, read.log_start))
        return found


class KafkaPipelineLag(PipelineLag):
    """Committed offsets from the AdminClient, the partitions of the topics read from the cluster's
    metadata, start and end offsets from the broker, and one read per lagging partition for the
    timestamp of its oldest pending message."""

    def __init__(self, bootstrap_servers: KafkaCluster | str, group_id: str, timeout: float = 5.0,
                 read_elsewhere: Mapping[str, str] | None = None, reads: Iterable[str] = ()):
        """`read_elsewhere`: topic -> the group that reads it instead of `group_id` (the RPA mailbox's).
        `reads`: the topics the groups should consume, committed on or not (a topic a group has
        committed on is one it reads, named here or not)."""
        self.bootstrap, self.group_id, self.timeout = bootstrap_servers, group_id, timeout
        self.read_elsewhere = dict(read_elsewhere or {})
        self.reads = [*reads, *self.read_elsewhere]

    def lag(self) -> list[PartitionLag]:
        from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
        from confluent_kafka.admin import AdminClient, OffsetSpec

        admin = AdminClient(client_config(self.bootstrap, "admin"))
        committed: dict[tuple[str, int], int] = {}
        topics = set(self.reads)
        for group_id in sorted({self.group_id, *self.read_elsewhere.values()}):
            request = [ConsumerGroupTopicPartitions(group_id)]
            group = admin.list_consumer_group_offsets(request, request_timeout=self.timeout)[group_id]
            # A group's offsets on a topic another group reads now are left from before: not lag.
            for tp in group.result().topic_partitions:
                if tp.offset >= 0 and self.read_elsewhere.get(tp.topic, self.group_id) == group_id:
                    committed[(tp.topic, tp.partition)] = tp.offset
                    topics.add(tp.topic)
        if not topics:
            return []
        # Every partition of the topics read: only those committed on were, and a group that had
        # committed nothing on a partition showed no lag at all however much waited there.
        known = admin.list_topics(timeout=self.timeout).topics
        partitions = sorted({*committed, *((topic, number) for topic in topics if topic in known
                                           and known[topic].error is None for number in known[topic].partitions)})
        if not partitions:
            return []
        latest = OffsetSpec.latest()  # type: ignore[no-untyped-call]  # unannotated in confluent-kafka (one shared spec)
        end_of = self._offsets(admin, partitions, latest)
        never_committed = [key for key in partitions if key not in committed]
        earliest = OffsetSpec.earliest()  # type: ignore[no-untyped-call]
        start_of = self._offsets(admin, never_committed, earliest) if never_committed else {}
        position = {key: committed.get(key, start_of.get(key, 0)) for key in partitions}
        lagging = [TopicPartition(*key, position[key]) for key in partitions if end_of[key] > position[key]]
        oldest, caught_up = self._timestamps(lagging, end_of)
        for key in caught_up:  # what lies past a caught-up partition's position is markers, or aborted
            end_of[key] = position[key]
        return [PartitionLag(topic, number, committed.get((topic, number)), end_of[(topic, number)],
                             oldest.get((topic, number)), start_of.get((topic, number), 0))
                for topic, number in partitions]

    def _offsets(self, admin: AdminClient, partitions: list[tuple[str, int]], spec: OffsetSpec
                 ) -> dict[tuple[str, int], int]:
        from confluent_kafka import TopicPartition

        asked = admin.list_offsets({TopicPartition(*key): spec for key in partitions}, request_timeout=self.timeout)
        return {(tp.topic, tp.partition): future.result().offset for tp, future in asked.items()}

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
            consumer.assign(partitions)
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

