"""The whole worker through its composition root, on the in-memory broker and adapters: every agent
and the runtime's failure policies, without a server."""

from __future__ import annotations

import copy
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from connectors.rpa_mail import InMemoryRpaMailer
from connectors.sampro import InMemoryPurchaseOrderReader
from connectors.sampro.changes import InMemorySamproChanges
from connectors.scheduler import InMemoryProcessScheduler
from rules.lifecycle import InvoiceSubmitted
from rules.models import CompletionOutcome, PurchaseOrder, RpaCompletion
from schemas.codec import SingleObjectCodec
from streams.bootstrap import Pipeline, bootstrap
from streams.broker_memory import InMemoryBroker
from streams.failures import Backoff
from streams.settings import Settings
from tests.unit.rules.builders import invoice, po

AT = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


class Clock:
    """Time that moves only when the test says, so a back-off is waited out in no time."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Worker:
    pipeline: Pipeline
    broker: InMemoryBroker
    sampro: InMemoryPurchaseOrderReader
    scheduler: InMemoryProcessScheduler
    mailer: InMemoryRpaMailer
    clock: Clock
    codec: SingleObjectCodec

    def submit(self, document: dict[str, Any], key: str | None = None, version: int = 1) -> None:
        submission = InvoiceSubmitted(invoice_id=document["invoice_id"], version=version,
                                      po_number=document["po_number"], document=copy.deepcopy(document),
                                      received_at=AT)
        self.put(self.pipeline.topics.invoices, key or submission.po_number, self.codec.encode(submission))

    def complete(self, invoice_id: str, po_number: str = "PO-5001", version: int = 1, ok: bool = True) -> None:
        completion = RpaCompletion(event_id=f"done-{invoice_id}-{ok}", invoice_id=invoice_id, invoice_version=version,
                                   po_number=po_number, outcome=CompletionOutcome.SUCCESS if ok else
                                   CompletionOutcome.FAILURE, sampro_invoice_id="S-1" if ok else None,
                                   error=None if ok else "Sampro refused it", occurred_at=AT)
        self.put(self.pipeline.topics.completions, po_number, self.codec.encode(completion))

    def put(self, topic: str, key: str | None, value: bytes | None) -> None:
        self.broker.append(topic, key.encode() if key is not None else None, value)

    def run(self, steps: int = 20, seconds_between: float = 1.0) -> None:
        for _ in range(steps):
            self.pipeline.runtime.step()
            self.clock.sleep(seconds_between)

    def statuses(self) -> dict[str, str]:
        return {row["invoice_id"]: row["status"] for row in self.scheduler.rows()}

    def dead_letters(self) -> list[dict[str, str]]:
        return [{**{k: v.decode() for k, v in record.headers}, "value": record.value}
                for record in self.broker.records(self.pipeline.topics.dlq)]


def purchase_order(**changes: Any) -> PurchaseOrder:
    return PurchaseOrder.model_validate(po(**changes))


def ready_invoice(invoice_id: str, **changes: Any) -> dict[str, Any]:
    """The builders' ready invoice under another id, with a number and total of its own (the freight
    differs), so that it is neither a duplicate nor a possible one of another."""
    cents = Decimal(zlib.crc32(invoice_id.encode()) % 900 + 1) / 100
    freight, total = Decimal("10.00") + cents, Decimal("57.25") + cents
    return invoice(**{"invoice_id": invoice_id, "invoice_number": f"INV-{invoice_id}",
                      "extra_charges": [{"kind": "freight", "amount": freight}], "total_amount": total, **changes})


@pytest.fixture
def worker(tmp_path) -> Worker:
    return make_worker(tmp_path)


def make_worker(tmp_path, store: str = "memory://", dispatch_mode: str = "automatic",
                app_id: str = "invoice-automation", **adapters: Any) -> Worker:
    settings = Settings(data_dir=tmp_path, marketplace_source="debezium", store=store, dispatch_mode=dispatch_mode,
                        app_id=app_id, _env_file=None)
    broker = adapters.pop("broker", None) or InMemoryBroker(partitions=3)
    sampro = adapters.pop("purchase_orders", None) or InMemoryPurchaseOrderReader([purchase_order()])
    scheduler = adapters.pop("scheduler", None) or InMemoryProcessScheduler()
    mailer = adapters.pop("mailer", None) or InMemoryRpaMailer()
    changes = adapters.pop("sampro_changes", None) or InMemorySamproChanges()
    pipeline = bootstrap(settings, broker=broker, purchase_orders=sampro, scheduler=scheduler, mailer=mailer,
                         sampro_changes=changes, **adapters)
    clock = Clock()
    runtime = pipeline.runtime
    runtime.clock, runtime.sleep, runtime.backoff = clock, clock.sleep, Backoff(first=1, cap=8, draw=lambda: 1.0)
    runtime.start()
    return Worker(pipeline, broker, sampro, scheduler, mailer, clock, SingleObjectCodec())
