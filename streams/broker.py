"""What the stream runtime needs of Kafka, as one small port, and its confluent-kafka adapter.

The runtime reads batches as a member of the pipeline's consumer group and writes everything
of one batch (outputs, dead letters, changelog records, the consumed offsets) in one Kafka
transaction. So after a crash the topics, the state and the offsets agree: a batch is in all
of them or in none. librdkafka does the fetching, batching and retries; this module only maps
its errors into the runtime's three cases: the broker is unreachable for now (`Unavailable`),
the batch's transaction was lost and the batch must be read again (`LostBatch`), or it worked.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer
from confluent_kafka import TopicPartition as KafkaTP
from kafka.partitioner.default import murmur2

from connectors.kafka_clients import REFUSED_SIGN_IN, KafkaCluster, client_config, kafka_logger, max_poll_interval
from rules.errors import Unavailable
from streams.health import WorkerHealth, lag_from_statistics
from streams.record_size import PRODUCER_CONFIG

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]
CLIENT = "kafka client"  # what waits for Kafka when librdkafka says no broker answers: cleared by a probe
# A subscribed topic the brokers will not let the worker read: the group may not (an ACL changed), or
# it is gone (deleted). librdkafka says so as a consumer error, and goes on reading the other topics.
UNREADABLE_TOPIC = (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.UNKNOWN_TOPIC_OR_PART,
                    KafkaError._UNKNOWN_TOPIC)
COMMIT_TIMEOUT = 10.0  # seconds a commit may take before Kafka counts as unavailable
RETRY_PAUSE = 0.2  # seconds between two calls of a transactional method that failed retriably
# 16 MiB: half a minute of invoices at this worker's rate (1.4 KB each), far more than a batch of 500 takes. A
# 50,000-invoice burst (bench, month-end) ended at 445 MiB of RSS, against 487 with the default,
# at the same rate; tests/integration/test_kafka_clients.py measures the bound itself.
PREFETCH_KBYTES = 16 * 1024
Assigned = Callable[[list[TopicPartition]], set[TopicPartition]]  # returns the partitions to hold
Revoked = Callable[[list[TopicPartition]], None]


def kafka_partition(key: bytes, partitions: int) -> int:
    """Where Kafka's default partitioner puts a key: murmur2, made positive, modulo the count, as
    the Java clients, Kafka Connect (Debezium) and this project's producers (`murmur2_random`) do."""
    return _cached_partition(key, partitions) if len(key) <= 256 else _partition(key, partitions)


def _partition(key: bytes, partitions: int) -> int:
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


# A PO's records come again and again; a key longer than any PO number's 64 characters is not kept.
_cached_partition = functools.lru_cache(maxsize=65536)(_partition)


def _origin(message: Message) -> tuple[str, int, int]:
    """Topic, partition and offset of a consumed message (not an error event): librdkafka sets all three."""
    topic, partition, offset = message.topic(), message.partition(), message.offset()
    if topic is None or partition is None or offset is None:
        raise ValueError("a consumed message without its topic, partition or offset")
    return topic, partition, offset


@dataclass(frozen=True, slots=True)
class Record:
    """One message as it was read, with where it came from."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None
    headers: tuple[tuple[str, bytes | None], ...] = ()  # a Kafka header's value may be null

    @property
    def source(self) -> TopicPartition:
        return self.topic, self.partition


@dataclass(frozen=True, slots=True)
class Output:
    """One message to write in the batch's transaction; `partition` None means by key (murmur2)."""

    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None = None
    headers: tuple[tuple[str, bytes | None], ...] = field(default=())


class LostBatch(Exception):
    """The batch's transaction was aborted (or its producer fenced): read the batch again."""


class StartOutOfRange(Exception):
    """A restore's start is not in its changelog partition: past its end (the topic deleted and made
    again), or before its first record (records deleted). The store was not made from what it holds."""

    def __init__(self, partition: int, detail: str):
        super().__init__(detail)
        self.partition = partition


