"""The pipeline's consumer group, as an operator sees it: who is in it, where it stands, and
moving it back in time. Kafka refuses to move a group that has members; so do these."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from connectors.api_ports import ConsumerGroups, GroupIsActive
from connectors.kafka_clients import KafkaCluster, client_config, kafka_down
from rules.errors import Misconfigured

_JOINED = {KafkaError.NON_EMPTY_GROUP, KafkaError.REBALANCE_IN_PROGRESS, KafkaError.UNKNOWN_MEMBER_ID}
_REFUSED = {KafkaError.GROUP_AUTHORIZATION_FAILED, KafkaError.TOPIC_AUTHORIZATION_FAILED,
            KafkaError.CLUSTER_AUTHORIZATION_FAILED, KafkaError.SASL_AUTHENTICATION_FAILED,
            KafkaError._AUTHENTICATION}


class KafkaConsumerGroups(ConsumerGroups):
    def __init__(self, bootstrap_servers: KafkaCluster | str, timeout: float = 30.0):
        self.bootstrap_servers = bootstrap_servers
        self.admin = AdminClient(client_config(bootstrap_servers, "admin"))
        self.timeout = timeout

    @contextmanager
    def _asking(self, doing: str) -> Iterator[None]:
        """Kafka's refusals said as what they are: every one read "kafka does not answer, check
        KAFKA_BOOTSTRAP_SERVERS", a member that joined while the group was moved, or an ACL, too."""
        try:
            yield
        except KafkaException as exc:
            error = exc.args[0]
            code = error.code() if isinstance(error, KafkaError) else None
            if code in _JOINED:
                raise GroupIsActive(f"{doing}: a member joined the group meanwhile ({error.str()})") from None
            if code in _REFUSED:
                raise Misconfigured(f"{doing}: Kafka refused it ({error.str()}); check the credentials and "
                                    "the ACLs of the consumer group") from None
            raise kafka_down(self.bootstrap_servers, doing, error, self.admin) from None

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
        with self._asking(f"moving consumer group {group} on {topic}"):
            result = self.admin.alter_consumer_group_offsets([request], request_timeout=self.timeout)[group].result()
            # Kafka answers a commit per partition: a member that joined, or an ACL, comes back here,
            # not as the call's error (it was a traceback).
            if failed := [tp for tp in result.topic_partitions if tp.error is not None]:
                raise KafkaException(failed[0].error)


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
