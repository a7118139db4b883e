"""The confluent-kafka adapter's errors mapped into the runtime's, on a producer that raises as
librdkafka does (no broker needed to check it)."""

from __future__ import annotations

import logging

import pytest
from confluent_kafka import KafkaError, KafkaException

from rules.errors import Unavailable
from streams.broker import KafkaStreamBroker, LostBatch, Output, StartOutOfRange
from streams.health import WorkerHealth


class RefusingProducer:
    def __init__(self, error: KafkaError):
        self.error, self.aborted, self.purged = error, 0, False

    def produce(self, *args, **kwargs):
        raise KafkaException(self.error)

    def poll(self, timeout: float) -> int:
        return 0

    def abort_transaction(self, timeout: float) -> None:
        self.aborted += 1

    def purge(self) -> None:
        self.purged = True


@pytest.mark.parametrize(("error", "raised", "aborted", "dropped"), [
    (KafkaError(KafkaError._STATE, "abortable", txn_requires_abort=True), LostBatch, 1, False),
    (KafkaError(KafkaError._FENCED, "fenced", fatal=True), LostBatch, 0, True),
    (KafkaError(KafkaError._TRANSPORT, "broker down", retriable=True), Unavailable, 0, False),
], ids=["abortable", "fatal", "retriable"])
def test_a_record_the_transaction_cannot_take_loses_the_batch_or_waits_for_kafka(error, raised, aborted, dropped):
    """Raised as it came, a KafkaException from produce() failed the step outside the commit's
    handling: the batch was read and decided again, batch after batch, and readiness said ready."""
    broker = KafkaStreamBroker("127.0.0.1:1", "produce-test")
    producer = RefusingProducer(error)
    broker._producer, broker._in_transaction = producer, True
    try:
        with pytest.raises(raised):
            broker.produce(Output("verdicts", b"PO-1", b"x"))
    finally:
        broker.consumer.close()
    assert producer.aborted == aborted and (broker._producer is None) == dropped == producer.purged


class SlowCommitProducer(RefusingProducer):
    """Its commit fails retriably `failing` times (a timeout: the commit in progress, perhaps done)."""

    def __init__(self, error: KafkaError, failing: int):
        super().__init__(error)
        self.failing, self.commits = failing, 0

    def commit_transaction(self, timeout: float) -> None:
        self.commits += 1
        if self.commits <= self.failing:
            raise KafkaException(self.error)


@pytest.mark.parametrize("failing", [1, 2])
def test_a_commit_that_fails_retriably_is_called_again_not_aborted(failing):
    """Aborted, a commit that had gone through in Kafka was produced a second time beside itself:
    librdkafka has commit_transaction called again after a retriable error."""
    broker = KafkaStreamBroker("127.0.0.1:1", "commit-test")
    producer = SlowCommitProducer(KafkaError(KafkaError._TIMED_OUT, "commit timed out", retriable=True), failing)
    broker._producer, broker._in_transaction = producer, True
    assert broker.commit({}) == {}
    assert broker._in_transaction is False
    assert producer.commits == failing + 1 and producer.aborted == 0 and not producer.purged


def test_a_commit_failing_retriably_until_its_time_is_up_is_kafka_down(monkeypatch):
    """Within COMMIT_TIMEOUT, as one call was: /readyz names Kafka down as soon as it did before."""
    monkeypatch.setattr("streams.broker.COMMIT_TIMEOUT", 0.5)
    monkeypatch.setattr("streams.broker.RETRY_PAUSE", 0.1)
    broker = KafkaStreamBroker("127.0.0.1:1", "commit-test")
    producer = SlowCommitProducer(KafkaError(KafkaError._TIMED_OUT, "commit timed out", retriable=True), 1000)
    broker._producer, broker._in_transaction = producer, True
    with pytest.raises(Unavailable):
        broker.commit({})
    assert 2 <= producer.commits <= 5 and producer.aborted == 0


def test_a_commit_kafka_refuses_is_not_called_again():
    broker = KafkaStreamBroker("127.0.0.1:1", "commit-test")
    producer = SlowCommitProducer(KafkaError(KafkaError._STATE, "abortable", txn_requires_abort=True), 5)
    broker._producer, broker._in_transaction = producer, True
    with pytest.raises(LostBatch):
        broker.commit({})
    assert producer.commits == 1 and producer.aborted == 1


