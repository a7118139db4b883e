"""New invoices wait in Kafka while the worker's verdicts wait to be recorded (streams/back_pressure.py)."""

from __future__ import annotations

from streams.back_pressure import BackPressure
from streams.broker_memory import InMemoryBroker

INVOICES, VERDICTS = "invoices", "verdicts"


def subscribed() -> tuple[InMemoryBroker, list[tuple[str, int]], BackPressure]:
    """Two partitions of each topic, four invoices in them, and invoices waiting above 4 verdicts unread."""
    broker = InMemoryBroker(partitions=2)
    assigned: list[tuple[str, int]] = []
    broker.subscribe([INVOICES, VERDICTS], lambda partitions: assigned.extend(partitions) or set(), lambda _: None)
    for n in range(4):
        broker.append(INVOICES, f"PO-{n}".encode(), b"invoice")
    return broker, assigned, BackPressure(INVOICES, VERDICTS, most_behind=4)


def verdicts(broker: InMemoryBroker, count: int) -> None:
    for n in range(count):
        broker.append(VERDICTS, f"PO-{n}".encode(), b"verdict")


def topics_polled(broker: InMemoryBroker) -> set[str]:
    return {record.topic for record in broker.poll(100, 0)}


def test_invoices_wait_while_more_verdicts_than_allowed_are_unread_and_go_on_below_half():
    broker, assigned, pressure = subscribed()
    verdicts(broker, 5)
    pressure.apply(broker, assigned, held=())
    assert pressure.paused == {(INVOICES, 0), (INVOICES, 1)}
    assert topics_polled(broker) == {VERDICTS}  # every record read is the sink's
    verdicts(broker, 3)  # 3 unread: above half of 4, so the invoices still wait
    pressure.apply(broker, assigned, held=())
    assert topics_polled(broker) == {VERDICTS} and pressure.paused
    verdicts(broker, 2)
    pressure.apply(broker, assigned, held=())
    assert pressure.paused == set() and topics_polled(broker) == {INVOICES, VERDICTS}


def test_within_the_limit_nothing_waits():
    broker, assigned, pressure = subscribed()
    verdicts(broker, 4)
    pressure.apply(broker, assigned, held=())
    assert pressure.paused == set() and topics_polled(broker) == {INVOICES, VERDICTS}


def test_a_partition_held_for_a_failure_is_left_to_the_runtime():
    broker, assigned, pressure = subscribed()
    broker.hold((INVOICES, 1), None)  # as the runtime holds it, waiting out an outage
    verdicts(broker, 5)
    pressure.apply(broker, assigned, held={(INVOICES, 1)})
    assert pressure.paused == {(INVOICES, 0)}
    assert topics_polled(broker) == {VERDICTS}
    pressure.apply(broker, assigned, held={(INVOICES, 1)})
    assert pressure.paused == set()
    assert {record.source for record in broker.poll(100, 0)} == {(INVOICES, 0)}  # (INVOICES, 1) is still held


def test_the_worker_holds_back_invoices_for_its_verdicts(tmp_path):
    from tests.unit.streams.conftest import make_worker

    worker = make_worker(tmp_path)
    pressure = worker.pipeline.runtime.back_pressure
    topics = worker.pipeline.topics
    assert (pressure.intake, pressure.downstream) == (topics.invoices, topics.verdicts)
    assert pressure.most_behind == 2 * worker.pipeline.settings.batch_size
