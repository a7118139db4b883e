"""One contract for every publisher of PO commands: in memory, and real Kafka read back from the topics."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic

from connectors.api_ports import CommandNotDelivered
from connectors.po_commands import InMemoryPurchaseOrderCommands, KafkaPurchaseOrderCommands
from devstack.process import free_port
from rules.lifecycle import DispatchApproved, ReleaseRequested
from rules.models import CompletionOutcome, RpaCompletion
from schemas.codec import SingleObjectCodec

AT = datetime(2026, 11, 25, 12, tzinfo=UTC)
COMPLETION = RpaCompletion(event_id="rpa:MP-1:v1:attempt1", invoice_id="MP-1", invoice_version=1, po_number="PO-1",
                           outcome=CompletionOutcome.SUCCESS, sampro_invoice_id="S-1", occurred_at=AT)
RELEASE = ReleaseRequested(command_id="release:1", invoice_id="MP-2", invoice_version=1, po_number="PO-1", user="ana",
                           reason="buyer agreed", issued_at=AT)
DISPATCH = DispatchApproved(command_id="dispatch:1", invoice_id="MP-3", invoice_version=2, po_number="PO-2",
                            user="ana", issued_at=AT)


class PurchaseOrderCommandsContract:
    @pytest.fixture
    def publisher(self):
        raise NotImplementedError

    def read_back(self, publisher, topic: str, expected: int) -> list[tuple[str, object]]:
        """(key, command) in the order the topic holds them."""
        raise NotImplementedError

    def test_a_completion_goes_to_the_completions_topic_keyed_by_po(self, publisher):
        publisher.publish(COMPLETION)
        assert self.read_back(publisher, publisher.completions_topic, 1) == [("PO-1", COMPLETION)]

    def test_ap_commands_go_to_the_commands_topic_in_order_per_po(self, publisher):
        for command in (RELEASE, DISPATCH, RELEASE.model_copy(update={"command_id": "release:2"})):
            publisher.publish(command)
        found = self.read_back(publisher, publisher.commands_topic, 3)
        second_release = RELEASE.model_copy(update={"command_id": "release:2"})
        assert sorted(found, key=lambda kc: kc[0]) == [("PO-1", RELEASE), ("PO-1", second_release), ("PO-2", DISPATCH)]
        assert self.read_back(publisher, publisher.completions_topic, 0) == []

    def test_ping_answers_when_the_broker_is_there(self, publisher):
        publisher.ping()


class TestInMemoryCommands(PurchaseOrderCommandsContract):
    @pytest.fixture
    def publisher(self):
        return InMemoryPurchaseOrderCommands()

    def read_back(self, publisher, topic: str, expected: int):
        return [(key, command) for t, key, command in publisher.published if t == topic]


class TestKafkaCommands(PurchaseOrderCommandsContract):
    @pytest.fixture
    def publisher(self, kafka_bootstrap, unique_name):
        completions, commands = f"{unique_name}.rpa.completions", f"{unique_name}.po.commands"
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        for future in admin.create_topics([NewTopic(t, num_partitions=3, replication_factor=1)
                                           for t in (completions, commands)]).values():
            future.result(timeout=30)
        return KafkaPurchaseOrderCommands(kafka_bootstrap, SingleObjectCodec(), completions, commands)

    def read_back(self, publisher, topic: str, expected: int):
        consumer = Consumer({"bootstrap.servers": publisher.config["bootstrap.servers"], "group.id": f"read-{topic}",
                             "auto.offset.reset": "earliest", "enable.auto.commit": False})
        consumer.subscribe([topic])
        found, deadline = [], time.monotonic() + (10 if expected else 3)
        codec = SingleObjectCodec()
        try:
            while time.monotonic() < deadline and (len(found) < expected or not expected):
                found += [m for m in consumer.consume(100, timeout=0.5) if m.error() is None]
        finally:
            consumer.close()
        by_partition = sorted(found, key=lambda m: (m.partition(), m.offset()))
        return [(m.key().decode(), codec.decode(m.value())) for m in by_partition]

    def test_a_broker_that_is_not_there_is_reported(self):
        away = KafkaPurchaseOrderCommands(f"127.0.0.1:{free_port()}", SingleObjectCodec(), "c", "p", timeout=2)
        with pytest.raises(CommandNotDelivered):
            away.publish(RELEASE)
        with pytest.raises(CommandNotDelivered):
            away.ping()
