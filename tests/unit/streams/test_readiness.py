"""What /readyz says of a dependency is what every part of the worker waiting on it says: down
until the last of them is answered, and never for longer."""

from __future__ import annotations

import tempfile
from pathlib import Path

from rules.errors import DataError, Unavailable
from streams.broker_memory import InMemoryBroker
from streams.failures import Backoff
from streams.health import WorkerHealth
from streams.runtime import Flow, Runtime, Source
from streams.state import Store


def _runtime(broker: InMemoryBroker, clock: list[float]) -> tuple[Runtime, WorkerHealth]:
    health = WorkerHealth()
    runtime = Runtime(broker, dlq_topic="dlq", encode=lambda message: b"x", health=health, clock=lambda: clock[0],
                      sleep=lambda seconds: None, backoff=Backoff(draw=lambda: 0.0))
    return runtime, health


def test_a_dependency_is_back_only_when_no_flow_waits_for_it():
    """Flow A answered while B's partition was still held for Sampro: /readyz said ready, and the
    outage began anew at B's next try, so its "since" never grew."""
    clock, up = [0.0], {"A": False, "B": False}
    broker = InMemoryBroker(partitions=1)
    runtime, health = _runtime(broker, clock)

    def handler(name):
        def handle(batch):
            if not up[name]:
                raise Unavailable("sampro", "connection refused")
        return handle

    runtime.add_flow(Flow("A", ("a",), decode=lambda record: record.value, handle=handler("A")))
    runtime.add_flow(Flow("B", ("b",), decode=lambda record: record.value, handle=handler("B")))
    runtime.start()
    broker.append("a", b"k", b"1")
    broker.append("b", b"k", b"1")
    runtime.step()
    since = health.outages()["sampro"].since
    clock[0], up["A"] = 0.5, True
    runtime.step()
    assert not health.readiness()[0] and health.outages()["sampro"].since == since  # B still waits
    clock[0], up["B"] = 1.0, True
    runtime.step()
    assert health.readiness()[0] and health.outages() == {}


def _sampro_away(batch):
    raise Unavailable("sampro", "connection refused")


def _garbage_refused(record):
    if record.value == b"garbage":
        raise DataError("not an invoice")
    return record.value


def test_a_flow_whose_held_partition_went_to_another_worker_waits_no_more():
    """The partition left; the outage stayed, and /readyz said not ready until the flow happened
    to read another record."""
    clock = [0.0]
    broker = InMemoryBroker(partitions=2)
    runtime, health = _runtime(broker, clock)
    runtime.add_flow(Flow("A", ("a",), decode=lambda record: record.value, handle=_sampro_away))
    runtime.start()
    broker.append("a", b"k", b"1", partition=0)
    runtime.step()
    assert "sampro" in health.outages()
    runtime._on_revoked([("a", 0), ("a", 1)])
    assert "sampro" in health.outages()  # the eager protocol revokes all, then assigns: not over yet
    runtime._on_assigned([("a", 1)])
    assert health.readiness()[0] and health.outages() == {}


def test_a_rebalance_in_an_outage_neither_ends_it_nor_starts_it_again():
    """Released at the revocation, the outage was "back" between the two halves of each
    rebalance, then down again with its "since" reset."""
    clock = [0.0]
    broker = InMemoryBroker(partitions=1)
    runtime, health = _runtime(broker, clock)
    runtime.add_flow(Flow("A", ("a",), decode=lambda record: record.value, handle=_sampro_away))
    runtime.start()
    broker.append("a", b"k", b"1")
    runtime.step()
    since = health.outages()["sampro"].since
    broker._on_revoked([("a", 0)])
    assert not health.readiness()[0]
    broker._assign()
    clock[0] += 5
    runtime.step()
    assert health.outages()["sampro"].since == since


def test_a_record_dead_lettered_beside_a_waiting_partition_says_nothing_of_its_outage():
    clock = [0.0]
    broker = InMemoryBroker(partitions=2)
    runtime, health = _runtime(broker, clock)
    runtime.add_flow(Flow("A", ("a",), decode=_garbage_refused, handle=_sampro_away))
    runtime.start()
    broker.append("a", b"k", b"invoice", partition=0)
    runtime.step()
    since = health.outages()["sampro"].since
    clock[0] = 1.0  # partition 0's hold is due: released, its record read again
    broker.append("a", b"k", b"garbage", partition=1)
    runtime.step()
    assert len(broker.records("dlq")) == 1 and health.outages()["sampro"].since == since


