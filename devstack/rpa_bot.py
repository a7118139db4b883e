"""A stand-in for the RPA bot: reads its mailbox, enters each invoice in the Sampro stand-in and
reports the completion on the PO's stream, as the real bot does through the HTTP callback."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

from confluent_kafka import Producer

from connectors.sampro.standin import SamproStandIn
from devstack.mailbox import Mailbox
from rules.models import CompletionOutcome, RpaCompletion
from schemas.codec import SingleObjectCodec


class RpaBot:
    def __init__(self, mailbox: Mailbox, sampro: SamproStandIn, bootstrap: str, completions_topic: str,
                 fail_invoices: frozenset[str] = frozenset()):
        self.mailbox, self.sampro, self.topic = mailbox, sampro, completions_topic
        self.fail_invoices = fail_invoices
        self.producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random"})
        self.codec = SingleObjectCodec()
        self.entered: list[str] = []
        self._seen = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rpa-bot", daemon=True)

    def start(self) -> RpaBot:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.producer.flush(10)
        self.producer = None  # released now, not after the broker is gone

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            while self._seen < len(self.mailbox.messages):
                message = self.mailbox.messages[self._seen]
                self._seen += 1
                self._enter(json.loads(message.get_body(("plain",)).get_content(), parse_float=Decimal))

    def _enter(self, payload: dict) -> None:
        invoice_id, version = payload["invoice_id"], payload["invoice_version"]
        failed = invoice_id in self.fail_invoices
        sampro_id = f"S-{invoice_id}-v{version}"
        if not failed:
            self.sampro.enter_invoice(
                sampro_invoice_id=sampro_id, vendor_id=payload["vendor_id"], invoice_number=payload["invoice_number"],
                po_number=payload["po_number"], invoice_date=date.fromisoformat(payload["invoice_date"]),
                total_amount=Decimal(payload["total_amount"]),
                lines=[(line["po_line_no"], Decimal(line["quantity"])) for line in payload["lines"]])
            self.entered.append(invoice_id)
        completion = RpaCompletion(
            event_id=str(uuid.uuid4()), invoice_id=invoice_id, invoice_version=version, po_number=payload["po_number"],
            outcome=CompletionOutcome.FAILURE if failed else CompletionOutcome.SUCCESS,
            sampro_invoice_id=None if failed else sampro_id, error="Sampro screen timed out" if failed else None,
            occurred_at=datetime.now(UTC))
        self.producer.produce(self.topic, key=payload["po_number"].encode(), value=self.codec.encode(completion))
        self.producer.flush(10)
