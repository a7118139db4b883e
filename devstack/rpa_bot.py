"""A stand-in for the RPA bot: reads its mailbox, enters each invoice in the Sampro stand-in and
reports the completion through the API's HTTP callbacks, as the real bot does, or (without an
API URL) straight onto the PO's stream."""

from __future__ import annotations

import email
import email.policy
import hmac
import json
import logging
import threading
import time
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from urllib.parse import quote

import httpx
from confluent_kafka import Producer

from connectors.kafka_clients import client_config
from connectors.rpa_mail.message import SIGNATURE_HEADER, signature
from connectors.sampro.standin import EnteredInvoice, SamproStandIn
from devstack.mailbox import Mailbox
from rules.models import CompletionOutcome, RpaCompletion
from schemas.codec import SingleObjectCodec

log = logging.getLogger(__name__)


class NotSigned(ValueError):
    """An email the pipeline did not sign with the bot's key: nobody's to enter."""


def payload_of(message: bytes, signing_key: bytes | None = None) -> tuple[dict, int | None]:
    """The JSON in the email's text part, and which hand-off it is (X-Invoice-Attempt; None in an
    email sent before the header was). With `signing_key`, only from an email whose X-Invoice-Signature
    is that of those very bytes (connectors.rpa_mail.message.signature), else `NotSigned`. The email
    package's compat32 policy parses no header it is not asked for: the default policy's header
    objects cost more than the bot's Sampro work."""
    parsed = email.message_from_bytes(message, policy=email.policy.compat32)
    attempt = parsed["X-Invoice-Attempt"]
    hand_off = int(attempt) if attempt and attempt.isdigit() else None
    for part in parsed.walk():
        if part.get_content_type() == "text/plain":
            document = part.get_payload(decode=True)
            payload = json.loads(document, parse_float=Decimal)
            if signing_key is not None:
                _check_signature(parsed[SIGNATURE_HEADER], signing_key, payload, hand_off, document)
            return payload, hand_off
    raise ValueError("the email has no text part")


def _check_signature(said: str | None, key: bytes, payload: dict, hand_off: int | None, document: bytes) -> None:
    if said is None:
        raise NotSigned(f"no {SIGNATURE_HEADER}")
    if hand_off is None or not isinstance(payload, dict) or not isinstance(payload.get("invoice_id"), str) or \
            not isinstance(payload.get("invoice_version"), int):
        raise NotSigned("no invoice id, version and X-Invoice-Attempt to check its signature by")
    expected = signature(key, payload["invoice_id"], payload["invoice_version"], hand_off, document)
    if not hmac.compare_digest(said.strip().encode(), expected.encode()):
        raise NotSigned(f"its {SIGNATURE_HEADER} is not the pipeline's")


class RpaBot:
    def __init__(self, mailbox: Mailbox, sampro: SamproStandIn, bootstrap: str, completions_topic: str,
                 fail_invoices: frozenset[str] = frozenset(), *, api_url: str | None = None,
                 api_token: str | None = None, signing_key: bytes | None = None):
        self.mailbox, self.sampro, self.topic = mailbox, sampro, completions_topic
        self.signing_key = signing_key  # RPA_SIGNING_KEY: an email not signed with it is refused
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
        while not self._stop.is_set():
            # Woken by an email, not on a 0.2 s clock: a PO judges its next invoice only once the bot
            # has entered the one before, and the clock was most of that wait (bench: busy-po). It
            # then waits 20 ms for more, so that a burst is entered in a few transactions.
            if self.mailbox.arrived.wait(0.2):
                self._stop.wait(0.02)
            self.mailbox.arrived.clear()
            while self._seen < len(self.mailbox.received) and not self._stop.is_set():
                # What has arrived since the last read, entered in one Sampro transaction: one at a
                # time, this stand-in took as much CPU as the worker it is benchmarked beside.
                unread = self.mailbox.received[self._seen: self._seen + 200]
                try:
                    self._enter(unread)
                except Exception as exc:  # Sampro or Kafka down: a real bot tries the same emails again
                    log.warning("the stand-in RPA bot could not enter its invoices (%s); trying again", exc)
                    self._stop.wait(1.0)
                    continue
                self._seen += len(unread)
            if self.producer is not None:
                self.producer.flush(10)

    def _enter(self, messages: list[bytes]) -> None:
        """Enters the emails' invoices (again after an outage: Sampro counts each once), then reports
        each, naming the hand-off its email was. With a key, an email not signed with it is logged and
        left: neither entered nor reported (its invoice is not the pipeline's to report on), nor tried
        again (one that cannot be read held every email after it)."""
        entering: list[tuple[str, EnteredInvoice]] = []
        reports: list[RpaCompletion] = []
        for message in messages:
            try:
                payload, attempt = payload_of(message, self.signing_key)
            except ValueError as refused:  # NotSigned, or nothing to check it by: anyone may mail the mailbox
                if self.signing_key is None:
                    raise
                log.warning("the stand-in RPA bot refused an email, not entered: %s", refused)
                continue
            invoice_id, version = payload["invoice_id"], payload["invoice_version"]
            failed = invoice_id in self.fail_invoices
            sampro_id = f"S-{invoice_id}-v{version}"
            if not failed:
                entering.append((invoice_id, EnteredInvoice(
                    sampro_id, payload["vendor_id"], payload["invoice_number"], payload["po_number"],
                    date.fromisoformat(payload["invoice_date"]), Decimal(payload["total_amount"]),
                    tuple((line["po_line_no"], Decimal(line["quantity"])) for line in payload["lines"]))))
            reports.append(RpaCompletion(
                event_id=str(uuid.uuid4()), invoice_id=invoice_id, invoice_version=version,
                po_number=payload["po_number"],
                outcome=CompletionOutcome.FAILURE if failed else CompletionOutcome.SUCCESS,
                sampro_invoice_id=None if failed else sampro_id, error="Sampro screen timed out" if failed else None,
                occurred_at=datetime.now(UTC), attempt=attempt))
        self.sampro.enter_invoices([entry for _, entry in entering])
        self.entered += [invoice_id for invoice_id, _ in entering]
        for completion in reports:
            if self.api_url:
                self._call_back(completion)
            else:
                key = completion.po_number.encode()
                self.producer.produce(self.topic, key=key, value=self.codec.encode(completion))
                self.producer.poll(0)  # flushed once the mailbox is read

    def _call_back(self, completion: RpaCompletion, patience: float = 60) -> None:
        """POSTs the outcome, again only on a 503 (the API's "try again": also while processscheduler
        does not show the invoice yet) or no answer at all, as the README tells a bot to."""
        failed = completion.outcome is CompletionOutcome.FAILURE
        invoice_id = quote(completion.invoice_id, safe="")  # an id may hold "/" or "?"
        url = f"{self.api_url}/rpa/invoices/{invoice_id}/{'failure' if failed else 'success'}"
        body = {"invoice_version": completion.invoice_version, "attempt": completion.attempt,
                **({"error": completion.error} if failed else {"sampro_invoice_id": completion.sampro_invoice_id})}
        deadline = time.monotonic() + patience
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                answer = httpx.post(url, json=body, headers={"Authorization": f"Bearer {self.api_token}"}, timeout=10)
                if answer.status_code != 503:
                    if answer.status_code != 202:
                        log.warning("the API refused the report on %s: %s %s", completion.invoice_id,
                                    answer.status_code, answer.text[:300])
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
