"""One contract for every reader of the pipeline's consumer lag: in memory, and real Kafka."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from connectors.pipeline_lag import InMemoryPipelineLag, KafkaPipelineLag

T0 = datetime(2026, 11, 25, 12, tzinfo=UTC)
STAMPS = [T0 + timedelta(seconds=s) for s in range(5)]


class PipelineLagContract:
    @pytest.fixture
    def arranged(self):
        """A reader whose group has processed 2 of 5 messages on partition 0 and all 2 on partition 1."""
        raise NotImplementedError

    @pytest.fixture
    def never_read(self):
        """A reader of one topic its group should read and has committed nothing on, a partition whose
        first 2 of 5 messages retention deleted."""
        raise NotImplementedError

    def test_pending_messages_and_the_oldest_ones_timestamp(self, arranged):
        reader, topic = arranged
        first, second = reader.lag()
        assert (first.topic, first.partition, first.committed, first.end, first.pending) == (topic, 0, 2, 5, 3)
        assert first.oldest_pending_at == STAMPS[2]
        assert (second.partition, second.pending, second.oldest_pending_at) == (1, 0, None)

    def test_a_partition_the_group_never_committed_on_is_pending_from_the_start_of_its_log(self, never_read):
        """Left out, it showed no lag at all: a `--role mail` worker never started, offsets expired."""
        reader, topic = never_read
        (unread,) = reader.lag()
        assert (unread.topic, unread.committed, unread.log_start, unread.end, unread.pending) == (topic, None, 2, 5, 3)
        assert unread.oldest_pending_at == STAMPS[2]


class TestInMemoryLag(PipelineLagContract):
    @pytest.fixture
    def arranged(self):
        reader = InMemoryPipelineLag()
        reader.append("work", 0, STAMPS)
        reader.append("work", 1, STAMPS[:2])
        reader.commit("work", 0, 2)
        reader.commit("work", 1, 2)
        return reader, "work"

    @pytest.fixture
    def never_read(self):
        reader = InMemoryPipelineLag()
        reader.append("work", 0, STAMPS)
        reader.delete_records("work", 0, 2)
        return reader, "work"


class TestKafkaLag(PipelineLagContract):
    @pytest.fixture
    def arranged(self, kafka_bootstrap, unique_name):
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        admin.create_topics([NewTopic(unique_name, num_partitions=2, replication_factor=1)])[unique_name].result(30)
        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        for partition, stamps in ((0, STAMPS), (1, STAMPS[:2])):
            for stamp in stamps:
                producer.produce(unique_name, b"x", partition=partition, timestamp=int(stamp.timestamp() * 1000))
        assert producer.flush(30) == 0
        group = f"{unique_name}-group"
        consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
        consumer.commit(offsets=[TopicPartition(unique_name, 0, 2), TopicPartition(unique_name, 1, 2)],
                        asynchronous=False)
        consumer.close()
        return KafkaPipelineLag(kafka_bootstrap, group), unique_name

    @pytest.fixture
    def never_read(self, kafka_bootstrap, unique_name):
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        admin.create_topics([NewTopic(unique_name, num_partitions=1, replication_factor=1)])[unique_name].result(30)
        producer = Producer({"bootstrap.servers": kafka_bootstrap})
        for stamp in STAMPS:
            producer.produce(unique_name, b"x", partition=0, timestamp=int(stamp.timestamp() * 1000))
        assert producer.flush(30) == 0
        for future in admin.delete_records([TopicPartition(unique_name, 0, 2)]).values():
            future.result(30)
        return KafkaPipelineLag(kafka_bootstrap, f"{unique_name}-group", reads=[unique_name]), unique_name

    def test_a_topic_read_by_another_group_has_that_groups_lag(self, kafka_bootstrap, arranged):
        """The RPA mailbox's group reads rpa.requests; the pipeline group's old offsets there are not lag.
        Where the mailbox's group has committed nothing, all the log keeps is its lag."""
        reader, topic = arranged
        mail_group = f"{topic}-mail"
        consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": mail_group})
        consumer.commit(offsets=[TopicPartition(topic, 0, 4)], asynchronous=False)
        consumer.close()
        both = KafkaPipelineLag(kafka_bootstrap, reader.group_id, read_elsewhere={topic: mail_group})
        first, second = both.lag()
        assert (first.topic, first.partition, first.committed, first.pending) == (topic, 0, 4, 1)
        assert first.oldest_pending_at == STAMPS[4]
        assert (second.partition, second.committed, second.pending, second.oldest_pending_at) == (1, None, 2, STAMPS[0])

    def test_a_group_that_never_committed_has_no_lag(self, kafka_bootstrap, unique_name):
        assert KafkaPipelineLag(kafka_bootstrap, f"{unique_name}-nobody").lag() == []

    def test_a_transactions_commit_marker_is_not_a_pending_message(self, kafka_bootstrap, unique_name):
        """The worker commits past its last record, and the marker after it counted as one message
        pending on every partition (and the probe waited its whole timeout for it at every look)."""
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        admin.create_topics([NewTopic(unique_name, num_partitions=1, replication_factor=1)])[unique_name].result(30)
        producer = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": unique_name})
        producer.init_transactions(30)
        producer.begin_transaction()
        for stamp in STAMPS[:3]:
            producer.produce(unique_name, b"x", partition=0, timestamp=int(stamp.timestamp() * 1000))
        producer.commit_transaction(30)
        group = f"{unique_name}-group"
        consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
        consumer.commit(offsets=[TopicPartition(unique_name, 0, 3)], asynchronous=False)
        consumer.close()
        (caught_up,) = KafkaPipelineLag(kafka_bootstrap, group).lag()
        assert (caught_up.committed, caught_up.pending, caught_up.oldest_pending_at) == (3, 0, None)
        consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
        consumer.commit(offsets=[TopicPartition(unique_name, 0, 2)], asynchronous=False)
        consumer.close()
        (behind,) = KafkaPipelineLag(kafka_bootstrap, group).lag()
        assert behind.oldest_pending_at == STAMPS[2] and behind.pending >= 1

    def test_a_transaction_still_open_is_pending(self, kafka_bootstrap, unique_name):
        """A committed reader's end stops at it (the last stable offset): taken for the end, the
        partition where a stuck worker waits read as caught up."""
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        admin.create_topics([NewTopic(unique_name, num_partitions=1, replication_factor=1)])[unique_name].result(30)
        producer = Producer({"bootstrap.servers": kafka_bootstrap, "transactional.id": unique_name})
        producer.init_transactions(30)
        producer.begin_transaction()
        producer.produce(unique_name, b"x", partition=0)
        producer.flush(30)
        try:
            group = f"{unique_name}-group"
            consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
            consumer.commit(offsets=[TopicPartition(unique_name, 0, 0)], asynchronous=False)
            consumer.close()
            (stuck,) = KafkaPipelineLag(kafka_bootstrap, group, timeout=1).lag()
            # Its time cannot be read past the open transaction: /metrics leaves the latency out
            assert (stuck.committed, stuck.pending, stuck.oldest_pending_at) == (0, 1, None)
        finally:
            producer.abort_transaction(30)