class StreamBroker(Protocol):
    def subscribe(self, topics: Sequence[str], on_assigned: Assigned, on_revoked: Revoked) -> None: ...

    def poll(self, max_records: int, timeout: float) -> list[Record]:
        """The next batch: what has arrived, up to `max_records`, waiting up to `timeout` only when
        nothing has; calls the rebalance callbacks when the group changes."""

    def hold(self, partition: TopicPartition, offset: int | None) -> None:
        """Stop fetching the partition and, with an offset, read it from there when released."""

    def release(self, partition: TopicPartition) -> bool:
        """Fetches the partition again; False when it must stay held a while longer."""

    def behind(self, partitions: Sequence[TopicPartition]) -> int:
        """Records of these partitions after the consumer's position, as last fetched (no request)."""

    def partition_for(self, topic: str, key: bytes) -> int:
        """The partition the key belongs on, as producers place it; `Unavailable` while the
        topic's partition count cannot be had."""

    def begin(self) -> None: ...

    def produce(self, output: Output) -> None: ...

    def commit(self, offsets: Mapping[TopicPartition, int]) -> dict[TopicPartition, int]:
        """Commits the transaction with the consumed offsets; returns the last offset written
        per partition. Raises `Unavailable` (call again) or `LostBatch` (the batch is undone)."""

    def abort(self) -> None: ...

    def cluster_of(self, topic: str) -> str:
        """The id of the Kafka cluster that holds `topic`: one made anew has another, whatever its topics."""

    def restore(self, topic: str, starts: Mapping[int, int | None],
                stable: Sequence[TopicPartition]) -> Iterator[tuple[int, int, bytes | None, bytes | None]]:
        """Changelog records (partition, offset, key, value) from each start (None: the
        beginning) to the end, once the committed offsets of `stable` are settled. Raises
        `StartOutOfRange` for a start the partition does not have."""

    def close(self) -> None: ...


def _kafka_unavailable(error: Any, doing: str) -> Unavailable:
    return Unavailable("kafka", f"{doing}: {error}")


