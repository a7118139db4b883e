"""The pipeline's consumer group, as an operator sees it: who is in it, where it stands, and
moving it back in time. Kafka refuses to move a group that has members; so do these."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from connectors.api_ports import ConsumerGroups, GroupIsActive
from connectors.kafka_logs import client_config, kafka_down


class KafkaConsumerGroups(ConsumerGroups):
    def __init__(self, bootstrap_servers: str, timeout: float = 30.0):
        self.bootstrap_servers = bootstrap_servers
        self.admin = AdminClient(client_config(bootstrap_servers, "admin"))
        self.timeout = timeout

    @contextmanager
    def _asking(self, doing: str) -> Iterator[None]:
        try:
            yield
        except KafkaException as exc:
            raise kafka_down(self.bootstrap_servers, doing, exc.args[0]) from None

    def members(self, group: str) -> list[str]:
        with self._asking(f"describing consumer group {group}"):
            description = self.admin.describe_consumer_groups([group], request_timeout=self.timeout)[group].result()
        return [f"{m.client_id}@{m.host}" for m in description.members]

    def committed(self, group: str, topic: str, partitions: list[int]) -> dict[int, int | None]:
        request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in partitions])
        with self._asking(f"reading the offsets of consumer group {group}"):
            result = self.admin.list_consumer_group_offsets([request], request_timeout=self.timeout)[group].result()
        return {tp.partition: tp.offset if tp.offset >= 0 else None for tp in result.topic_partitions}

    def move(self, group: str, topic: str, offsets: dict[int, int]) -> None:
        running = self.members(group)
        if running:
            raise GroupIsActive(f"consumer group {group!r} has {len(running)} running member(s): {', '.join(running)}")
        request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p, o) for p, o in sorted(offsets.items())])
        with self._asking(f"moving consumer group {group}"):
            result = self.admin.alter_consumer_group_offsets([request], request_timeout=self.timeout)[group].result()
        failed = [tp for tp in result.topic_partitions if tp.error is not None]
        if failed:
            raise RuntimeError(f"moving {group!r} on {topic}: {[(tp.partition, str(tp.error)) for tp in failed]}")


@dataclass
class InMemoryConsumerGroups(ConsumerGroups):
    running: dict[str, list[str]] = field(default_factory=dict)
    offsets: dict[tuple[str, str, int], int] = field(default_factory=dict)

    def members(self, group: str) -> list[str]:
        return list(self.running.get(group, []))

    def committed(self, group: str, topic: str, partitions: list[int]) -> dict[int, int | None]:
        return {p: self.offsets.get((group, topic, p)) for p in partitions}

    def move(self, group: str, topic: str, offsets: dict[int, int]) -> None:
        if self.running.get(group):
            raise GroupIsActive(f"consumer group {group!r} has {len(self.running[group])} running member(s)")
        for p, offset in offsets.items():
            self.offsets[(group, topic, p)] = offset