@pytest.mark.parametrize("code", [KafkaError._AUTHENTICATION, KafkaError._SSL], ids=["password", "certificate"])
def test_brokers_refusing_the_workers_sign_in_is_kafka_down_on_readyz_with_their_reason(code):
    """A password rotated under a running worker: librdkafka tells error_cb alone, and the worker
    read nothing while /readyz said ready."""
    health = WorkerHealth()
    broker = KafkaStreamBroker("127.0.0.1:1", "g", health=health)
    try:
        broker._client_error(KafkaError(code, "SASL authentication error: Authentication failed"))
        ready, body = health.readiness()
        assert not ready and "Authentication failed" in body["down"]["kafka"]["detail"]
    finally:
        broker.consumer.close()


@pytest.mark.parametrize("session_timeout_seconds", [30.0, 600.0, 1800.0])
def test_a_session_timeout_the_settings_take_makes_a_consumer(session_timeout_seconds):
    """SESSION_TIMEOUT_SECONDS above 300 was taken by the settings, then librdkafka refused the
    consumer (session.timeout.ms above its max.poll.interval.ms of 300 s): the worker stopped at
    start with a traceback, and compose restarted it for good."""
    broker = KafkaStreamBroker("127.0.0.1:1", "session-test", session_timeout_seconds=session_timeout_seconds)
    broker.consumer.close()


def test_a_broker_that_stays_down_is_logged_once_per_problem_not_at_each_reconnect(caplog):
    """librdkafka tells error_cb of each failed reconnection, and each was a warning: while Kafka
    was down, about 36 identical lines a second (130,000 an hour), where the README promises each
    problem once in five minutes."""
    broker = KafkaStreamBroker("127.0.0.1:1", "reconnect-test")
    try:
        with caplog.at_level(logging.WARNING):
            for attempt in range(36):
                broker._client_error(KafkaError(
                    KafkaError._TRANSPORT, "kafka-a.reconnect.test:9092/bootstrap: Connect to ipv4#10.0.0.7:9092 "
                    f"failed: Connection refused (after {attempt}ms in state CONNECT, {attempt} identical error(s) "
                    "suppressed)"))
            broker._client_error(KafkaError(KafkaError._TRANSPORT, "kafka-b.reconnect.test:9092/2: Disconnected"))
    finally:
        broker.consumer.close()
    logged = [record.getMessage() for record in caplog.records if "reconnect.test" in record.getMessage()]
    assert len(logged) == 2 and "Connection refused" in logged[0] and "Disconnected" in logged[1]


class Consumed:
    """A message, or a consumer error, as librdkafka hands it over: an error about a topic as a whole
    carries no offset (OFFSET_INVALID), one about a partition's fetch the offset it fetched."""

    def __init__(self, topic: str, offset: int, error: KafkaError | None = None):
        self._topic, self._offset, self._error = topic, offset, error

    def error(self):
        return self._error

    def topic(self):
        return self._topic

    def partition(self):
        return 0

    def offset(self):
        return self._offset

    def timestamp(self):
        return 0, 0

    def headers(self):
        return None

    def key(self):
        return b"PO-1"

    def value(self):
        return b"x"


class Described:
    def __init__(self, error: KafkaError | None):
        self.error, self.partitions = error, {0: object()}


class TopicRefusingConsumer:
    """Hands over what it is given, and describes the topics as the brokers do."""

    def __init__(self):
        self.next: list[Consumed] = []
        self.described: dict[str, Described] = {}

    def consume(self, count: int, timeout: float) -> list[Consumed]:
        given, self.next = self.next, []
        return given

    def list_topics(self, topic: str, timeout: float):
        return type("Metadata", (), {"topics": {topic: self.described[topic]}})()


@pytest.mark.parametrize("code", [KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.UNKNOWN_TOPIC_OR_PART],
                         ids=["acl-changed", "topic-deleted"])
def test_a_topic_the_brokers_will_not_let_the_worker_read_is_kafka_down_until_they_describe_it_again(code):
    """An ACL changed, or rpa.completions deleted: a rate-limited warning, and /readyz said ready
    while no completion was ever read again."""
    health = WorkerHealth()
    broker = KafkaStreamBroker("127.0.0.1:1", "g", health=health)
    real, broker.consumer = broker.consumer, TopicRefusingConsumer()
    refused = KafkaError(code, f"Subscribed topic not available: rpa.completions: {KafkaError(code).str()}")
    try:
        broker.consumer.next = [Consumed("rpa.completions", -1001, refused)]
        broker.consumer.described["rpa.completions"] = Described(KafkaError(code))
        assert broker.poll(500, 0) == []
        ready, body = health.readiness()
        detail = body["down"]["kafka"]["detail"]
        assert not ready and detail.startswith(f"topic rpa.completions cannot be read ({KafkaError(code).name()})")
        broker._topics_probed_at = 0.0  # asked again: still refused
        broker.poll(500, 0)
        assert "kafka" in health.outages()
        broker.consumer.described["rpa.completions"] = Described(None)
        broker._topics_probed_at = 0.0
        broker.poll(500, 0)
        assert health.outages() == {}
    finally:
        real.close()


