"""Kafka in memory, for unit tests of the runtime and the agents through the composition root.

One group member that owns every partition of the topics it subscribes to; a transaction is
what `produce` collected since `begin`, appended (with the offsets) on `commit`. Tests can take
the broker down, lose the next transaction, or rebalance.
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence

from rules.errors import Unavailable
from streams.broker import Assigned, LostBatch, Output, Record, Revoked, StartOutOfRange, TopicPartition


class InMemoryBroker:
    def __init__(self, partitions: int = 3):
        self.partition_count = partitions
        self.cluster_id = uuid.uuid4().hex  # a broker made anew is a Kafka cluster made anew
        self.logs: dict[str, list[list[Record]]] = {}
        self.committed: dict[TopicPartition, int] = {}
        self.down = False
        self.losing_commits = 0  # the next n transactions are lost (aborted, the producer fenced)
        self.failing_commits = 0  # the next n commits find Kafka unreachable
        self.refusing_seeks = 0  # the next n seeks fail, as librdkafka's may: the partition stays held till one takes
        self.commits = 0
        self._topics: list[str] = []
        self._positions: dict[TopicPartition, int] = {}
        self._held: set[TopicPartition] = set()
        self._pending_seeks: dict[TopicPartition, int] = {}
        self._pending: list[Output] | None = None
        self._on_assigned: Assigned | None = None
        self._on_revoked: Revoked | None = None

    # -- what tests do -------------------------------------------------------------------------------
    def topic(self, name: str) -> list[list[Record]]:
        return self.logs.setdefault(name, [[] for _ in range(self.partition_count)])

    def partition_of(self, key: bytes | None) -> int:
        return zlib.crc32(key or b"") % self.partition_count

    def append(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None,
               headers: tuple[tuple[str, bytes | None], ...] = ()) -> Record:
        """A message from outside the runtime (a producer of its own)."""
        log = self.topic(topic)
        number = self.partition_of(key) if partition is None else partition
        record = Record(topic, number, len(log[number]), key, value, None, tuple(headers))
        log[number].append(record)
        return record

    def records(self, topic: str) -> list[Record]:
        return [record for partition in self.topic(topic) for record in partition]

    def rebalance(self, meanwhile: Callable[[], None] = lambda: None, kept: Collection[int] | None = None) -> None:
        """Every partition revoked and assigned again, as a group change does; `meanwhile` is what
        another member does while they are its (a group of one gets them back, but those not
        `kept`, which another member took)."""
        assigned = [(t, p) for t in self._topics for p in range(self.partition_count)]
        assert self._on_revoked is not None and self._on_assigned is not None
        self._on_revoked(assigned)
        meanwhile()
        self._assign(kept)

    # -- the port --------------------------------------------------------------------------------------
    def subscribe(self, topics: Sequence[str], on_assigned: Assigned, on_revoked: Revoked) -> None:
        self._topics, self._on_assigned, self._on_revoked = list(topics), on_assigned, on_revoked
        for name in topics:
            self.topic(name)
        self._assign()

    def _assign(self, kept: Collection[int] | None = None) -> None:
        assigned = [(t, p) for t in self._topics for p in range(self.partition_count) if kept is None or p in kept]
        self._positions = {tp: self.committed.get(tp, 0) for tp in assigned}
        self._pending_seeks.clear()
        assert self._on_assigned is not None
        self._held = set(self._on_assigned(assigned))

    def poll(self, max_records: int, timeout: float) -> list[Record]:
        if self.down:
            return []
        batch: list[Record] = []
        for tp, position in self._positions.items():
            if tp in self._held:
                continue
            log = self.logs[tp[0]][tp[1]]
            taken = log[position: position + max_records - len(batch)]
            batch.extend(taken)
            self._positions[tp] = position + len(taken)
            if len(batch) >= max_records:
                break
        return batch

    def hold(self, partition: TopicPartition, offset: int | None) -> None:
        self._held.add(partition)
        if offset is not None:
            self._pending_seeks[partition] = offset
            self._seek(partition)

    def _seek(self, partition: TopicPartition) -> None:
        if self.refusing_seeks:
            self.refusing_seeks -= 1
            return
        self._positions[partition] = self._pending_seeks.pop(partition)

    def release(self, partition: TopicPartition) -> bool:
        if partition in self._pending_seeks:  # as the adapter: seek first, and stay held if it fails
            self._seek(partition)
            if partition in self._pending_seeks:
                return False
        self._held.discard(partition)
        return True

    def behind(self, partitions: Sequence[TopicPartition]) -> int:
        return sum(len(self.logs[topic][number]) - self._positions[(topic, number)] for topic, number in partitions)

    def partition_for(self, topic: str, key: bytes) -> int:
        return self.partition_of(key)

    def begin(self) -> None:
        self._pending = []

    def produce(self, output: Output) -> None:
        assert self._pending is not None, "produce outside a transaction"
        self._pending.append(output)

    def commit(self, offsets: Mapping[TopicPartition, int]) -> dict[TopicPartition, int]:
        if self.down or self.failing_commits:
            self.failing_commits = max(0, self.failing_commits - 1)
            raise Unavailable("kafka", "the in-memory broker is down")
        if self.losing_commits:
            self.losing_commits, self._pending = self.losing_commits - 1, None
            raise LostBatch("the test lost this transaction")
        written: dict[TopicPartition, int] = {}
        for output in self._pending or []:
            record = self.append(output.topic, output.key, output.value, output.partition, output.headers)
            written[(record.topic, record.partition)] = record.offset
        self.committed.update(offsets)
        self._pending = None
        self.commits += 1
        return written

    def abort(self) -> None:
        self._pending = None

    def cluster_of(self, topic: str) -> str:
        if self.down:
            raise Unavailable("kafka", "the in-memory broker is down")
        return self.cluster_id

    def restore(self, topic: str, starts: Mapping[int, int | None],
                stable: Sequence[TopicPartition]) -> Iterator[tuple[int, int, bytes | None, bytes | None]]:
        if self.down:
            raise Unavailable("kafka", "the in-memory broker is down")
        log = self.topic(topic)
        for number, start in starts.items():
            if start is not None and start > len(log[number]):
                raise StartOutOfRange(number, f"{topic} [{number}] at offset {start}: it ends at {len(log[number])}")
        for number, start in starts.items():
            for record in log[number][start or 0:]:
                yield number, record.offset, record.key, record.value

    def close(self) -> None:
        pass