def test_a_partition_that_waits_for_two_dependencies_in_one_batch_keeps_both_until_each_record_commits():
    """With the schema registry and Sampro both away, one record decoded and the next did not:
    the partition went from one to the other at every try, each logged back and down again."""
    clock, away = [0.0], {"schema-registry", "sampro"}
    broker = InMemoryBroker(partitions=1)
    runtime, health = _runtime(broker, clock)

    def decode(record):
        if record.value == b"new-schema" and "schema-registry" in away:
            raise Unavailable("schema-registry", "connection refused")
        return record.value

    def handle(batch):
        if "sampro" in away:
            raise Unavailable("sampro", "connection refused")

    runtime.add_flow(Flow("A", ("a",), decode=decode, handle=handle))
    runtime.start()
    broker.append("a", b"k", b"known")
    broker.append("a", b"k", b"new-schema")
    runtime.step()
    since = {name: outage.since for name, outage in health.outages().items()}
    for _ in range(3):
        clock[0] += 11
        runtime.step()
    assert {name: outage.since for name, outage in health.outages().items()} == since
    assert sorted(since) == ["sampro", "schema-registry"]
    away.discard("sampro")
    clock[0] += 11
    runtime.step()
    assert sorted(health.outages()) == ["schema-registry"]  # its record is not committed yet
    away.clear()
    for _ in range(3):
        clock[0] += 11
        runtime.step()
    assert health.outages() == {} and broker.committed[("a", 0)] == 2


def test_a_failed_commit_or_a_source_whose_partition_left_waits_no_more_after_the_next_assignment():
    """Kafka stayed down for good after three failed commits whose partitions went to another
    worker, and the marketplace after the poller's anchor partition did."""
    clock = [0.0]
    broker = InMemoryBroker(partitions=2)
    runtime, health = _runtime(broker, clock)

    def poll(batch):
        raise Unavailable("marketplace", "connection refused")

    runtime.add_flow(Flow("A", ("a",), decode=lambda record: record.value, handle=lambda batch: None))
    runtime.add_source(Source("poll-marketplace", 1.0, ("a", 0), poll))
    runtime.start()
    broker.append("a", b"k", b"1", partition=0)
    broker.failing_commits = 3
    runtime.step()
    assert sorted(health.outages()) == ["kafka", "marketplace"]
    runtime._on_revoked([("a", 0), ("a", 1)])
    runtime._on_assigned([("a", 1)])
    assert health.readiness()[0] and health.outages() == {}


def test_what_a_restore_failed_on_is_back_once_a_restore_succeeds():
    """A changelog short of partitions (topic-partitions) stayed down after the operator added
    them and every partition was read: only a restart cleared it."""
    class Broker(InMemoryBroker):
        missing = True

        def restore(self, topic, starts, stable):
            if self.missing:
                raise Unavailable("topic-partitions", "the changelog has no partition 1")
            yield from super().restore(topic, starts, stable)

    clock, handled = [0.0], []
    broker = Broker(partitions=2)
    runtime, health = _runtime(broker, clock)
    store = Store("ledgers", "ledgers.changelog", "memory://", Path(tempfile.mkdtemp()))
    runtime.add_flow(Flow("A", ("a",), decode=lambda record: record.value, handle=handled.append, store=store))
    runtime.start()
    runtime.step()
    assert "topic-partitions" in health.outages()
    broker.missing = False
    broker.append("a", b"k", b"1")
    for _ in range(5):
        clock[0] += 1
        runtime.step()
    assert handled and health.readiness()[0] and health.outages() == {}


def test_each_waiter_is_counted_once_whatever_it_says():
    health = WorkerHealth()
    health.down("kafka", "all brokers down", "kafka client")
    health.down("kafka", "commit timed out", "worker:commit:")
    health.down("kafka", "commit timed out", "worker:commit:")
    health.back("kafka", "kafka client")
    assert "kafka" in health.outages() and health.outages()["kafka"].detail == "all brokers down"
    health.back("kafka", "worker:commit:")
    assert health.outages() == {} and health.readiness()[1]["down"] == {}


def test_lag_keeps_every_partition_held_and_drops_those_given_up():
    """The gauge was cleared and then set again: a scrape in between saw no lag at all."""
    from prometheus_client import generate_latest

    health = WorkerHealth()

    def shown() -> dict[str, float]:
        lines = generate_latest(health.registry).decode().splitlines()
        return {line.split("{")[1].split("}")[0]: float(line.rsplit(" ", 1)[1])
                for line in lines if line.startswith("invoice_automation_worker_consumer_lag{")}

    health.record_lag({("invoices", 0): 5, ("invoices", 1): 0}, "pipeline")
    health.record_lag({("rpa.requests", 0): 2}, "rpa-mail")
    assert shown() == {'partition="0",topic="invoices"': 5, 'partition="1",topic="invoices"': 0,
                       'partition="0",topic="rpa.requests"': 2}
    health.record_lag({("invoices", 1): 3}, "pipeline")
    assert shown() == {'partition="1",topic="invoices"': 3, 'partition="0",topic="rpa.requests"': 2}