def test_a_topic_whose_fetches_the_brokers_refuse_is_kafka_down_until_a_record_of_it_is_read():
    """An ACL that lets the group describe the topic but not read it: the brokers describe it all
    along, so only a record read says it is back."""
    health = WorkerHealth()
    broker = KafkaStreamBroker("127.0.0.1:1", "g", health=health)
    real, broker.consumer = broker.consumer, TopicRefusingConsumer()
    try:
        broker.consumer.next = [Consumed("rpa.completions", 41, KafkaError(
            KafkaError.TOPIC_AUTHORIZATION_FAILED, "Fetch from broker 1 failed: Broker: Topic authorization failed"))]
        broker.consumer.described["rpa.completions"] = Described(None)
        broker.poll(500, 0)
        broker._topics_probed_at = 0.0
        broker.poll(500, 0)
        assert "rpa.completions" in health.readiness()[1]["down"]["kafka"]["detail"]
        broker.consumer.next = [Consumed("rpa.completions", 41)]
        assert [record.offset for record in broker.poll(500, 0)] == [41]
        assert health.outages() == {}
    finally:
        real.close()


class ChangelogReader:
    """The restore's own consumer, to which librdkafka says the offset assigned is out of range: what
    it hands over with auto.offset.reset=error."""

    made: list[ChangelogReader] = []

    def __init__(self, config: dict):
        self.config, self.closed = config, False
        self.said = [Consumed("ledgers.changelog", 5, KafkaError(
            KafkaError._AUTO_OFFSET_RESET, "fetch failed due to requested offset not available on the broker: "
            "Broker: Offset out of range (broker 1)"))]
        ChangelogReader.made.append(self)

    def assign(self, partitions) -> None:
        self.assigned = [(tp.topic, tp.partition, tp.offset) for tp in partitions]

    def consume(self, count: int, timeout: float) -> list[Consumed]:
        said, self.said = self.said, [Consumed("ledgers.changelog", 5, KafkaError(KafkaError._PARTITION_EOF))]
        return said

    def close(self) -> None:
        self.closed = True


class GroupConsumer:
    def __init__(self, cluster_id: str | None = None):
        self.cluster_id = cluster_id

    def committed(self, partitions, timeout: float) -> list:
        return partitions

    def list_topics(self, topic: str, timeout: float):
        if self.cluster_id is None:
            raise KafkaException(KafkaError(KafkaError._TRANSPORT, "all brokers down"))
        return type("Metadata", (), {"cluster_id": self.cluster_id, "topics": {}})()


def test_a_changelog_without_the_stores_position_is_said_so_not_read_from_its_first_record(monkeypatch):
    """auto.offset.reset=earliest read a changelog made anew, past whose end the store's position was,
    from its first record on top of the ledgers the store held."""
    broker = KafkaStreamBroker("127.0.0.1:1", "restore-test")
    real, broker.consumer = broker.consumer, GroupConsumer()
    monkeypatch.setattr("streams.broker.Consumer", ChangelogReader)
    try:
        with pytest.raises(StartOutOfRange) as raised:
            list(broker.restore("ledgers.changelog", {0: 5}, [("invoices", 0)]))
    finally:
        real.close()
    reader = ChangelogReader.made[-1]
    assert reader.config["auto.offset.reset"] == "error" and reader.assigned == [("ledgers.changelog", 0, 5)]
    assert raised.value.partition == 0 and reader.closed
    assert str(raised.value).startswith("ledgers.changelog [0] at offset 5: fetch failed")


def test_the_cluster_a_changelog_is_on_is_named_by_its_id_and_kafka_down_when_no_broker_answers():
    broker = KafkaStreamBroker("127.0.0.1:1", "restore-test")
    real, broker.consumer = broker.consumer, GroupConsumer("Fz3sYc0pQ6q9X2kq8JmN0A")
    try:
        assert broker.cluster_of("ledgers.changelog") == "Fz3sYc0pQ6q9X2kq8JmN0A"
        broker.consumer = GroupConsumer(None)
        with pytest.raises(Unavailable) as raised:
            broker.cluster_of("ledgers.changelog")
    finally:
        real.close()
    assert raised.value.dependency == "kafka"
