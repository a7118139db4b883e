"""Commands for a purchase order's stream: RPA completions, AP releases and dispatch approvals.

The HTTP API never writes processscheduler; it puts a command on the PO's stream and the
per-PO ledger decides what it means, in order with everything else for that PO. Completions
go to the completions topic, AP commands to the commands topic, both keyed by `po_number`.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from connectors.api_ports import CommandNotDelivered, PurchaseOrderCommand, PurchaseOrderCommands
from connectors.kafka_clients import KafkaCluster, client_config
from rules.models import RpaCompletion
from schemas.codec import Codec

if TYPE_CHECKING:
    from confluent_kafka import KafkaError, Message, Producer

def topic_for(command: PurchaseOrderCommand, completions_topic: str, commands_topic: str) -> str:
    return completions_topic if isinstance(command, RpaCompletion) else commands_topic


class InMemoryPurchaseOrderCommands(PurchaseOrderCommands):
    """Keeps what was published, per topic, for unit tests."""

    def __init__(self, completions_topic: str = "rpa.completions", commands_topic: str = "po.commands"):
        self.completions_topic, self.commands_topic = completions_topic, commands_topic
        self.published: list[tuple[str, str, PurchaseOrderCommand]] = []  # (topic, key, command)
        self.reachable = True

    def publish(self, command: PurchaseOrderCommand) -> None:
        self.ping()
        self.published.append((topic_for(command, self.completions_topic, self.commands_topic),
                               command.po_number, command))

    def ping(self) -> None:
        if not self.reachable:
            raise CommandNotDelivered("the in-memory broker is switched off")


class KafkaPurchaseOrderCommands(PurchaseOrderCommands):
    """confluent-kafka producer, idempotent with acks=all; each command is flushed before returning,
    so a 202 from the API means the command is on the PO's stream."""

    def __init__(self, bootstrap_servers: KafkaCluster | str, codec: Codec, completions_topic: str, commands_topic: str,
                 timeout: float = 10.0):
        self.codec, self.timeout = codec, timeout
        self.completions_topic, self.commands_topic = completions_topic, commands_topic
        # murmur2 as the Java and Faust producers use, so a PO lands on the same partition number everywhere.
        self.config = client_config(bootstrap_servers, "commands", **{
            "partitioner": "murmur2_random", "enable.idempotence": True, "acks": "all",
            "message.timeout.ms": int(timeout * 1000)})
        self._producer: Producer | None = None
        self._lock = threading.Lock()

    @property
    def producer(self) -> Producer:
        """Made on first use, so an API that only reads never holds a connection to Kafka."""
        with self._lock:
            if self._producer is None:
                from confluent_kafka import Producer

                self._producer = Producer(self.config)
            return self._producer

    def publish(self, command: PurchaseOrderCommand) -> None:
        failures: list[str] = []

        def delivered(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                failures.append(str(error))

        topic = topic_for(command, self.completions_topic, self.commands_topic)
        self.producer.produce(topic, key=command.po_number.encode(), value=self.codec.encode(command),
                              on_delivery=delivered)
        if self.producer.flush(self.timeout) > 0:
            raise CommandNotDelivered(f"{topic}: not acknowledged within {self.timeout:.0f} s")
        if failures:
            raise CommandNotDelivered(f"{topic}: {failures[0]}")

    def ping(self) -> None:
        try:
            self.producer.list_topics(timeout=min(self.timeout, 3.0))
        except Exception as exc:  # KafkaException: broker down or unreachable
            raise CommandNotDelivered(f"Kafka cannot be reached: {exc}") from None