def test_commits_that_still_fail_through_a_rebalance_stay_one_outage():
    """Cleared at any assignment, the commit's Kafka outage was back and down again at each
    rebalance, ready in between while nothing committed."""
    clock = [0.0]
    broker = InMemoryBroker(partitions=1)
    runtime, health = _runtime(broker, clock)
    runtime.add_flow(Flow("A", ("a",), decode=lambda record: record.value, handle=lambda batch: None))
    runtime.start()
    broker.append("a", b"k", b"1")
    broker.failing_commits = 100
    runtime.step()
    since = health.outages()["kafka"].since
    broker.rebalance()
    assert not health.readiness()[0]
    clock[0] += 1
    runtime.step()
    assert health.outages()["kafka"].since == since
    broker.failing_commits = 0
    clock[0] += 1
    runtime.step()
    assert health.outages() == {}


def test_a_record_before_the_waiting_one_says_nothing_of_its_outage_when_read_again():
    """After a failed commit the partition is read again from its first record; that one, dead-
    lettered, said Sampro was back, and the next logged it down again."""
    clock = [0.0]
    broker = InMemoryBroker(partitions=1)
    runtime, health = _runtime(broker, clock)
    runtime.add_flow(Flow("A", ("a",), decode=_garbage_refused, handle=_sampro_away))
    runtime.start()
    broker.append("a", b"k", b"garbage")
    broker.append("a", b"k", b"invoice")
    broker.failing_commits = 3
    runtime.step()
    since = health.outages()["sampro"].since
    for _ in range(3):
        clock[0] += 11
        runtime.step()
    assert len(broker.records("dlq")) == 1 and health.outages()["sampro"].since == since


def test_a_later_record_held_for_the_same_dependency_keeps_the_partition_waiting():
    """The partition kept its first hold's offset; a commit past it let the wait go while the
    next record was held for the same outage: ready, then down again."""
    clock, batches = [0.0], [0]
    broker = InMemoryBroker(partitions=1)
    runtime, health = _runtime(broker, clock)

    def handle(batch):
        batches[0] += 1
        if batches[0] == 1:
            raise Unavailable("sampro", "connection refused")
        if len(batch.items) > 1:
            raise DataError("one of them is bad: tried one by one")
        if batch.items[0][0].offset == 1:
            raise Unavailable("sampro", "connection refused again")

    runtime.add_flow(Flow("A", ("a",), decode=lambda record: record.value, handle=handle))
    runtime.start()
    for _ in range(3):
        broker.append("a", b"k", b"invoice")
    runtime.step()
    since = health.outages()["sampro"].since
    clock[0] = 10.0
    runtime.step()
    assert broker.committed[("a", 0)] == 1 and not health.readiness()[0]
    assert health.outages()["sampro"].since == since


def test_a_batch_lost_after_a_failed_commit_waits_for_kafka_only_while_its_partitions_are_here():
    """A commit that failed, then lost its batch (the member left the group), kept Kafka down for
    good once its partitions went to another worker."""
    clock = [0.0]
    broker = InMemoryBroker(partitions=2)
    runtime, health = _runtime(broker, clock)
    runtime.add_flow(Flow("A", ("a",), decode=lambda record: record.value, handle=lambda batch: None))
    runtime.start()
    broker.append("a", b"k", b"1", partition=0)
    broker.failing_commits, broker.losing_commits = 1, 1
    runtime.step()
    assert "kafka" in health.outages()
    runtime._on_revoked([("a", 0), ("a", 1)])
    runtime._on_assigned([("a", 1)])
    assert health.outages() == {}


def test_a_step_that_does_not_come_back_within_the_poll_interval_is_named_until_it_does():
    """A write waiting on a lock that was never let go: the loop read and committed nothing, the
    consumer group let its partitions go, and /readyz said ready all along."""
    now = [0.0]
    health = WorkerHealth(stalled_after=300, clock=lambda: now[0])
    broker = InMemoryBroker(partitions=1)
    runtime = Runtime(broker, dlq_topic="dlq", encode=lambda message: b"x", health=health, name="pipeline",
                      sleep=lambda seconds: None)
    seen = []

    def stuck(batch):  # readiness as the HTTP thread reads it while the step waits
        now[0] += 299
        seen.append(health.readiness())
        now[0] += 2
        seen.append(health.readiness())

    runtime.add_flow(Flow("record", ("verdicts",), decode=lambda record: record.value, handle=stuck))
    runtime.start()
    broker.append("verdicts", b"PO-1", b"1")
    runtime.step_or_back_off(lambda: False)
    (ready, _), (stalled, body) = seen
    assert ready and not stalled
    assert body["down"]["loop"]["detail"].startswith(
        "pipeline: in one step for 301 s, longer than Kafka's max.poll.interval (300 s)")
    assert health.readiness() == (True, {"ready": True, "started": True, "down": {}})
