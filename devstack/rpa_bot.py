"""A stand-in for the RPA bot: reads its mailbox, enters each invoice in the Sampro stand-in and
reports the completion through the API's HTTP callbacks, as the real bot does, or (without an
API URL) straight onto the PO's stream."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import httpx
from confluent_kafka import Producer

from connectors.kafka_logs import client_config
from connectors.sampro.standin import SamproStandIn
from devstack.mailbox import Mailbox
from rules.models import CompletionOutcome, RpaCompletion
from schemas.codec import SingleObjectCodec

log = logging.getLogger(__name__)


class RpaBot:
    def __init__(self, mailbox: Mailbox, sampro: SamproStandIn, bootstrap: str, completions_topic: str,
                 fail_invoices: frozenset[str] = frozenset(), *, api_url: str | None = None,
                 api_token: str | None = None):
        self.mailbox, self.sampro, self.topic = mailbox, sampro, completions_topic
        self.fail_invoices = fail_invoices
        self.api_url, self.api_token = api_url, api_token
        self.producer = None if api_url else Producer(client_config(bootstrap, "rpa-bot", partitioner="murmur2_random"))
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
        if self.producer is not None:
            self.producer.flush(10)
            self.producer = None  # released now, not after the broker is gone

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            while self._seen < len(self.mailbox.messages) and not self._stop.is_set():
                message = self.mailbox.messages[self._seen]
                try:
                    self._enter(json.loads(message.get_body(("plain",)).get_content(), parse_float=Decimal))
                except Exception as exc:  # Sampro or Kafka down: a real bot tries the same email again
                    log.warning("the stand-in RPA bot could not enter an invoice (%s); trying again", exc)
                    self._stop.wait(1.0)
                    continue
                self._seen += 1
            if self.producer is not None:
                self.producer.flush(10)

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
        if self.api_url:
            self._call_back(completion)
            return
        self.producer.produce(self.topic, key=payload["po_number"].encode(), value=self.codec.encode(completion))
        self.producer.poll(0)  # flushed once the mailbox is read

    def _call_back(self, completion: RpaCompletion, patience: float = 60) -> None:
        """POSTs the outcome; 404 and 409 are retried too, as the email can arrive before
        processscheduler shows the invoice at the RPA bot."""
        failed = completion.outcome is CompletionOutcome.FAILURE
        url = f"{self.api_url}/rpa/invoices/{completion.invoice_id}/{'failure' if failed else 'success'}"
        body = {"invoice_version": completion.invoice_version,
                **({"error": completion.error} if failed else {"sampro_invoice_id": completion.sampro_invoice_id})}
        deadline = time.monotonic() + patience
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                answer = httpx.post(url, json=body, headers={"Authorization": f"Bearer {self.api_token}"}, timeout=10)
                if answer.status_code == 202:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)


def main() -> None:
    """python -m devstack.rpa_bot SMTP_PORT SAMPRO_URL KAFKA_BOOTSTRAP COMPLETIONS_TOPIC: the mailbox and
    the bot in a process of their own until SIGTERM (the pipeline benchmark's: in the benchmark's own
    interpreter, they would answer SMTP at the pace of its other threads)."""
    import signal
    import sys

    from sqlalchemy import create_engine

    from devstack.mailbox import SmtpServer

    port, sampro_url, bootstrap, topic = sys.argv[1:5]
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    with SmtpServer(int(port)) as server:
        bot = RpaBot(server.mailbox, SamproStandIn(create_engine(sampro_url)), bootstrap, topic).start()
        stopping.wait()
        bot.stop()


if __name__ == "__main__":
    main()
