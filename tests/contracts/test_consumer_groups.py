"""One contract for the pipeline's consumer group as reprocess sees it: in memory, and real Kafka."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from connectors.api_ports import GroupIsActive
from connectors.consumer_groups import InMemoryConsumerGroups, KafkaConsumerGroups


class ConsumerGroupsContract:
    @pytest.fixture
    def setup(self):
        """(groups, group, topic, start_member): a group with committed offsets 5 on partitions 0 and 1."""
        raise NotImplementedError

    def test_offsets_move_back_when_no_worker_runs(self, setup):
        groups, group, topic, _ = setup
        assert groups.members(group) == []
        assert groups.committed(group, topic, [0, 1]) == {0: 5, 1: 5}
        groups.move(group, topic, {0: 2})
        assert groups.committed(group, topic, [0, 1]) == {0: 2, 1: 5}

    def test_a_running_worker_is_seen_and_the_move_refused(self, setup):
        groups, group, topic, start_member = setup
        stop = start_member()
        try:
            assert len(groups.members(group)) == 1
            with pytest.raises(GroupIsActive, match=group):
                groups.move(group, topic, {0: 0})
        finally:
            stop()
        assert groups.committed(group, topic, [0]) == {0: 5}


class TestInMemoryConsumerGroups(ConsumerGroupsContract):
    @pytest.fixture
    def setup(self):
        groups = InMemoryConsumerGroups(offsets={("g", "t", 0): 5, ("g", "t", 1): 5})

        def start_member():
            groups.running["g"] = ["worker@host"]
            return lambda: groups.running.pop("g")

        return groups, "g", "t", start_member


class TestKafkaConsumerGroups(ConsumerGroupsContract):
    @pytest.fixture
    def setup(self, kafka_bootstrap, unique_name):
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        admin.create_topics([NewTopic(unique_name, 2, 1)])[unique_name].result()
        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        for n in range(20):
            producer.produce(unique_name, value=b"x", partition=n % 2)
        producer.flush(30)

        def member() -> Consumer:
            consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": unique_name,
                                 "auto.offset.reset": "earliest", "enable.auto.commit": False})
            consumer.subscribe([unique_name])
            deadline = time.monotonic() + 30
            while not consumer.assignment() and time.monotonic() < deadline:
                consumer.poll(0.2)
            return consumer

        first = member()
        first.commit(offsets=[TopicPartition(unique_name, 0, 5), TopicPartition(unique_name, 1, 5)], asynchronous=False)
        first.close()

        def start_member():
            consumer = member()
            return consumer.close

        yield KafkaConsumerGroups(kafka_bootstrap), unique_name, unique_name, start_member
        admin.delete_topics([unique_name])
