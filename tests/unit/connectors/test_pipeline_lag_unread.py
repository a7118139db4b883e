"""The lag of partitions a consumer group has committed nothing on, with Kafka's admin calls and the
probe's consumer answering as a broker does (tests/contracts/test_pipeline_lag.py runs on a real one)."""

from __future__ import annotations

from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import confluent_kafka
import confluent_kafka.admin
import pytest
from confluent_kafka import KafkaError, TopicPartition

from connectors.pipeline_lag import KafkaPipelineLag

T0 = datetime(2026, 11, 25, 12, tzinfo=UTC)
# (topic, partition) -> (log start, end); every message n is stamped T0 + n seconds
LOGS = {("invoices", 0): (0, 5000), ("invoices", 1): (200, 5000), ("invoices", 2): (0, 0),
        ("rpa.requests", 0): (0, 800), ("rpa.requests", 1): (0, 800)}
COMMITTED = {"ap": [TopicPartition("invoices", 0, 5000)], "ap-rpa-mail": []}  # the mail worker never ran


def answered(value):
    future: Future = Future()
    future.set_result(value)
    return future


class Admin:
    def __init__(self, config):
        pass

    def list_consumer_group_offsets(self, requests, request_timeout):
        group = requests[0].group_id
        return {group: answered(SimpleNamespace(topic_partitions=COMMITTED[group]))}

    def list_topics(self, timeout):
        topics: dict[str, dict[int, None]] = {}
        for topic, partition in LOGS:
            topics.setdefault(topic, {})[partition] = None
        return SimpleNamespace(topics={topic: SimpleNamespace(error=None, partitions=partitions)
                                       for topic, partitions in topics.items()})

    def list_offsets(self, asked, request_timeout):
        start_or_end = {-2: 0, -1: 1}
        return {tp: answered(SimpleNamespace(offset=LOGS[(tp.topic, tp.partition)][start_or_end[spec._value]]))
                for tp, spec in asked.items()}


class Consumer:
    """The lag probe's consumer: the message at each assigned offset, else the end of the partition."""

    assigned: list[tuple[str, int, int]] = []

    def __init__(self, config):
        self.waiting: list[TopicPartition] = []

    def assign(self, partitions):
        self.waiting = list(partitions)
        Consumer.assigned = [(tp.topic, tp.partition, tp.offset) for tp in partitions]

    def consume(self, count, timeout):
        messages = []
        for tp in self.waiting:
            at_end = tp.offset >= LOGS[(tp.topic, tp.partition)][1]
            messages.append(SimpleNamespace(
                topic=lambda tp=tp: tp.topic, partition=lambda tp=tp: tp.partition, offset=lambda tp=tp: tp.offset,
                error=lambda at_end=at_end: KafkaError(KafkaError._PARTITION_EOF) if at_end else None,
                timestamp=lambda tp=tp: (1, int((T0 + timedelta(seconds=tp.offset)).timestamp() * 1000))))
        self.waiting = []
        return messages

    def close(self):
        pass


@pytest.fixture
def broker_answers(monkeypatch):
    monkeypatch.setattr(confluent_kafka.admin, "AdminClient", Admin)
    monkeypatch.setattr(confluent_kafka, "Consumer", Consumer)


def test_a_partition_its_group_has_committed_nothing_on_has_all_its_log_keeps_pending(broker_answers):
    """Only the partitions with a committed offset were looked at: a `--role mail` worker never started,
    and partitions the deciding workers never got to, showed no lag at all."""
    lag = KafkaPipelineLag("127.0.0.1:9", "ap", read_elsewhere={"rpa.requests": "ap-rpa-mail"},
                           reads=["invoices", "verdicts"])  # verdicts: not created yet
    found = {(p.topic, p.partition): (p.committed, p.pending, p.oldest_pending_at) for p in lag.lag()}
    assert found == {
        ("invoices", 0): (5000, 0, None),  # caught up
        ("invoices", 1): (None, 4800, T0 + timedelta(seconds=200)),  # from the log's start, not from 0
        ("invoices", 2): (None, 0, None),  # nothing ever written to it
        ("rpa.requests", 0): (None, 800, T0), ("rpa.requests", 1): (None, 800, T0)}
    assert sorted(Consumer.assigned) == [("invoices", 1, 200), ("rpa.requests", 0, 0), ("rpa.requests", 1, 0)]


def test_a_group_that_committed_nothing_and_is_named_no_topic_has_no_lag_to_tell(broker_answers, monkeypatch):
    monkeypatch.setitem(COMMITTED, "ap", [])
    assert KafkaPipelineLag("127.0.0.1:9", "ap").lag() == []