class KafkaStreamBroker:
    """A consumer-group member and a transactional producer (confluent-kafka / librdkafka)."""

    def __init__(self, bootstrap_servers: KafkaCluster | str, group_id: str, *, session_timeout_seconds: float = 30.0,
                 transaction_timeout_seconds: float = 10.0, timeout: float = 30.0,
                 health: WorkerHealth | None = None, stats_interval_seconds: float = 15.0, linger: float = 0.0):
        self.bootstrap, self.group_id, self.timeout = bootstrap_servers, group_id, timeout
        self.linger = linger
        self.health = health
        self.transaction_timeout = transaction_timeout_seconds
        # librdkafka tells error_cb of each failed reconnection, as often as its own log lines: each
        # problem once in five minutes, as those are. Logged as they came, a broker that was down
        # wrote some 36 identical warnings a second.
        self._client_errors = kafka_logger("worker")
        self.consumer = Consumer(client_config(bootstrap_servers, "consumer", **{
            "group.id": group_id,
            "enable.auto.commit": False, "auto.offset.reset": "earliest",
            # range co-partitions: partition p of every work topic goes to the same member.
            "partition.assignment.strategy": "range",
            "isolation.level": "read_committed",
            "session.timeout.ms": int(session_timeout_seconds * 1000),
            # A SESSION_TIMEOUT_SECONDS of 600 stopped the worker at start, above the interval.
            "max.poll.interval.ms": int(max_poll_interval(session_timeout_seconds) * 1000),
            # What librdkafka fetches ahead of the worker, for all partitions together. Its default,
            # 64 MiB, filled on any backlog (a month-end burst) and stayed in the worker's RSS.
            "queued.max.messages.kbytes": PREFETCH_KBYTES,
            "error_cb": self._client_error,
            # librdkafka's statistics carry each assigned partition's end and position: the lag metric.
            "statistics.interval.ms": int(stats_interval_seconds * 1000),
            "stats_cb": self._statistics,
        }))
        self._producer: Any = None  # made on the first batch, and again after one is lost
        self._delivered: dict[TopicPartition, int] = {}
        self._failed: list[str] = []
        self._in_transaction = False
        self._pending_seeks: dict[TopicPartition, int] = {}
        self._partition_counts: dict[str, int] = {}
        self._partition_count_failed: dict[str, tuple[str, float]] = {}  # topic -> (why, asked again from)
        self._probed_at = 0.0
        self._unreadable: dict[str, bool] = {}  # topic -> whether its metadata tells when it is back
        self._topics_probed_at = 0.0

    @property
    def producer(self) -> Any:
        """The transactional producer, its transactions initialised; `Unavailable` while Kafka is down."""
        if self._producer is None:
            producer = Producer(client_config(self.bootstrap, "producer", **{
                # A random id per producer: KIP-447 fences a zombie by the group's generation, so the
                # id need not survive a restart; a crashed worker's open transaction ends with its timeout.
                "transactional.id": f"{self.group_id}-{uuid.uuid4().hex}",
                "transaction.timeout.ms": int(self.transaction_timeout * 1000),
                "partitioner": "murmur2_random",  # as Java clients and Kafka Connect place a key
                "linger.ms": 5,
                **PRODUCER_CONFIG,  # compressed: a verdict against a PO of thousands of lines is several MiB
                "error_cb": self._client_error,
            }))
            try:
                producer.init_transactions(min(self.timeout, 10.0))
            except KafkaException as exc:
                producer.purge()
                raise _kafka_unavailable(exc.args[0], "starting the transactional producer") from None
            self._producer = producer
        return self._producer

    def _statistics(self, text: str) -> None:
        """librdkafka's statistics (served while the consumer polls), for the consumer-lag gauge."""
        if self.health is not None:
            self.health.record_lag(lag_from_statistics(text), self.group_id)

    def _client_error(self, error: KafkaError) -> None:
        """librdkafka's word that no broker answers, or that they refuse the worker's sign-in
        (served while the client polls): /readyz says which. One broker's connection dropping
        (_TRANSPORT: a rolling restart) is no outage: the others answer."""
        if error.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE, *REFUSED_SIGN_IN):
            if self.health is not None:
                self.health.down("kafka", str(error), CLIENT)
        else:
            self._client_errors.warning("Kafka: %s", error)

    # -- reading ---------------------------------------------------------------------------------
    def subscribe(self, topics: Sequence[str], on_assigned: Assigned, on_revoked: Revoked) -> None:
        def assigned(consumer: Consumer, partitions: list[KafkaTP]) -> None:
            self._partition_counts.clear()  # a group changes when a topic gains partitions: read them again
            held = on_assigned([(tp.topic, tp.partition) for tp in partitions])
            consumer.assign(partitions)
            if held:
                consumer.pause([KafkaTP(topic, number) for topic, number in held])

        def revoked(consumer: Consumer, partitions: list[KafkaTP]) -> None:
            lost = [(tp.topic, tp.partition) for tp in partitions]
            for tp in lost:
                self._pending_seeks.pop(tp, None)
            on_revoked(lost)
            consumer.unassign()

        self.consumer.subscribe(list(topics), on_assign=assigned, on_revoke=revoked, on_lost=revoked)

    def poll(self, max_records: int, timeout: float) -> list[Record]:
        """What has been fetched, up to `max_records`, waiting up to `timeout` only when nothing
        has; then up to `linger` more for a fuller batch (librdkafka's `consume(n, timeout)` waits
        for all `n` or the timeout). Each batch is one transaction, whose commit costs about the
        same for 5 records as for 500: at a moderate rate, batches of what had just arrived spent
        more on commits than on invoices (bench/pipeline_bench.py, "produce + commit")."""
        messages = self.consumer.consume(max_records, 0)
        if not messages:
            messages = self.consumer.consume(1, timeout)
        if messages and len(messages) < max_records:
            messages += self.consumer.consume(max_records - len(messages), self.linger)
        records = []
        for message in messages:
            error = message.error()
            if error is not None:
                named, fetched = message.topic(), message.offset()  # the topic it is about, when it is about one
                if error.code() in UNREADABLE_TOPIC and named and self.health is not None:
                    # One about a partition's fetch carries the offset it fetched; one about the
                    # topic as a whole, none (OFFSET_INVALID).
                    self._topic_unreadable(named, error, by_fetch=fetched is not None and fetched >= 0)
                if error.code() != KafkaError._PARTITION_EOF:
                    self._client_error(error)
                continue
            _, timestamp = message.timestamp()
            topic, partition, offset = _origin(message)
            # A consumed message's headers are a list of (name, bytes or None); the stub's HeadersType
            # is the wider union a producer accepts (a dict, str values).
            headers: tuple[tuple[str, bytes | None], ...] = tuple(message.headers() or ())  # type: ignore[arg-type]
            records.append(Record(topic, partition, offset, message.key(),
                                  message.value(), timestamp if timestamp > 0 else None, headers))
            if topic in self._unreadable:
                self._readable(topic)
        if self.health is not None and self.health.waits("kafka", CLIENT):
            self._probe()
        if self._unreadable:
            self._probe_topics()
        return records

    def _topic_unreadable(self, topic: str, error: KafkaError, by_fetch: bool) -> None:
        """Kafka is down for the worker while it may not read one of its topics: its records (the
        RPA bot's completions, say) are never read. It was a rate-limited warning, /readyz green.
        librdkafka says it once, and nothing when the topic can be read again: a topic missing from
        the brokers' metadata (deleted, or not to be described) is back once they describe it; one
        whose fetches they refuse (an ACL that lets the group describe it, not read it) once a
        record of it is read."""
        assert self.health is not None
        self._unreadable[topic] = not by_fetch
        self.health.down("kafka", f"topic {topic} cannot be read ({error.name()}): {error.str()}",
                         f"{CLIENT}: {topic}")

    def _readable(self, topic: str) -> None:
        del self._unreadable[topic]
        if self.health is not None:
            self.health.back("kafka", f"{CLIENT}: {topic}")

    def _probe_topics(self) -> None:
        """Asks the brokers, now and then, for the metadata of each topic missing from it: described
        with partitions and without an error, it is back."""
        now = time.monotonic()
        if now - self._topics_probed_at < 5.0:
            return
        self._topics_probed_at = now
        for topic, described_is_back in list(self._unreadable.items()):
            if not described_is_back:
                continue
            try:
                found = self.consumer.list_topics(topic, timeout=2.0).topics.get(topic)
            except KafkaException:  # no broker answers: that outage is told on its own
                continue
            if found is not None and found.error is None and found.partitions:
                self._readable(topic)

    def _probe(self) -> None:
        """While Kafka counts as down, asks a broker for metadata now and then: an answer means it
        is back (records still in the client's queue prove nothing)."""
        now = time.monotonic()
        if now - self._probed_at < 5.0:
            return
        self._probed_at = now
        try:
            self.consumer.list_topics(timeout=2.0)
        except Exception:  # KafkaException: still down
            return
        assert self.health is not None
        self.health.back("kafka", CLIENT)

    def hold(self, partition: TopicPartition, offset: int | None) -> None:
        self.consumer.pause([KafkaTP(*partition)])
        if offset is not None:
            self._pending_seeks[partition] = offset
            self._seek_pending(partition)

    def _seek_pending(self, partition: TopicPartition) -> None:
        try:
            self.consumer.seek(KafkaTP(*partition, self._pending_seeks[partition]))
            del self._pending_seeks[partition]
        except KafkaException as exc:  # tried again on release: the partition stays held meanwhile
            log.warning("seeking %s[%s] to %s failed: %s", *partition, self._pending_seeks[partition], exc)

    def release(self, partition: TopicPartition) -> bool:
        if partition in self._pending_seeks:
            self._seek_pending(partition)
            if partition in self._pending_seeks:
                return False
        self.consumer.resume([KafkaTP(*partition)])
        return True

    def behind(self, partitions: Sequence[TopicPartition]) -> int:
        # The high watermark as the last fetch response gave it, and the position: both local.
        # Each transaction's commit marker counts as a record: a few per partition, not hundreds.
        # A partition not read from since it was assigned has no position and counts as none.
        total = 0
        for position in self.consumer.position([KafkaTP(*partition) for partition in partitions]):
            _, end = self.consumer.get_watermark_offsets(position, cached=True)
            if position.offset >= 0 and end >= 0:
                total += max(0, end - position.offset)
        return total

    def partition_for(self, topic: str, key: bytes) -> int:
        count = self._partition_counts.get(topic)
        if count is None:  # asked once a rebalance: partitions added to a topic start one
            failed = self._partition_count_failed.get(topic)
            if failed is not None and time.monotonic() < failed[1]:  # each record would wait 5 s for it
                raise Unavailable("kafka", failed[0])
            try:
                found = self.consumer.list_topics(topic, timeout=5.0).topics.get(topic)
                if found is None or found.error is not None or not found.partitions:
                    raise KafkaException(found.error if found is not None else "no such topic")
            except KafkaException as exc:
                said = f"reading the partitions of {topic}: {exc.args[0]}"
                self._partition_count_failed[topic] = said, time.monotonic() + 10.0
                raise Unavailable("kafka", said) from None
            count = self._partition_counts[topic] = len(found.partitions)
        return kafka_partition(key, count)

    # -- writing ---------------------------------------------------------------------------------
    def begin(self) -> None:
        if not self._in_transaction:
            try:
                self.producer.begin_transaction()
            except KafkaException as exc:  # the producer is in no state to go on: a new one next time
                self._drop_producer()
                raise _kafka_unavailable(exc.args[0], "beginning a transaction") from None
            self._in_transaction = True
            self._delivered, self._failed = {}, []

    def _delivery(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self._failed.append(str(error))
            return
        topic, partition, offset = _origin(message)
        self._delivered[topic, partition] = max(self._delivered.get((topic, partition), -1), offset)

    def produce(self, output: Output) -> None:
        kwargs: dict[str, Any] = {"key": output.key, "value": output.value, "on_delivery": self._delivery}
        if output.partition is not None:
            kwargs["partition"] = output.partition
        if output.headers:
            kwargs["headers"] = list(output.headers)
        producer = self.producer
        while True:
            try:
                producer.produce(output.topic, **kwargs)
                producer.poll(0)
                return
            except BufferError:  # the local queue is full: let librdkafka send some first
                producer.poll(0.1)
            except KafkaException as exc:
                # The transaction can take no more (an earlier record of it refused, the producer
                # fenced): raised, it failed the step outside the commit's handling, batch after batch.
                raise self._transaction_failed(exc, "producing a batch") from None

    def commit(self, offsets: Mapping[TopicPartition, int]) -> dict[TopicPartition, int]:
        try:
            if offsets:
                group = self.consumer.consumer_group_metadata()
                positions = [KafkaTP(topic, number, offset) for (topic, number), offset in offsets.items()]
                producer = self.producer
                self._called_again("sending the offsets",
                                   lambda timeout: producer.send_offsets_to_transaction(positions, group, timeout))
            self._called_again("committing", self.producer.commit_transaction)
        except KafkaException as exc:
            raise self._transaction_failed(exc, "committing a batch") from None
        except RuntimeError as exc:  # no consumer group metadata: the member left the group
            self._lose(fatal=False)
            raise LostBatch(str(exc)) from None
        self._in_transaction = False
        if self._failed:  # cannot happen after a successful commit; kept loud if it ever does
            raise LostBatch(f"delivery failed inside a committed transaction: {self._failed[0]}")
        return dict(self._delivered)

    def _transaction_failed(self, exc: KafkaException, doing: str) -> Unavailable | LostBatch:
        """What librdkafka's error inside a transaction is to the runtime: an outage to wait out, or
        a lost batch (the transaction aborted, or the producer let go when it can do no more)."""
        error = exc.args[0]
        if error.retriable():
            return _kafka_unavailable(error, doing)
        log.warning("Kafka transaction lost %s (%s); the batch is read again", doing, error)
        self._lose(fatal=error.fatal() or not error.txn_requires_abort())
        return LostBatch(str(error))

    def _called_again(self, doing: str, call: Callable[[float], Any]) -> None:
        """`call(timeout)` until it succeeds, fails for good, or COMMIT_TIMEOUT is up. A retriable
        error leaves its work in progress, a commit perhaps done already: librdkafka has the same
        call made again, never an abort (which would have the batch produced a second time beside a
        transaction that committed). The last retriable error goes to the caller, Kafka down."""
        deadline = time.monotonic() + COMMIT_TIMEOUT
        while True:
            try:
                self._within_deadline(doing, call, max(deadline - time.monotonic(), RETRY_PAUSE))
                return
            except KafkaException as exc:
                if not exc.args[0].retriable() or time.monotonic() + RETRY_PAUSE >= deadline:
                    raise
                log.info("Kafka: %s failed (%s); called again", doing, exc.args[0])
                time.sleep(RETRY_PAUSE)

    def _within_deadline(self, doing: str, call: Callable[..., Any], *args: Any) -> None:
        """Calls a transactional method on a thread of its own and gives up on it when it outlives
        its own timeout: librdkafka can wait for a group coordinator that is gone and ignore the
        timeout (confluentinc/librdkafka#5456, #5511; seen here after a broker restart). The
        producer is then let go: its transaction, never committed, is aborted by the broker."""
        outcome: list[BaseException | None] = []

        def attempt() -> None:
            try:
                call(*args)
                outcome.append(None)
            except BaseException as exc:  # handed back to the caller's thread below
                outcome.append(exc)

        worker = threading.Thread(target=attempt, name=f"kafka-{doing.replace(' ', '-')}", daemon=True)
        worker.start()
        worker.join(COMMIT_TIMEOUT + 5)
        if not outcome:
            log.warning("Kafka: %s did not return in %.0f s; a new producer takes over", doing, COMMIT_TIMEOUT + 5)
            self._producer, self._in_transaction = None, False
            raise LostBatch(f"{doing} did not return")
        if outcome[0] is not None:
            raise outcome[0]

    def _lose(self, fatal: bool) -> None:
        self._in_transaction = False
        if not fatal:
            try:
                self.producer.abort_transaction(5.0)
                return
            except Exception as exc:  # could not even abort (Kafka down): start over with a new producer
                log.warning("aborting the transaction failed (%s); a new producer takes over", exc)
        self._drop_producer()

    def _drop_producer(self) -> None:
        """What the old producer still holds is cancelled; its open transaction, if any, is aborted by
        the broker when it times out, so none of it is ever read."""
        if self._producer is not None:
            self._producer.purge()
            self._producer = None
        self._in_transaction = False

    def abort(self) -> None:
        if self._in_transaction:
            self._lose(fatal=False)

    # -- state -----------------------------------------------------------------------------------
    def cluster_of(self, topic: str) -> str:
        try:  # the metadata of one topic: the whole cluster's may be thousands of topics
            cluster_id = self.consumer.list_topics(topic, timeout=self.timeout).cluster_id
        except KafkaException as exc:
            raise _kafka_unavailable(exc.args[0], f"reading the cluster id with {topic}'s metadata") from None
        return str(cluster_id)  # None only from brokers older than 0.10.1: then the same for every cluster

    def restore(self, topic: str, starts: Mapping[int, int | None],
                stable: Sequence[TopicPartition]) -> Iterator[tuple[int, int, bytes | None, bytes | None]]:
        try:
            # Waits for transactions still open on these partitions (KIP-447 stable offsets), so
            # the changelog read below already holds whatever they committed.
            self.consumer.committed([KafkaTP(*tp) for tp in stable], timeout=self.timeout)
        except KafkaException as exc:
            # A timeout here is a transaction still open on the group's offsets: one of a producer
            # that died ends with its timeout; one that never ends hangs (README, "A hanging transaction").
            raise _kafka_unavailable(exc, "reading committed offsets, which wait for open transactions") from None
        missing: list[str] = []  # librdkafka names a partition the topic does not have to error_cb alone

        def client_error(error: KafkaError) -> None:
            if error.code() == KafkaError._UNKNOWN_PARTITION:
                missing.append(error.str())
            else:  # librdkafka logs its errors only while no error_cb takes them
                self._client_errors.warning("Kafka while restoring %s: %s", topic, error)

        # A start the partition does not have is an error, not read from the beginning: read on top of
        # the store, another changelog's records were mixed with what the store held.
        reader = Consumer(client_config(self.bootstrap, "restore", **{
            "group.id": f"{self.group_id}.restore", "enable.auto.commit": False, "enable.partition.eof": True,
            "isolation.level": "read_committed", "auto.offset.reset": "error", "error_cb": client_error}))
        try:
            reader.assign([KafkaTP(topic, number, OFFSET_BEGINNING if start is None else start)
                           for number, start in starts.items()])
            open_partitions, quiet_since = set(starts), time.monotonic()
            while open_partitions:
                messages = reader.consume(1000, 0.5)
                if missing:
                    raise Unavailable("topic-partitions", _missing_partition(missing[0]))
                if not messages and time.monotonic() - quiet_since > self.timeout:
                    raise Unavailable("kafka", f"restoring {topic}: no progress for {self.timeout:.0f} s")
                for message in messages:
                    quiet_since = time.monotonic()
                    error, number = message.error(), message.partition()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            open_partitions.discard(number)
                        elif error.code() == KafkaError._AUTO_OFFSET_RESET and number is not None:
                            # Its start out of range, as auto.offset.reset=error says it.
                            raise StartOutOfRange(number, f"{topic} [{number}] at offset {starts[number]}: "
                                                          f"{error.str()}")
                        else:
                            log.warning("Kafka while restoring %s: %s", topic, error)
                        continue
                    _, partition, offset = _origin(message)
                    yield partition, offset, message.key(), message.value()
        finally:
            reader.close()

    def close(self) -> None:
        self.abort()
        if self._producer is not None:
            self._producer.flush(self.timeout)
        self.consumer.close()


def _missing_partition(said: str) -> str:
    return (f"{said}: the work topics have more partitions than their changelog. A PO's state is kept by "
            "partition number, so partitions cannot be added while the pipeline keeps state; the partitions "
            "wait (README, \"Scaling out\")")
