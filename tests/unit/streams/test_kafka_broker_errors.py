"""The confluent-kafka adapter's errors mapped into the runtime's, on a producer that raises as
librdkafka does (no broker needed to check it)."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from rules.errors import Unavailable
from streams.broker import KafkaStreamBroker, LostBatch, Output


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
