"""A verdicts topic in memory, as the pipeline would have filled it."""

from __future__ import annotations

from connectors.topic_reader import InMemoryTopicReader
from devstack.workload import decided, invoices, purchase_orders
from rules.models import Verdict
from schemas.codec import SingleObjectCodec

T0_MS = 1_795_000_000_000
TOPIC = "verdicts"


def verdicts_topic(count: int = 600, partitions: int = 3, step_ms: int = 10) -> tuple[InMemoryTopicReader, list]:
    """Every message at T0_MS + its position * step_ms, on the partition of its PO."""
    pos = purchase_orders(max(1, count // 10), "R")
    messages = decided(pos, invoices(count, pos, "R"))
    reader, codec = InMemoryTopicReader(), SingleObjectCodec()
    placed = []
    for n, message in enumerate(messages):
        partition = int(message.po_number.rsplit("-", 1)[1]) % partitions
        reader.append(TOPIC, partition, T0_MS + n * step_ms, message.po_number.encode(), codec.encode(message))
        placed.append((T0_MS + n * step_ms, message))
    return reader, placed


def recorded_verdicts(placed: list) -> list[Verdict]:
    return [message for _, message in placed if isinstance(message, Verdict)]
