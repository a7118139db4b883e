"""Every agent through the composition root on in-memory parts: the happy path, and what each
failure policy does to a bad record or a dependency outage."""

from __future__ import annotations

import random
import re
import tempfile
from collections.abc import Callable
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connectors.sampro import InMemoryPurchaseOrderReader
from connectors.scheduler import InMemoryProcessScheduler, SqlProcessScheduler, upgrade
from connectors.scheduler.rows import entries
from connectors.sql import engine_for
from rules.context import KnownInvoice
from rules.errors import DataError, Misconfigured, PutOff, Unavailable
from rules.holds import RPA_FAILURE
from rules.lifecycle import InvoiceSubmitted, InvoiceWithdrawn, PurchaseOrderChanged, ReleaseRequested, RpaRequest
from rules.models import CompletionOutcome, RpaCompletion, Verdict
from streams.broker_memory import InMemoryBroker
from streams.ledgers import changelog_topic, record_state_key
from streams.runtime import FORWARDED_FROM, Flow, Runtime, run_together
from streams.state import CHANGELOG_KEY, Store
from tests.unit.rules.builders import PO, PRICE_OFF, invoice, judge, po
from tests.unit.streams.conftest import AT, Worker, make_worker, purchase_order, ready_invoice


def test_an_invoice_goes_from_the_topic_to_processscheduler_and_the_mailbox_then_is_entered(worker):
    worker.submit(ready_invoice("MP-1"))
    worker.run()
    assert worker.statuses() == {"MP-1": "sent_to_rpa"}
    assert [request.invoice_id for request in worker.mailer.sent] == ["MP-1"]
    worker.complete("MP-1")
    worker.run()
    assert worker.statuses() == {"MP-1": "entered"}
    assert worker.dead_letters() == []


def test_the_second_invoice_on_a_po_waits_for_the_first_then_goes_after_its_completion(worker):
    worker.submit(ready_invoice("MP-1"))
    worker.submit(ready_invoice("MP-2"))
    worker.run()
    assert worker.statuses() == {"MP-1": "sent_to_rpa", "MP-2": "waiting_for_po"}
    worker.complete("MP-1")
    worker.run()
    assert worker.statuses() == {"MP-1": "entered", "MP-2": "sent_to_rpa"}


def test_two_invoices_of_one_number_parked_together_are_judged_as_duplicates_when_the_po_frees(worker):
    """Judged one after the other as the bot's completion freed the PO, the second was compared
    with nothing the first had become, and went to the bot beside it: a payment made twice."""
    worker.submit(ready_invoice("MP-1"))
    worker.submit({**PRICE_OFF, "invoice_id": "MP-2", "invoice_number": "INV-900"})
    worker.submit(ready_invoice("MP-3", invoice_number="INV-900"))
    worker.run()
    assert worker.statuses() == {"MP-1": "sent_to_rpa", "MP-2": "waiting_for_po", "MP-3": "waiting_for_po"}
    worker.complete("MP-1")
    worker.run()
    assert worker.statuses() == {"MP-1": "entered", "MP-2": "manual_review", "MP-3": "bad_invoice"}
    assert [request.invoice_id for request in worker.mailer.sent] == ["MP-1"]


def _astray(worker, document: dict, headers: tuple = ()) -> tuple[str, int]:
    """MP-2 of PO-5001 on the partition after its key's, as a producer that named it puts it;
    returns the topic and the key's own partition."""
    topic, home = worker.pipeline.topics.invoices, worker.broker.partition_of(b"PO-5001")
    stray = InvoiceSubmitted(invoice_id="MP-2", version=1, po_number="PO-5001", document=document, received_at=AT)
    worker.broker.append(topic, b"PO-5001", worker.codec.encode(stray), partition=(home + 1) % 3, headers=headers)
    return topic, home


class _Unsure(InMemoryBroker):
    """Cannot tell a topic's partition count the first `unsure` times it is asked, as a Kafka away."""

    unsure = 0

    def partition_for(self, topic, key):
        if self.unsure:
            self.unsure -= 1
            raise Unavailable("kafka", f"reading the partitions of {topic}: timed out")
        return super().partition_for(topic, key)


def test_an_invoice_on_another_partition_than_its_pos_is_forwarded_there_and_waits_behind_the_first(worker):
    """A producer that named a partition: decided where it was, beside an empty ledger, it went to
    the RPA bot while the PO's first invoice was still there."""
    worker.submit(ready_invoice("MP-1"))
    worker.run()
    topic, home = _astray(worker, ready_invoice("MP-2"))
    worker.run()
    assert worker.statuses() == {"MP-1": "sent_to_rpa", "MP-2": "waiting_for_po"}
    forwarded = worker.broker.topic(topic)[home][-1]
    assert dict(forwarded.headers)[FORWARDED_FROM] == f"{topic}[{(home + 1) % 3}]@0".encode()
    worker.complete("MP-1")
    worker.run()
    assert worker.statuses() == {"MP-1": "entered", "MP-2": "sent_to_rpa"}


@pytest.mark.parametrize(("headers", "padding", "said"), [
    (((FORWARDED_FROM, b"invoices[0]@7"),), 0, "where it was forwarded before"),  # partitioners disagree
    ((), 1_100_000, "too large to forward"),  # the commit would fail for the whole batch, batch after batch
])
def test_a_record_that_cannot_go_to_its_partition_is_dead_lettered_and_ap_sees_the_invoice(
        worker, headers, padding, said):
    notes = random.Random(7).randbytes(padding).hex()  # what compression cannot shrink under Kafka's 1 MB
    topic, home = _astray(worker, {**ready_invoice("MP-2"), "notes": notes}, headers)
    worker.run()
    (dead,) = worker.dead_letters()
    assert f"belongs on partition {home}" in dead["error"] and said in dead["error"]
    assert len(worker.broker.records(topic)) == 1 and worker.statuses() == {"MP-2": "bad_invoice"}


def _registry_away_for(calls: int, then: Callable[[bytes], Any]) -> Callable[[Any], Any]:
    """A schema-registry codec's call whose schema id is not cached yet, while the registry is away."""
    left = [calls]

    def call(value: Any) -> Any:
        if left[0]:
            left[0] -= 1
            raise Unavailable("schema-registry", "looking up schema id 7: connection refused")
        return then(value)
    return call


def _one_flow(encode: Callable[[Any], bytes], decode: Callable[[Any], Any], handled: list, partitions: int = 1,
              **flow: Any):
    broker, clock = InMemoryBroker(partitions=partitions), [0.0]
    runtime = Runtime(broker, dlq_topic="dlq", encode=encode, clock=lambda: clock[0], sleep=lambda seconds: None)
    runtime.add_flow(Flow("agent", ("t",), decode=decode, handle=lambda batch: handled.extend(batch.messages),
                          **flow))
    runtime.start()

    def run(steps: int) -> None:
        for _ in range(steps):
            runtime.step()
            clock[0] += 100
    return broker, runtime, run


def test_a_record_the_registry_cannot_decode_yet_waits_for_it_and_is_decided_in_order_when_it_is_back():
    """Dead-lettered and committed, an outage of the registry lost every invoice, completion and
    verdict it came across, and left each PO of a lost completion at the bot for good."""
    handled: list = []
    broker, runtime, run = _one_flow(bytes, _registry_away_for(2, lambda record: record.value), handled)
    for value in (b"first", b"second"):
        broker.append("t", b"PO-1", value)
    run(2)
    assert handled == [] and broker.records("dlq") == [] and broker.committed.get(("t", 0), 0) == 0
    assert "schema-registry" in runtime.health.outages()
    run(6)
    assert handled == [b"first", b"second"] and broker.records("dlq") == []
    assert broker.committed[("t", 0)] == 2 and runtime.health.outages() == {}


def test_a_bad_record_whose_verdict_the_registry_cannot_encode_yet_waits_and_goes_with_its_verdict():
    """The bad_invoice verdict that goes with a dead letter was logged and dropped: AP never heard
    of the invoice."""
    def refuse(record):
        raise DataError("not an invoice")

    broker, runtime, run = _one_flow(_registry_away_for(1, bytes), refuse, [],
                                     on_dead_letter=lambda record, message, why: [("verdicts", "MP-1", b"bad_invoice")])
    broker.append("t", b"PO-1", b"garbage")
    run(1)
    assert broker.records("dlq") == [] and broker.records("verdicts") == []
    assert "schema-registry" in runtime.health.outages()
    run(4)
    assert len(broker.records("dlq")) == 1 and [r.value for r in broker.records("verdicts")] == [b"bad_invoice"]
    assert broker.committed[("t", 0)] == 1
    assert runtime.health.outages() == {}  # it answered: the dead letter is its last word on the record


def test_a_record_dead_lettered_beside_a_partition_still_waiting_leaves_the_outage_standing():
    """A record that needed nothing the flow waits for said nothing of it: readiness said the
    registry was back while a partition still waited for it."""
    def decode(record):
        if record.value == b"not-avro":
            raise DataError("not a record of ours")
        if record.partition == 0:
            raise Unavailable("schema-registry", "connection refused")
        return record.value

    broker, runtime, run = _one_flow(bytes, decode, [], partitions=2)
    broker.append("t", None, b"an invoice", partition=0)
    broker.append("t", None, b"not-avro", partition=1)
    run(1)
    assert len(broker.records("dlq")) == 1 and "schema-registry" in runtime.health.outages()


def test_a_record_astray_that_cannot_be_forwarded_waits_for_the_registry_to_read_it_for_its_verdict():
    """Dead-lettered unread, it went without the bad_invoice verdict that tells AP of it."""
    def verdict(record, message, why):
        return [("verdicts", "MP-1", b"bad_invoice")] if message is not None else []

    broker, _, run = _one_flow(bytes, _registry_away_for(1, lambda record: record.value), [], partitions=2,
                               on_dead_letter=verdict, store=Store("s", "s-changelog", "memory://",
                                                                   Path(tempfile.mkdtemp())))
    run(2)  # restored and released
    astray = 1 - broker.partition_of(b"PO-1")
    broker.append("t", b"PO-1", b"invoice", partition=astray, headers=((FORWARDED_FROM, b"t[0]@7"),))
    run(1)
    assert broker.records("dlq") == [] and broker.records("verdicts") == []
    run(4)
    assert len(broker.records("dlq")) == 1 and [r.value for r in broker.records("verdicts")] == [b"bad_invoice"]


def test_a_record_before_one_that_waits_for_its_partition_is_not_passed_over_when_its_batch_is_retried():
    """A bad record elsewhere in the batch has it tried record by record: the record before the
    one that waits, skipped for the wait, was committed past and never handled."""
    def handle(batch):
        if b"bad" in batch.messages:
            raise DataError("a bad record")
        handled.extend(batch.messages)

    broker, handled, clock = _Unsure(partitions=2), [], [0.0]
    runtime = Runtime(broker, dlq_topic="dlq", encode=bytes, clock=lambda: clock[0], sleep=lambda seconds: None)
    store = Store("s", "s-changelog", "memory://", Path(tempfile.mkdtemp()))
    runtime.add_flow(Flow("agent", ("t",), decode=lambda record: record.value, handle=handle, store=store))
    runtime.start()
    runtime.step()
    runtime.step()  # restored and released
    home = broker.partition_of(b"PO-1")
    broker.append("t", None, b"keyless-0", partition=home)  # no key: nothing to check
    broker.append("t", b"PO-1", b"keyed-1")  # its partition count cannot be had: it waits
    broker.append("t", next(k for k in (b"a", b"b", b"c", b"d") if broker.partition_of(k) != home), b"bad")
    broker.unsure = 1
    for _ in range(6):
        runtime.step()
        clock[0] += 100
    assert handled == [b"keyless-0", b"keyed-1"] and broker.committed[("t", home)] == 2


def test_an_invoice_whose_partition_kafka_cannot_tell_now_waits_and_is_then_decided(tmp_path):
    worker = make_worker(tmp_path, broker=_Unsure(partitions=3))
    worker.run(steps=2)  # assigned, and the ledgers restored
    worker.broker.unsure = 1
    worker.submit(ready_invoice("MP-1"))
    worker.run(steps=1)
    # held: neither decided nor set aside
    assert worker.broker.records(worker.pipeline.topics.verdicts) == [] and worker.dead_letters() == []
    worker.run()
    assert worker.statuses() == {"MP-1": "sent_to_rpa"}


def test_a_duplicate_on_another_po_a_batch_after_its_original_is_found_before_processscheduler_has_it(tmp_path):
    """The original's verdict reaches processscheduler through the sink, a batch or more later."""
    sampro = InMemoryPurchaseOrderReader([purchase_order(), purchase_order(po_number="PO-5002")])
    worker = make_worker(tmp_path, purchase_orders=sampro)
    worker.run(steps=3)
    worker.submit(ready_invoice("MP-1", invoice_number="INV-9"))
    worker.run(steps=1)
    worker.submit(ready_invoice("MP-2", invoice_number="inv-9", po_number="PO-5002"))
    worker.run()
    assert worker.statuses() == {"MP-1": "sent_to_rpa", "MP-2": "bad_invoice"}
    (finding,) = worker.scheduler.rows(po_number="PO-5002")[0]["reasons"]
    assert (finding["code"], finding["expected"]) == ("DUPLICATE_INVOICE", "MP-1")
    assert [request.invoice_id for request in worker.mailer.sent] == ["MP-1"]
    assert len(worker.pipeline.desk.recent) == 0  # the sink recorded both: processscheduler answers for them


def _flat_fee_worker(tmp_path: Path, months: int):
    """A worker on a SQLite processscheduler holding a flat-fee vendor's invoices: the builders'
    vendor and total (57.25) under a number of each month's, every 30 days back from the builders'
    invoice date (2026-11-20), for `months` months."""
    engine = engine_for(f"sqlite:///{tmp_path / 'processscheduler.db'}")
    upgrade(engine)
    scheduler = SqlProcessScheduler(engine)
    scheduler.record([judge(invoice(invoice_id=f"MP-M{n}", invoice_number=f"RENT-{n}", po_number=f"PO-M{n}",
                                    invoice_date=(date(2026, 11, 20) - timedelta(days=30 * n)).isoformat()))
                      for n in range(months)])
    return make_worker(tmp_path, scheduler=scheduler)


def test_a_flat_fee_vendors_years_of_one_total_leave_a_held_invoices_audit_and_ledger_record_as_they_are(tmp_path):
    """Every invoice of the vendor's total ever decided was read for each new one, copied into its
    verdict's audit, and, the invoice held, into its PO's ledger: at 8,000 of them a verdict of
    494 kB and a held record of 1.27 MB, and a batch of 100 took 1.1 GB more memory. Those dated
    within the duplicate window (30 days) are read and kept, whatever the history."""
    kept = []
    for months in (3, 240):
        worker = _flat_fee_worker(tmp_path / f"{months}-months", months)
        worker.submit(invoice(invoice_id="MP-NEW", invoice_number="RENT-NEW"))
        worker.run()
        (verdict,) = [message for record in worker.broker.records(worker.pipeline.topics.verdicts)
                      if isinstance(message := worker.codec.decode(record.value), Verdict)
                      and message.invoice_id == "MP-NEW"]
        store = worker.pipeline.ledgers.store.partitions[worker.broker.partition_of(b"PO-5001")]
        held = store.get(record_state_key("PO-5001", "MP-NEW@v1"))
        kept.append((sorted((finding.code, finding.expected) for finding in verdict.reasons),
                     sorted(earlier.invoice_id for earlier in verdict.audit.earlier_invoices), len(held)))
    assert kept[0][:2] == ([("POSSIBLE_DUPLICATE", "MP-M0"), ("POSSIBLE_DUPLICATE", "MP-M1")], ["MP-M0", "MP-M1"])
    assert kept[1] == kept[0]  # twenty years of history: the same audit, a record of the same size


def test_a_verdict_dead_lettered_instead_of_sent_is_no_invoice_the_duplicate_checks_know(tmp_path, monkeypatch):
    """The desk remembered the verdict before it was refused as too large for Kafka: for two
    minutes the next invoice of its vendor and number was a DUPLICATE_INVOICE of an invoice never
    decided (bad_invoice, never sent to the bot), which no clerk may release."""
    import streams.record_size

    sampro = InMemoryPurchaseOrderReader([purchase_order(), purchase_order(po_number="PO-5002")])
    worker = make_worker(tmp_path, purchase_orders=sampro)
    worker.run(steps=3)
    large = ready_invoice("MP-1", invoice_number="INV-9")
    letters = random.Random(1)
    for line in large["lines"]:  # text zstd does not make small
        line["description"] = "".join(letters.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(400))
    monkeypatch.setattr(streams.record_size, "KAFKA_TAKES", 1_000)  # the ready verdict is more, with its payload
    worker.submit(large)
    worker.run()
    monkeypatch.setattr(streams.record_size, "KAFKA_TAKES", 1_000_000)
    assert [(dead["stage"], "would be" in dead["error"]) for dead in worker.dead_letters()] == [("decide", True)]
    worker.submit(ready_invoice("MP-2", invoice_number="INV-9", po_number="PO-5002"))
    worker.run()
    assert worker.statuses() == {"MP-1": "bad_invoice", "MP-2": "sent_to_rpa"}


def test_a_duplicate_two_workers_pass_at_the_same_moment_goes_to_the_rpa_bot_once(tmp_path):
    """Each worker judges before processscheduler has the other's verdict; the hand-off is the last gate."""
    scheduler = InMemoryProcessScheduler()
    workers = [make_worker(tmp_path / name, scheduler=scheduler, purchase_orders=InMemoryPurchaseOrderReader(
        [purchase_order(), purchase_order(po_number="PO-5002")])) for name in ("a", "b")]
    workers[0].submit(ready_invoice("MP-1", invoice_number="INV-9"))
    workers[1].submit(ready_invoice("MP-2", invoice_number="inv-9", po_number="PO-5002"))
    for _ in range(20):  # in step: each decides its invoice before the other's verdict is recorded
        for worker in workers:
            worker.run(steps=1)
    assert [request.invoice_id for worker in workers for request in worker.mailer.sent] == ["MP-1"]
    assert workers[0].statuses() == {"MP-1": "sent_to_rpa", "MP-2": "rpa_failed"}
    (failed,) = [h for h in scheduler.history("MP-2") if h["status"] == "rpa_failed"]
    assert "DUPLICATE_INVOICE" in failed["reason"] and "MP-1 (version 1)" in failed["reason"]
    workers[0].complete("MP-1")
    workers[0].run()
    assert workers[0].statuses() == {"MP-1": "entered", "MP-2": "rpa_failed"}


def test_a_hand_off_failed_at_the_invoice_number_gate_stays_failed_when_rpa_requests_is_read_again(tmp_path):
    """The gate's failures were kept nowhere: rpa.requests read again (the mail group new on an upgrade,
    an offset reset) asked the gate again, and once version 1 had given the number up, every hand-off
    of version 2 it had failed was emailed, for the bot to enter three times, while processscheduler
    showed it rpa_failed."""
    worker = make_worker(tmp_path, purchase_orders=InMemoryPurchaseOrderReader(
        [purchase_order(), purchase_order(po_number="PO-5002")]))
    worker.submit(ready_invoice("MP-1"))
    worker.run(steps=4)
    worker.submit({**ready_invoice("MP-1", po_number="PO-5002"), "version": 2}, version=2)  # v1 at the bot
    worker.run(steps=6)
    for n in range(2):  # AP releases version 2; the gate fails it again, version 1 still at the bot
        worker.put(worker.pipeline.topics.commands, "PO-5002", worker.codec.encode(ReleaseRequested(
            command_id=f"r-{n}", invoice_id="MP-1", invoice_version=2, po_number="PO-5002", user="clerk",
            reason="resend", issued_at=AT, holds=[RPA_FAILURE])))
        worker.run(steps=6)
    worker.complete("MP-1", ok=False)  # version 1 superseded: the number is free
    worker.run(steps=6)
    rows = {(row["invoice_id"], row["invoice_version"]): row["status"] for row in worker.scheduler.rows()}
    assert rows == {("MP-1", 1): "superseded", ("MP-1", 2): "rpa_failed"}
    topic = worker.pipeline.topics.rpa_requests
    worker.broker.committed.update({tp: 0 for tp in worker.broker.committed if tp[0] == topic})
    worker.pipeline.runtime.batch_size = 1  # a backlog: each hand-off in a batch of its own
    worker.broker.rebalance()
    worker.run(steps=12)
    assert [(sent.invoice_version, sent.attempt) for sent in worker.mailer.sent] == [(1, 1)]
    assert worker.dead_letters() == []
    rows = {(row["invoice_id"], row["invoice_version"]): row["status"] for row in worker.scheduler.rows()}
    assert rows == {("MP-1", 1): "superseded", ("MP-1", 2): "rpa_failed"}
    # The clerk's release once version 1 shows superseded is the hand-off that goes.
    worker.put(worker.pipeline.topics.commands, "PO-5002", worker.codec.encode(ReleaseRequested(
        command_id="r-after", invoice_id="MP-1", invoice_version=2, po_number="PO-5002", user="clerk",
        reason="version 1 superseded", issued_at=AT, holds=[RPA_FAILURE])))
    worker.run(steps=6)
    assert [(sent.invoice_version, sent.attempt) for sent in worker.mailer.sent] == [(1, 1), (2, 4)]


def test_bytes_that_are_no_record_go_to_the_dlq_with_where_they_came_from_and_the_next_is_decided(worker):
    worker.put(worker.pipeline.topics.invoices, "PO-5001", b"\x00garbage")
    worker.submit(ready_invoice("MP-1"))
    worker.run()
    (dead,) = worker.dead_letters()
    assert dead["value"] == b"\x00garbage" and dead["source.topic"] == worker.pipeline.topics.invoices
    assert (dead["stage"], dead["flow"]) == ("decode", "decide-purchase-order-work")
    assert "DecodeError" in dead["error"] and dead["source.offset"] == "0"
    assert worker.statuses() == {"MP-1": "sent_to_rpa"}


def test_a_record_of_another_kind_or_keyed_by_another_po_is_dead_lettered(worker):
    verdict_bytes = worker.codec.encode(Verdict(invoice_id="X", invoice_version=1, po_number="PO-5001",
                                                status="bad_invoice", http_status=400, rules_version="t",
                                                evaluated_at="2026-11-25T09:00:00Z"))
    worker.put(worker.pipeline.topics.invoices, "PO-5001", verdict_bytes)
    worker.submit(ready_invoice("MP-1"), key="PO-OTHER")
    worker.run()
    errors = sorted(dead["error"] for dead in worker.dead_letters())
    assert "is not a message decide-purchase-order-work takes" in errors[0]
    assert "is not its po_number" in errors[1]
    assert worker.statuses() == {}


def test_an_entry_the_bot_reports_after_a_failure_is_recorded_entered_and_one_never_sent_is_dead_lettered(
        tmp_path):
    """A screen that timed out after the entry went through: AP sees it entered, not failed, and
    cannot send it again. An entry of a version never sent names it, in the dead-letter topic."""
    worker = make_worker(tmp_path)
    worker.submit(ready_invoice("MP-1"))
    worker.run()
    worker.complete("MP-1", ok=False)
    worker.run()
    assert worker.statuses() == {"MP-1": "rpa_failed"}
    worker.complete("MP-1")
    worker.complete("MP-1", version=2)  # never seen: refused as before
    worker.run()
    assert worker.statuses() == {"MP-1": "entered"}
    (dead,) = worker.dead_letters()
    assert "names 'MP-1' version 2, which PO 'PO-5001' never held" in dead["error"]


def test_a_completion_under_another_po_than_its_invoices_is_dead_lettered_and_the_rest_of_its_batch_goes_on(tmp_path):
    worker = make_worker(tmp_path, purchase_orders=InMemoryPurchaseOrderReader(
        [purchase_order(), purchase_order(po_number="PO-5002")]))
    worker.submit(ready_invoice("MP-1"))
    worker.submit(ready_invoice("MP-2", po_number="PO-5002"))
    worker.run()
    worker.complete("MP-1", po_number="PO-5002")  # the bot names MP-2's PO
    worker.complete("MP-2", po_number="PO-5002")
    worker.run()
    (dead,) = worker.dead_letters()
    assert (dead["source.topic"], dead["stage"]) == (worker.pipeline.topics.completions, "decide")
    assert "names 'MP-1' version 1, which PO 'PO-5002' never held" in dead["error"]
    assert worker.statuses() == {"MP-1": "sent_to_rpa", "MP-2": "entered"}
    worker.complete("MP-1")
    worker.run()
    assert worker.statuses() == {"MP-1": "entered", "MP-2": "entered"}


def test_an_rpa_request_carrying_another_invoices_payload_is_dead_lettered_not_mailed(worker):
    worker.submit(ready_invoice("MP-1"))
    worker.run()
    (request,) = [worker.codec.decode(r.value) for r in worker.broker.records(worker.pipeline.topics.rpa_requests)]
    other = request.payload.model_copy(update={"invoice_id": "MP-2"})
    forged = RpaRequest.model_construct(**{**dict(request), "invoice_version": 2, "payload": other})
    worker.put(worker.pipeline.topics.rpa_requests, "PO-5001", worker.codec.encode(forged))
    worker.run()
    (dead,) = worker.dead_letters()
    assert (dead["source.topic"], dead["stage"]) == (worker.pipeline.topics.rpa_requests, "decode")
    assert "its payload is 'MP-2' version 1 on 'PO-5001', not the invoice version it hands over" in dead["error"]
    assert [(sent.invoice_id, sent.invoice_version) for sent in worker.mailer.sent] == [("MP-1", 1)]


def test_hostile_field_values_are_bad_invoice_verdicts_naming_the_field_and_the_limit(worker):
    worker.submit(ready_invoice("MP-1", invoice_number="INV-1\r\nBcc: thief@example.com"))
    lines = [{"line_no": 1, "part_number": "AC-100", "quantity": "1e27", "unit_price": "15.50"}]
    worker.submit(ready_invoice("MP-2", lines=lines, total_amount="1"))
    worker.run()
    assert worker.statuses() == {"MP-1": "bad_invoice", "MP-2": "bad_invoice"}
    reasons = {row["invoice_id"]: row["reasons"][0] for row in worker.scheduler.rows()}
    assert reasons["MP-1"]["field"] == "invoice_number" and "U+000D" in reasons["MP-1"]["message"]
    assert reasons["MP-2"]["field"] == "lines[1].quantity" and "Sampro keeps 14" in reasons["MP-2"]["message"]
    assert worker.mailer.sent == [] and worker.dead_letters() == []


class FlakySampro:
    """Sampro that is down for the first `down` calls."""

    def __init__(self, reader, down: int):
        self.reader, self.down, self.calls = reader, down, 0

    def fetch(self, po_numbers):
        self.calls += 1
        if self.calls <= self.down:
            raise Unavailable("sampro", "connection refused")
        return self.reader.fetch(po_numbers)

    def entered_invoices(self, pairs):
        return self.reader.entered_invoices(pairs)


def test_an_outage_of_sampro_holds_the_partition_and_it_goes_on_by_itself_when_sampro_is_back(tmp_path):
    from connectors.sampro import InMemoryPurchaseOrderReader
    from tests.unit.streams.conftest import purchase_order

    sampro = FlakySampro(InMemoryPurchaseOrderReader([purchase_order()]), down=3)
    worker = make_worker(tmp_path, purchase_orders=sampro)
    worker.submit(ready_invoice("MP-1"))
    worker.run(steps=2, seconds_between=0)
    assert worker.statuses() == {}
    assert "sampro" in worker.pipeline.health.outages()
    ready, body = worker.pipeline.health.readiness()
    assert not ready and "connection refused" in body["down"]["sampro"]["detail"]
    worker.run(steps=30)
    assert worker.statuses() == {"MP-1": "sent_to_rpa"}
    assert worker.pipeline.health.outages() == {} and sampro.calls == 4
    assert worker.dead_letters() == [] and len(worker.mailer.sent) == 1


def test_processscheduler_locked_by_another_session_is_an_outage_waited_out_not_a_loop_that_waits(tmp_path):
    """A DBA's transaction left open on processscheduler: the worker's write waited for as long as
    it held its lock (the engine had no lock timeout; SQLite's busy timeout was a fixed 30 s), the
    loop with it, and readiness said ready. It waits SCHEDULER_LOCK_WAIT_SECONDS now, then
    processscheduler is down, the batch is read again after a back-off, and goes through once the
    lock is let go."""
    import sqlite3
    import time

    from streams.bootstrap import process_scheduler
    from streams.settings import Settings

    scheduler = process_scheduler(Settings(data_dir=tmp_path, scheduler_lock_wait_seconds=0.2, _env_file=None))
    worker = make_worker(tmp_path, scheduler=scheduler)
    dba = sqlite3.connect(tmp_path / "scheduler.db", isolation_level=None)
    dba.execute("BEGIN IMMEDIATE")  # the write lock, held
    worker.submit(ready_invoice("MP-1"))
    started = time.monotonic()
    worker.run(steps=4)  # decided, then recorded: the write waits
    assert time.monotonic() - started < 10
    ready, body = worker.pipeline.health.readiness()
    assert not ready and "database is locked" in body["down"]["processscheduler"]["detail"]
    dba.execute("ROLLBACK")
    worker.run()
    assert worker.statuses() == {"MP-1": "sent_to_rpa"} and worker.pipeline.health.outages() == {}
    dba.close()
    scheduler.engine.dispose()


class PickyScheduler(InMemoryProcessScheduler):
    """processscheduler that refuses to store one invoice's rows."""

    def __init__(self, refused: str):
        super().__init__()
        self.refused = refused

    def record(self, decisions):
        if any(entry.key[0] == self.refused for entry in entries(decisions)):
            raise DataError("processscheduler refused the data: value too long")
        super().record(decisions)


def test_a_verdict_the_database_refuses_is_dead_lettered_alone_and_the_rest_of_the_batch_is_recorded(tmp_path):
    scheduler = PickyScheduler(refused="MP-2")
    worker = make_worker(tmp_path, scheduler=scheduler)
    for number in (1, 2, 3):
        worker.submit(ready_invoice(f"MP-{number}", po_number=f"PO-{number}"))
        worker.sampro.purchase_orders[f"PO-{number}"] = worker.sampro.purchase_orders["PO-5001"].model_copy(
            update={"po_number": f"PO-{number}"})
    worker.run()
    assert {row["invoice_id"] for row in scheduler.rows()} == {"MP-1", "MP-3"}
    stages = sorted((dead["stage"], dead["flow"]) for dead in worker.dead_letters())
    assert set(stages) == {("record", "record-in-processscheduler")}


def _rules_raise_on(worker, monkeypatch, invoice_id: str) -> None:
    """The desk's rules raise on `invoice_id`, as a bug no test foresaw would."""
    desk = worker.pipeline.desk
    original = desk.judge_for

    def judge_for(po, known, now):
        judge = original(po, known, now)

        class Exploding:
            rules_version = judge.rules_version

            def decide(self, submission, in_flight):
                if submission.invoice_id == invoice_id:
                    raise ArithmeticError("something no rule foresaw")
                return judge.decide(submission, in_flight)

            def payload_for(self, submission):
                return judge.payload_for(submission)

            def could_not_judge(self, submission, reason, dead_lettered=True):
                return judge.could_not_judge(submission, reason, dead_lettered)

        return Exploding()

    monkeypatch.setattr(desk, "judge_for", judge_for)


def test_an_invoice_whose_judging_fails_gets_a_bad_invoice_verdict_and_a_dead_letter(worker, monkeypatch):
    _rules_raise_on(worker, monkeypatch, "MP-2")
    worker.submit(ready_invoice("MP-1", po_number="PO-5001"))
    worker.sampro.purchase_orders["PO-2"] = worker.sampro.purchase_orders["PO-5001"].model_copy(
        update={"po_number": "PO-2"})
    worker.submit(ready_invoice("MP-2", po_number="PO-2"))
    worker.run()
    assert worker.statuses() == {"MP-1": "sent_to_rpa", "MP-2": "bad_invoice"}
    row = next(r for r in worker.scheduler.rows() if r["invoice_id"] == "MP-2")
    assert "something no rule foresaw" in row["reasons"][0]["message"]
    (dead,) = worker.dead_letters()
    assert dead["stage"] == "decide" and "ArithmeticError" in dead["error"]


def test_an_invoice_the_rules_fail_on_when_its_po_is_freed_is_bad_invoice_and_the_po_goes_on(
        worker, monkeypatch, caplog):
    """MP-1's completion freed the PO and the rules raised on MP-2, parked behind it: the completion
    was dead-lettered, MP-1 stayed at the bot in the ledger, and MP-3 and every later invoice parked."""
    _rules_raise_on(worker, monkeypatch, "MP-2")
    for invoice_id in ("MP-1", "MP-2", "MP-3"):
        worker.submit(ready_invoice(invoice_id))
    worker.run()
    worker.complete("MP-1")
    worker.run()
    assert worker.statuses() == {"MP-1": "entered", "MP-2": "bad_invoice", "MP-3": "sent_to_rpa"}
    row = next(r for r in worker.scheduler.rows() if r["invoice_id"] == "MP-2")
    assert "something no rule foresaw" in row["reasons"][0]["message"]
    assert "the invoices behind it on its PO went on" in row["reasons"][0]["message"]
    assert worker.dead_letters() == []
    assert ("PO PO-5001: the rules failed on MP-2@v1 (made bad_invoice): ArithmeticError: something no rule "
            "foresaw; the PO went on") in caplog.text


class DownMailer:
    def __init__(self, inner, down: int, refuse: str | None = None):
        self.inner, self.down, self.refuse, self.calls = inner, down, refuse, 0

    def unsent(self, requests):
        return self.inner.unsent(requests)

    def keep_failed(self, failures):
        self.inner.keep_failed(failures)

    def send(self, requests):
        self.calls += 1
        if self.calls <= self.down:
            raise Unavailable("smtp", "connection refused")
        if any(request.invoice_id == self.refuse for request in requests):
            raise DataError("the RPA mailbox refused the email: 552 message too large")
        return self.inner.send(requests)


def test_an_smtp_outage_holds_the_emails_and_each_goes_out_once_when_it_is_back(tmp_path):
    from connectors.rpa_mail import InMemoryRpaMailer

    inner = InMemoryRpaMailer()
    worker = make_worker(tmp_path, mailer=DownMailer(inner, down=4))
    worker.submit(ready_invoice("MP-1"))
    worker.run(steps=40)
    assert [request.invoice_id for request in inner.sent] == ["MP-1"]
    assert worker.statuses() == {"MP-1": "sent_to_rpa"} and worker.dead_letters() == []


class PuttingOffMailer:
    """A content filter that answers 451 to one invoice's email while `times` lasts."""

    def __init__(self, inner, invoice_id: str, times: int):
        self.inner, self.invoice_id, self.times = inner, invoice_id, times

    def unsent(self, requests):
        return self.inner.unsent(requests)

    def keep_failed(self, failures):
        self.inner.keep_failed(failures)

    def send(self, requests):
        if self.times and any(request.invoice_id == self.invoice_id for request in requests):
            self.times -= 1
            raise PutOff("smtp", f"the RPA mailbox put the email for {self.invoice_id} v1 off: 451 4.7.1")
        return self.inner.send(requests)


def test_a_mailbox_back_from_an_outage_that_puts_an_email_off_is_not_down(tmp_path, caplog):
    """The outage's wait stayed on the partition until the email was taken or given up, an hour, and
    readiness said the mailbox was down while it answered."""
    from connectors.rpa_mail import InMemoryRpaMailer

    inner = InMemoryRpaMailer()
    worker = make_worker(tmp_path, mailer=DownMailer(PuttingOffMailer(inner, "MP-1", times=10_000), down=2))
    worker.submit(ready_invoice("MP-1"))
    worker.run(steps=30)
    assert inner.sent == [] and worker.pipeline.health.outages() == {}
    assert any(r.levelname == "WARNING" and "waits at offset" in r.getMessage() and "put the email for MP-1" in
               r.getMessage() for r in caplog.records)


def test_an_email_put_off_holds_its_own_partition_only_and_the_mailbox_is_not_down(tmp_path):
    """One email a content filter put off held every partition's emails in its batch for the hour
    before it was given up, and readiness said the mailbox was down."""
    from connectors.rpa_mail import InMemoryRpaMailer
    from connectors.sampro import InMemoryPurchaseOrderReader

    probe = make_worker(tmp_path / "probe")
    first, second = "PO-5001", next(f"PO-{n}" for n in range(6000, 6100)
                                    if probe.broker.partition_of(f"PO-{n}".encode())
                                    != probe.broker.partition_of(b"PO-5001"))
    inner = InMemoryRpaMailer()
    mailer = PuttingOffMailer(inner, "MP-1", times=10_000)
    worker = make_worker(tmp_path, mailer=mailer, purchase_orders=InMemoryPurchaseOrderReader(
        [purchase_order(po_number=first), purchase_order(po_number=second)]))
    worker.submit(ready_invoice("MP-1", po_number=first))
    worker.submit(ready_invoice("MP-2", po_number=second))
    worker.run()
    assert [request.invoice_id for request in inner.sent] == ["MP-2"]
    health = worker.pipeline.health
    assert health.outages() == {} and health.registry.get_sample_value(
        "invoice_automation_worker_put_off_total", {"dependency": "smtp"}) > 0
    mailer.times = 0
    worker.run(steps=40)
    assert [request.invoice_id for request in inner.sent] == ["MP-2", "MP-1"] and worker.dead_letters() == []


def test_an_email_that_can_never_be_sent_fails_the_hand_off_and_frees_the_po(tmp_path):
    from connectors.rpa_mail import InMemoryRpaMailer

    worker = make_worker(tmp_path, mailer=DownMailer(InMemoryRpaMailer(), down=0, refuse="MP-1"))
    worker.submit(ready_invoice("MP-1"))
    worker.submit(ready_invoice("MP-2"))
    worker.run()
    assert worker.statuses() == {"MP-1": "rpa_failed", "MP-2": "sent_to_rpa"}
    (dead,) = worker.dead_letters()
    assert dead["stage"] == "mail" and "552" in dead["error"]
    (failure,) = [worker.codec.decode(r.value) for r in worker.broker.records(worker.pipeline.topics.completions)]
    assert failure.attempt == 1  # names its hand-off, as the bot's report does


def test_an_rpa_failure_ap_releases_is_emailed_to_the_bot_again_and_can_be_entered(worker):
    worker.submit(ready_invoice("MP-1"))
    worker.run()
    worker.complete("MP-1", ok=False)
    worker.run()
    assert worker.statuses() == {"MP-1": "rpa_failed"}
    release = ReleaseRequested(command_id="r-1", invoice_id="MP-1", invoice_version=1, po_number="PO-5001",
                               user="ana", reason="Sampro screen fixed", issued_at=AT)
    worker.put(worker.pipeline.topics.commands, "PO-5001", worker.codec.encode(release))
    worker.run()
    assert worker.statuses() == {"MP-1": "sent_to_rpa"}
    assert [(request.invoice_id, request.attempt) for request in worker.mailer.sent] == [("MP-1", 1), ("MP-1", 2)]
    worker.complete("MP-1")
    worker.run()
    assert worker.statuses() == {"MP-1": "entered"} and worker.dead_letters() == []


def test_a_release_of_a_version_the_vendor_replaced_meanwhile_is_noted_on_the_newer_one_for_the_clerk(worker):
    """The vendor saved the invoice again as version 2 right after the clerk looked at version 1: the
    API took the release of version 1 (processscheduler did not show version 2 yet), the worker
    dropped it without a word, and version 2 sat in manual review while the clerk took it for released."""
    lines = [dict(line) for line in po()["lines"]]
    lines[0]["unit_price"] = "15.40"  # the invoice's 15.50 is held PRICE_MISMATCH
    worker.sampro.purchase_orders["PO-5001"] = purchase_order(lines=lines)
    document = ready_invoice("MP-1")
    worker.submit(document)
    worker.submit(document, version=2)
    worker.run()
    release = ReleaseRequested(command_id="r-1", invoice_id="MP-1", invoice_version=1, po_number="PO-5001",
                               user="ana", reason="price agreed with buyer", reason_code="PRICE_AGREED", issued_at=AT)
    for _ in range(2):  # delivered again: applied once
        worker.put(worker.pipeline.topics.commands, "PO-5001", worker.codec.encode(release))
    worker.run()
    assert [(row["invoice_version"], row["status"]) for row in worker.scheduler.rows()] == [
        (1, "superseded"), (2, "manual_review")]
    assert [(step["invoice_version"], step["status"], step["reason"]) for step in worker.scheduler.history("MP-1")
            if step["actor"] == "ana"] == [(2, "manual_review", "Not released: ana released version 1 (PRICE_AGREED: "
                                                                "price agreed with buyer), which version 2 replaced: "
                                                                "look at version 2 again.")]
    assert worker.mailer.sent == [] and worker.dead_letters() == []


def test_a_hand_off_waiting_for_the_mailbox_is_not_sent_once_the_bot_reports_the_version_entered(tmp_path):
    """AP released the bot's failure while the mailbox was down; the bot then reported hand-off 1
    entered after all (its screen had timed out after the entry). Hand-off 2 went out when the
    mailbox came back, for the bot to enter the invoice a second time."""
    from connectors.rpa_mail import InMemoryRpaMailer

    mailer = DownMailer(InMemoryRpaMailer(), down=0)
    worker = make_worker(tmp_path, mailer=mailer)
    worker.submit(ready_invoice("MP-1"))
    worker.run()
    worker.complete("MP-1", ok=False)
    worker.run()
    mailer.down = 10**6
    _release(worker, "MP-1", "Sampro screen fixed")
    assert worker.statuses() == {"MP-1": "sent_to_rpa"}
    worker.put(worker.pipeline.topics.completions, "PO-5001", worker.codec.encode(RpaCompletion(
        event_id="rpa:MP-1:a1:late", invoice_id="MP-1", invoice_version=1, po_number="PO-5001",
        outcome=CompletionOutcome.SUCCESS, sampro_invoice_id="S-9", occurred_at=AT, attempt=1)))
    worker.run()
    assert worker.statuses() == {"MP-1": "entered"}
    mailer.down = 0
    worker.run()
    assert [(request.invoice_id, request.attempt) for request in mailer.inner.sent] == [("MP-1", 1)]


def test_a_version_arriving_again_with_other_content_is_dead_lettered_naming_it_not_taken_for_a_replay(worker):
    """The marketplace changed version 1 in place: taken for a replay, the change was dropped
    without a word, and a clerk's release sent the old content to the bot. Then, told as a
    bad_invoice verdict, it showed the version at the bot rejected in processscheduler."""
    worker.submit(ready_invoice("MP-1"))
    worker.run()
    assert worker.statuses() == {"MP-1": "sent_to_rpa"}
    worker.submit(ready_invoice("MP-1", invoice_number="INV-CHANGED"))
    worker.submit(ready_invoice("MP-1"))  # a replay of the first: nothing to say
    worker.run()
    (dead,) = worker.dead_letters()
    assert "Version 1 of invoice 'MP-1' arrived again with other content" in dead["error"]
    assert worker.statuses() == {"MP-1": "sent_to_rpa"}  # the ledger's, where it stands
    (note,) = [h for h in worker.scheduler.history("MP-1") if "other content" in (h["reason"] or "")]
    assert note["status"] == "sent_to_rpa" and "must upload the change as a new version" in note["reason"]
    told = len(worker.scheduler.history("MP-1"))
    worker.submit(ready_invoice("MP-1", invoice_number="INV-CHANGED"))  # the same edit again: told once
    worker.run()
    assert len(worker.dead_letters()) == 2 and len(worker.scheduler.history("MP-1")) == told


def test_two_hand_offs_of_a_version_read_again_in_one_batch_email_only_the_later(worker, tmp_path):
    """Both refused by the mailbox, neither in the sent log: rpa.requests read again (a new
    consumer group) emailed both, though hand-off 2 exists only because hand-off 1 failed."""
    worker.submit(ready_invoice("MP-1"))
    worker.run()
    (record,) = worker.broker.records(worker.pipeline.topics.rpa_requests)
    first = worker.codec.decode(record.value)
    again = make_worker(tmp_path / "again")
    for request in (first, first.model_copy(update={"attempt": 2})):
        again.put(again.pipeline.topics.rpa_requests, "PO-5001", again.codec.encode(request))
    again.run()
    assert [(request.invoice_id, request.attempt) for request in again.mailer.sent] == [("MP-1", 2)]


def _release(worker, invoice_id: str, reason: str, holds: tuple[str, ...] = (), command_id: str = "") -> None:
    release = ReleaseRequested(command_id=command_id or f"r-{invoice_id}", invoice_id=invoice_id, invoice_version=1,
                               po_number="PO-5001", user="ana", reason=reason, issued_at=AT, holds=list(holds))
    worker.put(worker.pipeline.topics.commands, "PO-5001", worker.codec.encode(release))
    worker.run()


def test_an_rpa_failure_released_after_another_invoice_took_its_quantity_is_held_not_sent(tmp_path):
    """The failure freed MP-1's quantities, and MP-2 went on with them; AP's retry of MP-1 went to
    the bot unchecked when its turn came, and the PO was invoiced past what was ordered."""
    three_ordered = [{**line, "quantity_ordered": "3"} if line["line_no"] == 1 else line for line in po()["lines"]]
    worker = make_worker(tmp_path, purchase_orders=InMemoryPurchaseOrderReader([purchase_order(lines=three_ordered)]))
    worker.submit(ready_invoice("MP-1"))  # 2 of the 3 on line 1
    worker.run()
    worker.complete("MP-1", ok=False)
    worker.run()
    worker.submit(ready_invoice("MP-2"))  # 2 more
    worker.run()
    _release(worker, "MP-1", "Sampro screen fixed", holds=(RPA_FAILURE,))  # as the API names a failure's release
    assert worker.statuses() == {"MP-1": "released", "MP-2": "sent_to_rpa"}
    entered = [{**line, "quantity_invoiced": line["line_no"] + 1} for line in three_ordered]  # MP-2's 2 and 3
    worker.sampro.purchase_orders["PO-5001"] = purchase_order(lines=entered)
    worker.complete("MP-2")
    worker.run()
    assert worker.statuses() == {"MP-1": "manual_review", "MP-2": "entered"}
    assert [row["reasons"] for row in worker.scheduler.rows() if row["invoice_id"] == "MP-1"][0][0]["code"] == \
        "QUANTITY_EXCEEDS_OPEN"
    assert worker.scheduler.history("MP-1")[-1]["reason"] == (
        "Judged again at its turn at the RPA bot: held by QUANTITY_EXCEEDS_OPEN:1:quantity#po1, "
        "which no clerk has released as it reads now.")
    # The same failure released again (a second click on the page that showed it failed): nothing it saw is left.
    _release(worker, "MP-1", "Sampro screen fixed", holds=(RPA_FAILURE,), command_id="r-MP-1-again")
    assert worker.statuses()["MP-1"] == "manual_review"
    assert worker.scheduler.history("MP-1")[-1]["reason"].startswith("Not released: Sampro screen fixed (judged again "
                                                                      "since, it has no hold RPA_FAILED::)")
    assert [(request.invoice_id, request.attempt) for request in worker.mailer.sent] == [("MP-1", 1), ("MP-2", 1)]
    # The first release delivered again (a crash before its offset was committed): applied once.
    told = len(worker.scheduler.history("MP-1"))
    _release(worker, "MP-1", "Sampro screen fixed", holds=(RPA_FAILURE,))
    assert len(worker.scheduler.history("MP-1")) == told and worker.statuses()["MP-1"] == "manual_review"
    # The buyer raises the order in Sampro: cleared, its second hand-off is an event of its own.
    worker.sampro.purchase_orders["PO-5001"] = purchase_order(lines=[{**line, "quantity_ordered": "9"}
                                                                     for line in entered])
    worker.put(worker.pipeline.topics.sampro_changes, "PO-5001", worker.codec.encode(
        PurchaseOrderChanged(event_id="sampro:PO-5001:1", po_number="PO-5001", changed_at=AT)))
    worker.run()
    assert worker.statuses() == {"MP-1": "sent_to_rpa", "MP-2": "entered"}
    assert [(request.invoice_id, request.attempt) for request in worker.mailer.sent][-1] == ("MP-1", 2)


def test_the_bots_late_entry_of_a_failure_judged_again_at_its_next_turn_is_taken(worker):
    """The screen timed out after the entry: released, the failure was judged again at its next turn
    and held as a duplicate of its own entry in Sampro, and the bot's late report of that entry was
    dead-lettered instead of taken."""
    worker.submit(ready_invoice("MP-1"))
    worker.run()
    worker.complete("MP-1", ok=False)
    worker.run()
    worker.sampro.entered.append(KnownInvoice("S-9", "V100", "INV-MP-1", "entered", Decimal("1.00")))
    _release(worker, "MP-1", "try again", holds=(RPA_FAILURE,))
    assert worker.statuses() == {"MP-1": "bad_invoice"}
    late = RpaCompletion(event_id="late-entry-1", invoice_id="MP-1", invoice_version=1, po_number="PO-5001",
                         outcome=CompletionOutcome.SUCCESS, sampro_invoice_id="S-9", occurred_at=AT, attempt=1)
    worker.put(worker.pipeline.topics.completions, "PO-5001", worker.codec.encode(late))
    worker.run()
    assert worker.statuses() == {"MP-1": "entered"} and worker.dead_letters() == []


def test_a_release_handed_over_after_the_invoice_at_the_bot_places_its_quantity_on_the_po_as_it_is_then(tmp_path):
    """Placed when released, beside nothing at the bot, its quantity went on the PO line the
    invoice then at the bot filled: the bot keyed 8 of 5 on one line and none on the other."""
    line = {"part_number": "AC-100", "unit_price": "15.50", "quantity_ordered": "5", "quantity_received": "5"}
    two_lines = [{"line_no": number, **line, "quantity_invoiced": "0"} for number in (1, 2)]
    worker = make_worker(tmp_path, purchase_orders=InMemoryPurchaseOrderReader([purchase_order(lines=two_lines)]))
    three = [{"line_no": 1, "part_number": "AC-100", "quantity": "3", "unit_price": "15.50", "amount": "46.50"}]
    five = [{"line_no": 1, "part_number": "AC-100", "quantity": "5", "unit_price": "15.50", "amount": "77.50"}]
    worker.submit(invoice(invoice_id="MP-F", invoice_number="INV-F", lines=three, tax_amount="9.99",
                          total_amount="66.49"))  # the tax is off: held
    worker.run()
    worker.submit(invoice(invoice_id="MP-G", invoice_number="INV-G", lines=five, tax_amount="6.20",
                          total_amount="93.70"))
    worker.run()
    _release(worker, "MP-F", "tax agreed with the vendor")
    assert worker.statuses() == {"MP-F": "released", "MP-G": "sent_to_rpa"}
    entered = [{**two_lines[0], "quantity_invoiced": "5"}, two_lines[1]]
    worker.sampro.purchase_orders["PO-5001"] = purchase_order(lines=entered)
    worker.complete("MP-G")
    worker.run()
    assert worker.statuses() == {"MP-F": "sent_to_rpa", "MP-G": "entered"}
    sent = worker.mailer.sent[-1]
    assert sent.invoice_id == "MP-F" and [(piece.po_line_no, piece.quantity) for piece in sent.payload.lines] == [
        (2, Decimal(3))]


def test_a_release_of_an_invoice_sampro_has_entered_since_is_held_as_a_duplicate(worker):
    """Released, it went to the bot unjudged: an invoice a clerk keyed into Sampro by hand meanwhile
    was paid twice."""
    worker.submit({**PRICE_OFF, "invoice_id": "MP-1", "invoice_number": "INV-900"})
    worker.run()
    assert worker.statuses() == {"MP-1": "manual_review"}
    worker.sampro.entered.append(KnownInvoice("S-77", "V100", "INV-900", "entered", Decimal("1.00")))
    _release(worker, "MP-1", "price agreed")
    assert worker.statuses() == {"MP-1": "bad_invoice"} and worker.mailer.sent == []


def _failed_by_the_bot_then_sent_again(worker) -> None:
    """MP-1 version 1 to the bot and failed there, then the vendor's version 2, judged."""
    worker.submit(ready_invoice("MP-1"))
    worker.run()
    worker.complete("MP-1", ok=False)
    worker.run()
    worker.submit(ready_invoice("MP-1"), version=2)
    worker.run()


def test_rpa_requests_read_again_send_nothing_and_report_nothing_for_what_was_emailed(worker):
    """A new mail consumer group (an upgrade) or an offset reset reads rpa.requests again: version 1,
    failed by the bot, had its number taken by version 2 since, and its request was reported "not
    handed to the RPA bot", a FAILURE on the audit topic for an email the bot had."""
    _failed_by_the_bot_then_sent_again(worker)
    worker.complete("MP-1", version=2)
    worker.run()
    assert {row["invoice_version"]: row["status"] for row in worker.scheduler.rows()} == {
        1: "superseded", 2: "entered"}
    topics = worker.pipeline.topics
    completions = len(worker.broker.records(topics.completions))
    for record in worker.broker.records(topics.rpa_requests):
        worker.put(topics.rpa_requests, record.key.decode(), record.value)
    worker.run()
    assert len(worker.broker.records(topics.completions)) == completions and len(worker.mailer.sent) == 2
    assert worker.dead_letters() == []


def test_a_vendor_edit_or_withdrawal_after_the_entry_is_never_entered_again_and_is_told_to_ap(worker):
    worker.submit(ready_invoice("MP-1"))
    worker.run()
    worker.complete("MP-1")
    worker.run()
    worker.submit(ready_invoice("MP-1"), version=2)  # the vendor saved it again after the entry
    worker.run()
    rows = {row["invoice_version"]: row["status"] for row in worker.scheduler.rows()}
    assert rows == {1: "entered", 2: "manual_review"} and len(worker.mailer.sent) == 1
    withdrawal = InvoiceWithdrawn(invoice_id="MP-2", version=1, po_number="PO-5001", withdrawn_at=AT)
    worker.submit(ready_invoice("MP-2"))
    worker.run()
    worker.complete("MP-2")
    worker.run()
    worker.put(worker.pipeline.topics.invoices, "PO-5001", worker.codec.encode(withdrawal))
    worker.run()
    assert worker.statuses()["MP-2"] == "entered"
    assert "credit note" in (worker.scheduler.history("MP-2")[-1]["reason"] or "")
    assert worker.dead_letters() == []


class LaggingScheduler(InMemoryProcessScheduler):
    """A processscheduler whose sink writes each batch when the next one comes (or on `catch_up`):
    the mail flow, in a consumer group of its own, may hand over before the sink has written."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list = []

    def record(self, decisions) -> None:
        self.catch_up()
        self.pending = list(decisions)

    def catch_up(self) -> None:
        pending, self.pending = self.pending, []
        super().record(pending)


@pytest.mark.parametrize("scheduler", [InMemoryProcessScheduler, LaggingScheduler], ids=["sink-in-time", "sink-behind"])
def test_a_new_version_after_the_bot_failed_the_first_goes_to_the_bot_past_the_hand_off_gate(tmp_path, scheduler):
    """Also before processscheduler shows the first superseded: the hand-off names it (`replaces`)."""
    worker = make_worker(tmp_path, scheduler=scheduler())
    _failed_by_the_bot_then_sent_again(worker)
    if isinstance(worker.scheduler, LaggingScheduler):
        worker.scheduler.catch_up()
    rows = {row["invoice_version"]: row["status"] for row in worker.scheduler.rows()}
    assert rows == {1: "superseded", 2: "sent_to_rpa"}
    assert [(request.invoice_id, request.invoice_version) for request in worker.mailer.sent] == [("MP-1", 1),
                                                                                               ("MP-1", 2)]


def _mp_1_entered_on_po_5001(tmp_path):
    """A worker over PO-5001 and PO-5002, MP-1 entered on PO-5001 by the bot."""
    sampro = InMemoryPurchaseOrderReader([purchase_order(), purchase_order(po_number="PO-5002")])
    worker = make_worker(tmp_path, purchase_orders=sampro)
    worker.submit(ready_invoice("MP-1"))
    worker.run()
    worker.complete("MP-1")
    worker.run()
    return worker


@pytest.mark.parametrize("edit", [{}, {"invoice_number": "INV-MP-1-CORRECTED"}], ids=["same-number", "new-number"])
def test_an_edit_after_the_entry_that_names_another_po_is_stopped_at_the_hand_off(tmp_path, edit):
    """The other PO's ledger has never heard of the invoice: the hand-off gate has, by its number
    and by its invoice id."""
    worker = _mp_1_entered_on_po_5001(tmp_path)
    worker.submit(ready_invoice("MP-1", po_number="PO-5002", **edit), version=2)
    worker.run()
    rows = {row["invoice_version"]: row["status"] for row in worker.scheduler.rows()}
    assert rows == {1: "entered", 2: "rpa_failed"} and len(worker.mailer.sent) == 1
    (failed,) = [h for h in worker.scheduler.history("MP-1") if h["status"] == "rpa_failed"]
    assert "version 1 of this invoice is entered in Sampro" in failed["reason"]


class CountingScheduler(InMemoryProcessScheduler):
    """Counts where-are-the-versions reads; the first `blind` of them find nothing, as one made
    before the sink has recorded the older versions does."""

    def __init__(self, blind: int = 0) -> None:
        super().__init__()
        self.version_reads, self.blind = 0, blind

    def versions_of(self, invoice_ids):
        self.version_reads += 1
        return [] if self.version_reads <= self.blind else super().versions_of(invoice_ids)


def release_version_2(worker) -> None:
    release = ReleaseRequested(command_id="r-1", invoice_id="MP-1", invoice_version=2, po_number="PO-5002",
                               user="ana", reason="version 1 is superseded", issued_at=AT)
    worker.put(worker.pipeline.topics.commands, "PO-5002", worker.codec.encode(release))
    worker.run()
    assert {row["invoice_version"]: row["status"] for row in worker.scheduler.rows()} == {
        1: "superseded", 2: "sent_to_rpa"}
    assert [request.invoice_version for request in worker.mailer.sent] == [1, 2]


def test_a_new_version_on_another_po_replaces_the_one_the_bot_failed_and_goes_once_ap_releases_it(tmp_path):
    sampro = InMemoryPurchaseOrderReader([purchase_order(), purchase_order(po_number="PO-5002")])
    worker = make_worker(tmp_path, purchase_orders=sampro, scheduler=CountingScheduler())
    worker.submit(ready_invoice("MP-1"))
    worker.run()
    worker.complete("MP-1", ok=False)
    worker.run()
    assert worker.scheduler.version_reads == 1  # the mail flow's (one a batch); the PO agent's: none for a first
    worker.submit(ready_invoice("MP-1", po_number="PO-5002", invoice_number="INV-MP-1-B"), version=2)
    worker.run()
    rows = {row["invoice_version"]: row for row in worker.scheduler.rows()}
    assert (rows[1]["status"], rows[1]["po_number"]) == ("superseded", "PO-5001")
    (superseded,) = [h for h in worker.scheduler.history("MP-1") if h["status"] == "superseded"]
    assert superseded["reason"] == "Version 2 of this invoice names PO PO-5002 and replaces this one."
    # Handed over before PO-5001's agent superseded version 1, it was refused: AP releases it now.
    assert rows[2]["status"] == "rpa_failed"
    # The mail flow's for the first hand-off; the PO agent's; the mail flow's; the refused hand-off's.
    assert worker.scheduler.version_reads == 4
    release_version_2(worker)
    assert worker.dead_letters() == []


def test_a_version_moved_back_to_the_first_po_replaces_the_one_on_the_second(tmp_path):
    sampro = InMemoryPurchaseOrderReader([purchase_order(), purchase_order(po_number="PO-5002")])
    worker = make_worker(tmp_path, purchase_orders=sampro)
    worker.submit(ready_invoice("MP-1", total_amount="1.00"))  # held: TOTAL_MISMATCH
    worker.run()
    worker.submit(ready_invoice("MP-1", po_number="PO-5002", total_amount="1.00"), version=2)
    worker.run()
    worker.submit(ready_invoice("MP-1", total_amount="1.00"), version=3)
    worker.run()
    rows = {row["invoice_version"]: (row["po_number"], row["status"]) for row in worker.scheduler.rows()}
    assert rows == {1: ("PO-5001", "superseded"), 2: ("PO-5002", "superseded"), 3: ("PO-5001", "bad_invoice")}
    reasons = [h["reason"] for h in worker.scheduler.history("MP-1") if h["status"] == "superseded"]
    assert reasons == ["Version 2 of this invoice names PO PO-5002 and replaces this one.",
                       "Version 3 of this invoice names PO PO-5001 and replaces this one."]


def test_a_hand_off_held_back_by_an_older_version_on_another_po_tells_that_po(tmp_path):
    sampro = InMemoryPurchaseOrderReader([purchase_order(), purchase_order(po_number="PO-5002")])
    # Blind: the mail flow's read for version 1's hand-off, and the PO agent's for version 2.
    worker = make_worker(tmp_path, purchase_orders=sampro, scheduler=CountingScheduler(blind=2))
    worker.submit(ready_invoice("MP-1"))
    worker.run()
    worker.submit(ready_invoice("MP-1", po_number="PO-5002", invoice_number="INV-MP-1-B"), version=2)
    worker.run()
    assert {row["invoice_version"]: row["status"] for row in worker.scheduler.rows()} == {
        1: "sent_to_rpa", 2: "rpa_failed"}
    (noted,) = [h for h in worker.scheduler.history("MP-1") if "if the RPA bot fails it" in (h["reason"] or "")]
    assert (noted["invoice_version"], noted["status"]) == (1, "sent_to_rpa")
    worker.complete("MP-1", ok=False)
    worker.run()
    release_version_2(worker)


def test_versions_on_three_pos_in_one_batch_leave_the_newest(tmp_path):
    """After a backlog one batch may hold them all, before the sink has recorded any."""
    sampro = InMemoryPurchaseOrderReader([purchase_order(po_number=po) for po in ("PO-5001", "PO-5002", "PO-5003")])
    worker = make_worker(tmp_path, purchase_orders=sampro)
    for version, po_number in enumerate(("PO-5001", "PO-5002", "PO-5003"), start=1):
        worker.submit(ready_invoice("MP-1", po_number=po_number, total_amount="1.00"), version=version)
    worker.run()
    rows = {row["invoice_version"]: (row["po_number"], row["status"]) for row in worker.scheduler.rows()}
    assert rows == {1: ("PO-5001", "superseded"), 2: ("PO-5002", "superseded"), 3: ("PO-5003", "bad_invoice")}
    assert {h["reason"] for h in worker.scheduler.history("MP-1") if h["status"] == "superseded"} == {
        "Version 3 of this invoice names PO PO-5003 and replaces this one."}


def test_a_record_dead_lettered_in_a_batch_read_again_is_counted_once(worker):
    """The counter went up at each reading, so a DLQ alert fired at every Kafka hiccup."""
    worker.run(steps=3)
    worker.put(worker.pipeline.topics.invoices, "PO-5001", b"not a record")
    worker.submit(ready_invoice("MP-1"))
    worker.broker.losing_commits = 1
    worker.run()
    health = worker.pipeline.health
    counted = {(s.labels["flow"], s.labels["stage"]): s.value for metric in health.dead_letters.collect()
               for s in metric.samples if s.name.endswith("_total")}
    assert len(worker.dead_letters()) == 1 and counted == {("decide-purchase-order-work", "decode"): 1.0}
    verdicts = {s.labels["status"]: s.value for metric in health.verdicts.collect()
                for s in metric.samples if s.name.endswith("_total")}
    assert verdicts == {"ready_to_process": 1}  # decided twice, committed once: counted once


def _counted(counter) -> dict[tuple[str, ...], float]:
    return {tuple(s.labels.values()): s.value for metric in counter.collect() for s in metric.samples
            if s.name.endswith("_total")}


def test_a_batch_decided_again_record_by_record_counts_each_verdict_once_the_refused_ones_too(tmp_path, monkeypatch):
    """A verdict Kafka would refuse (a PO of thousands of lines) has the batch decided again record by
    record: the other verdicts were counted twice, and the refused invoice's bad_invoice not at all."""
    import streams.runtime

    sampro = InMemoryPurchaseOrderReader([purchase_order(po_number=f"PO-{n}") for n in range(1, 7)])
    worker = make_worker(tmp_path, purchase_orders=sampro)
    too_large = streams.runtime.too_large
    monkeypatch.setattr(streams.runtime, "too_large", lambda value, besides=0: (
        "1,300,000 bytes" if b"MP-BIG" in value else too_large(value, besides)))
    for n in range(1, 6):
        worker.submit(ready_invoice(f"MP-{n}", po_number=f"PO-{n}"))
    worker.submit(ready_invoice("MP-BIG", po_number="PO-6"))
    worker.run()
    assert worker.statuses() == {**{f"MP-{n}": "sent_to_rpa" for n in range(1, 6)}, "MP-BIG": "bad_invoice"}
    assert _counted(worker.pipeline.health.verdicts) == {("ready_to_process",): 5, ("bad_invoice",): 1}


def test_a_batch_read_again_counts_its_records_and_forwarded_records_once_committed(tmp_path):
    """Held an hour for Sampro, 100 records counted 6,000 times: a rate of steady work while nothing
    was done. A record forwarded in a lost transaction counted at each reading."""
    sampro = FlakySampro(InMemoryPurchaseOrderReader([purchase_order()]), down=10**6)
    worker = make_worker(tmp_path, purchase_orders=sampro)
    health = worker.pipeline.health
    worker.run(steps=3)
    topic, _ = _astray(worker, ready_invoice("MP-2"))
    for n in range(3, 6):
        worker.submit(ready_invoice(f"MP-{n}"))
    worker.broker.losing_commits = 1
    worker.run(steps=30)
    assert sampro.calls > 3 and worker.statuses() == {}
    assert _counted(health.records) == {("decide-purchase-order-work",): 1}  # forwarded, committed: done
    assert _counted(health.forwarded) == {("decide-purchase-order-work", topic): 1}
    sampro.down = 0
    worker.run()
    assert set(worker.statuses()) == {"MP-2", "MP-3", "MP-4", "MP-5"}
    records = _counted(health.records)
    assert records[("decide-purchase-order-work",)] == 5  # MP-2 astray and at home, MP-3 to MP-5
    assert records[("record-in-processscheduler",)] == len(worker.broker.records(worker.pipeline.topics.verdicts))


def test_a_lost_transaction_reads_the_batch_again_and_nothing_is_doubled(worker):
    worker.broker.losing_commits = 1
    worker.submit(ready_invoice("MP-1"))
    worker.submit(ready_invoice("MP-2"))
    worker.run()
    assert worker.statuses() == {"MP-1": "sent_to_rpa", "MP-2": "waiting_for_po"}
    assert len(worker.broker.records(worker.pipeline.topics.verdicts)) == len(
        {r.value for r in worker.broker.records(worker.pipeline.topics.verdicts)})
    assert [request.invoice_id for request in worker.mailer.sent] == ["MP-1"]


def test_transactions_lost_batch_after_batch_are_waited_between_and_readiness_says_so(worker):
    """Something Kafka refuses every time (a topic deleted, not writable): each transaction was lost,
    and the worker decided the same batch again as fast as it could, its readiness green all along."""
    worker.broker.losing_commits = 5
    worker.submit(ready_invoice("MP-1"))
    runtime, health = worker.pipeline.runtime, worker.pipeline.health
    for _ in range(3):
        runtime.step()
    assert worker.clock.now > 0  # waited between the tries
    assert not health.readiness()[0] and "transactions lost in a row" in health.outages()["kafka"].detail
    worker.run()
    assert worker.statuses() == {"MP-1": "sent_to_rpa"} and health.readiness()[0] and health.outages() == {}
    assert len(worker.broker.records(worker.pipeline.topics.rpa_requests)) == 1


def test_a_seek_refused_while_a_lost_batch_is_read_again_is_tried_again(worker):
    """librdkafka may refuse a seek: the partition stayed paused until the next rebalance, its POs'
    invoices unread, since no hold of the runtime's remembered to release it again."""
    worker.run(steps=3)  # restored, started
    worker.broker.losing_commits, worker.broker.refusing_seeks = 1, 2  # at the hold and at its release
    worker.submit(ready_invoice("MP-1"))
    worker.run()
    assert worker.statuses() == {"MP-1": "sent_to_rpa"}


def test_a_kafka_outage_at_commit_is_waited_out_and_the_batch_commits_once(worker):
    worker.broker.failing_commits = 3
    worker.submit(ready_invoice("MP-1"))
    worker.run()
    assert worker.statuses() == {"MP-1": "sent_to_rpa"}
    assert len(worker.broker.records(worker.pipeline.topics.rpa_requests)) == 1
    assert worker.pipeline.health.outages() == {}


class _AnswerLost(InMemoryBroker):
    """Commits the next transaction and says Kafka did not answer, then is away for the runtime's
    other tries: the EndTxn reached the coordinator, its answer did not."""

    answers_lost = 0

    def __init__(self, partitions: int, meanwhile: Callable[[], None]):
        super().__init__(partitions)
        self.meanwhile = meanwhile

    def commit(self, offsets):
        if not self.answers_lost:
            return super().commit(offsets)
        self.answers_lost -= 1
        super().commit(offsets)
        self.meanwhile()
        self.failing_commits = 2
        raise Unavailable("kafka", "committing a batch: Local: Timed out")


def test_a_batch_whose_commit_landed_unconfirmed_is_not_decided_twice(tmp_path):
    """Decided again from the state before it, the batch's second decision (the PO's price cut in
    Sampro meanwhile: held) stood in the ledger beside its first, which had gone to the RPA bot: AP
    saw the invoice held while the bot entered it, and the PO was free for its next invoice."""
    def buyer_cuts_the_price() -> None:
        lines = [dict(line) for line in po()["lines"]]
        lines[0]["unit_price"] = "15.00"
        worker.sampro.purchase_orders["PO-5001"] = purchase_order(lines=lines)

    broker = _AnswerLost(3, buyer_cuts_the_price)
    worker = make_worker(tmp_path, broker=broker)
    worker.run(steps=3)
    broker.answers_lost = 1
    worker.submit(ready_invoice("MP-1"))
    worker.run()
    assert [request.invoice_id for request in worker.mailer.sent] == ["MP-1"]
    assert worker.statuses() == {"MP-1": "sent_to_rpa"}
    assert [step["status"] for step in worker.scheduler.history("MP-1")] == ["ready_to_process", "sent_to_rpa"]


def test_after_a_rebalance_the_ledger_comes_back_from_its_changelog(tmp_path):
    broker = InMemoryBroker(partitions=3)
    first = make_worker(tmp_path / "a", broker=broker)
    first.submit(ready_invoice("MP-1"))
    first.submit(ready_invoice("MP-2"))
    first.run()
    # Another worker takes over, with nothing in its store but what the changelog holds.
    second = make_worker(tmp_path / "b", broker=broker, scheduler=first.scheduler, mailer=first.mailer)
    second.complete("MP-1")
    second.run()
    assert second.statuses() == {"MP-1": "entered", "MP-2": "sent_to_rpa"}


def test_a_changelog_is_restored_into_the_store_a_chunk_at_a_time(tmp_path, monkeypatch):
    """Read whole before any of it was written, a 60 MB changelog took 65 MB of memory on restore."""
    broker = InMemoryBroker(partitions=3)
    first = make_worker(tmp_path / "a", broker=broker)
    for number in range(4):
        first.submit(ready_invoice(f"MP-{number}", invoice_number=f"INV-{number}"))
    first.run()
    logged = len(broker.records(changelog_topic(first.pipeline.settings)))
    monkeypatch.setattr("streams.runtime.RESTORE_CHUNK", 2)
    chunks, restore = [], Store.restore

    def restored(self, number, records):
        records = list(records)
        chunks.append(len(records))
        return restore(self, number, records)

    monkeypatch.setattr(Store, "restore", restored)
    second = make_worker(tmp_path / "b", broker=broker, scheduler=first.scheduler, mailer=first.mailer)
    second.complete("MP-0")
    second.run()
    assert max(chunks) == 2 and sum(chunks) == logged
    assert second.statuses()["MP-0"] == "entered"


class _RebalancedMidPoll(InMemoryBroker):
    """A rebalance served inside a poll after records were fetched (the Kafka broker's poll calls
    librdkafka's consume up to three times): every partition revoked, and all but `taken` given
    back, each to be read from its committed offset, as the eager protocol does; in the same poll,
    or (`assign_later`) in the next, after the group's join and sync."""

    rebalance, taken, assign_later = False, 2, False
    _kept: list | None = None

    def poll(self, max_records, timeout):
        if self._kept is not None:
            self._assign_again(self._kept)
            self._kept = None
            return []
        records = super().poll(max_records, timeout)
        if self.rebalance and records:
            self.rebalance = False
            kept = [tp for tp in self._positions if tp[1] != self.taken]
            self._on_revoked(list(self._positions))
            self._positions = {}
            if self.assign_later:
                self._kept = kept
            else:
                self._assign_again(kept)
        return records

    def _assign_again(self, kept):
        self._positions = {tp: self.committed.get(tp, 0) for tp in kept}
        self._held = set(self._on_assigned(kept))


@pytest.mark.parametrize("assign_later", [False, True])
def test_records_of_a_partition_taken_away_during_the_poll_are_left_to_its_new_owner(tmp_path, assign_later):
    """Judged here too, the invoice went to the RPA bot from two workers, and two wrote its PO's ledger."""
    broker = _RebalancedMidPoll(partitions=3)
    broker.assign_later = assign_later
    worker = make_worker(tmp_path, broker=broker)
    worker.run(steps=2)
    worker.submit(ready_invoice("MP-1"))  # PO-5001: partition 2
    worker.broker.rebalance = True
    worker.run(steps=1)
    assert worker.broker.committed.get((worker.pipeline.topics.invoices, 2), 0) == 0
    assert worker.broker.records(worker.pipeline.topics.rpa_requests) == []
    assert worker.broker.topic(changelog_topic(worker.pipeline.settings))[2] == []


@pytest.mark.parametrize("assign_later", [False, True])
def test_records_fetched_before_a_rebalance_that_gave_their_partition_back_are_handled_once(assign_later):
    """Fetched again from the committed offset, a record of a flow that keeps no state was handled twice."""
    broker = _RebalancedMidPoll(partitions=1)
    broker.taken, broker.assign_later = None, assign_later
    handled: list[bytes] = []
    runtime = Runtime(broker, dlq_topic="dlq", encode=bytes)
    runtime.add_flow(Flow("sink", ("t",), decode=lambda record: record.value, handle=lambda batch: handled.extend(
        batch.messages)))
    runtime.start()
    broker.append("t", b"k", b"v1")
    broker.rebalance = True
    for _ in range(3):
        runtime.step()
    assert handled == [b"v1"] and broker.committed[("t", 0)] == 1


@pytest.mark.parametrize("key", [b"\xff\xfe", None])
def test_a_changelog_record_no_flow_wrote_is_passed_over_and_the_ledgers_come_back(tmp_path, key):
    """Raised, it stopped every partition of the worker, restore after restore."""
    broker = InMemoryBroker(partitions=3)
    first = make_worker(tmp_path / "a", broker=broker)
    first.submit(ready_invoice("MP-1"))
    first.submit(ready_invoice("MP-2"))
    first.run()
    for partition in range(3):
        broker.append(changelog_topic(first.pipeline.settings), key, b"x", partition=partition)
    second = make_worker(tmp_path / "b", broker=broker, scheduler=first.scheduler, mailer=first.mailer)
    second.complete("MP-1")
    second.run()
    assert second.statuses() == {"MP-1": "entered", "MP-2": "sent_to_rpa"}


def test_a_ledger_in_rocksdb_survives_a_restart_and_reads_only_the_changelog_after_it(tmp_path):
    broker = InMemoryBroker(partitions=3)
    first = make_worker(tmp_path, store="rocksdb://", broker=broker)
    first.submit(ready_invoice("MP-1"))
    first.submit(ready_invoice("MP-2"))
    first.run()
    first.pipeline.ledgers.store.close()
    second = make_worker(tmp_path, store="rocksdb://", broker=broker, scheduler=first.scheduler,
                         mailer=first.mailer)
    store = second.pipeline.ledgers.store
    positions = {number: store.partition(number).position for number in range(3)}
    assert any(position is not None for position in positions.values())
    second.complete("MP-1")
    second.run()
    assert second.statuses() == {"MP-1": "entered", "MP-2": "sent_to_rpa"}


def pipeline_that_handed_mp1_over(data_dir: Path) -> Worker:
    """A pipeline that emailed MP-1 to the RPA bot and parked MP-2 behind it, its ledgers in RocksDB."""
    first = make_worker(data_dir, store="rocksdb://")
    first.submit(ready_invoice("MP-1"))
    first.submit(ready_invoice("MP-2"))
    first.run()
    assert first.statuses() == {"MP-1": "sent_to_rpa", "MP-2": "waiting_for_po"}
    first.pipeline.runtime.close()
    return first


def store_warnings(caplog) -> list[str]:
    """What the stores warned of, each Kafka cluster id as `<cluster>`."""
    return [re.sub(r"cluster [0-9a-f]{32}", "cluster <cluster>", record.getMessage()) for record in caplog.records
            if record.name == "streams.state" and record.levelname == "WARNING"]


def made_from_another(number: int, app_id: str = "invoice-automation") -> str:
    return (f"partition {number} of the po-ledgers store was made from invoice-automation-po-ledgers-changelog "
            f"on Kafka cluster <cluster>, not from {app_id}-po-ledgers-changelog on Kafka cluster <cluster>: it is "
            f"cleared and read again from the whole of {app_id}-po-ledgers-changelog")


@pytest.mark.parametrize("partitions", [3, 6], ids=["same-count", "more-partitions"])
def test_a_new_pipeline_on_the_same_data_dir_starts_with_no_ledgers(tmp_path, caplog, partitions):
    """More partitions are a new pipeline with another APP_ID (README, "Scaling out"), which starts with
    no ledgers; but a RocksDB store is kept by partition number under DATA_DIR, which docker-compose
    keeps on a volume. The new pipeline went on from the old one's: MP-9 was parked behind MP-1, which
    it never handed over, and with more partitions the worker stopped saying partitions were added."""
    old = pipeline_that_handed_mp1_over(tmp_path)
    new = make_worker(tmp_path, store="rocksdb://", app_id="invoice-automation-v2",
                      broker=InMemoryBroker(partitions=partitions))
    new.submit(ready_invoice("MP-9"))
    new.run()
    assert new.statuses() == {"MP-9": "sent_to_rpa"}
    assert store_warnings(caplog) == [made_from_another(old.broker.partition_of(b"PO-5001"), "invoice-automation-v2")]


def test_a_pipeline_on_a_kafka_made_anew_starts_with_no_ledgers_and_keeps_its_own(tmp_path, caplog):
    """The same APP_ID and DATA_DIR, the Kafka cluster made anew (its volume lost, or a new cluster for
    the same names): the store went on from the old cluster's ledgers, its position past the new
    changelog's end, and MP-9 was parked behind MP-1. Its own ledgers it keeps at the next restart."""
    old = pipeline_that_handed_mp1_over(tmp_path)
    new = make_worker(tmp_path, store="rocksdb://")
    new.submit(ready_invoice("MP-9"))
    new.run()
    assert new.statuses() == {"MP-9": "sent_to_rpa"}
    said = [record.getMessage() for record in caplog.records if record.name == "streams.state"]
    assert store_warnings(caplog) == [made_from_another(old.broker.partition_of(b"PO-5001"))]
    assert said[0].index(old.broker.cluster_id) < said[0].index(new.broker.cluster_id)
    new.pipeline.runtime.close()
    caplog.clear()
    again = make_worker(tmp_path, store="rocksdb://", broker=new.broker, scheduler=new.scheduler, mailer=new.mailer)
    assert again.pipeline.ledgers.store.partition(old.broker.partition_of(b"PO-5001")).position is not None
    again.complete("MP-9")
    again.run()
    assert again.statuses() == {"MP-9": "entered"} and store_warnings(caplog) == []


def test_a_store_whose_position_is_past_its_changelogs_end_is_read_whole(tmp_path, caplog):
    """The changelog deleted and made again on the same cluster (the topics reset): the store was read
    from past its end, and Kafka's reader (auto.offset.reset) read the new changelog on top of the
    old ledgers."""
    old = pipeline_that_handed_mp1_over(tmp_path)
    reset = InMemoryBroker(partitions=3)
    reset.cluster_id = old.broker.cluster_id
    new = make_worker(tmp_path, store="rocksdb://", broker=reset)
    new.submit(ready_invoice("MP-9"))
    new.run()
    assert new.statuses() == {"MP-9": "sent_to_rpa"}
    number = old.broker.partition_of(b"PO-5001")
    assert store_warnings(caplog) == [
        f"partition {number} of the po-ledgers store has its position outside its changelog "
        f"(invoice-automation-po-ledgers-changelog [{number}] at offset 5: it ends at 0): it is cleared and read "
        "again from the whole of invoice-automation-po-ledgers-changelog"]
    assert "state store" not in new.pipeline.health.outages()


def test_a_store_written_before_it_noted_its_changelog_is_read_whole(tmp_path, caplog):
    """An upgrade: the store does not say which changelog its position is in, so it is not trusted."""
    from rocksdict import Rdict

    first = pipeline_that_handed_mp1_over(tmp_path)
    number = first.broker.partition_of(b"PO-5001")
    written_before = Rdict(str(tmp_path / "state" / "po-ledgers" / str(number)))
    del written_before[CHANGELOG_KEY]
    written_before.close()
    second = make_worker(tmp_path, store="rocksdb://", broker=first.broker, scheduler=first.scheduler,
                         mailer=first.mailer)
    second.complete("MP-1")
    second.run()
    assert second.statuses() == {"MP-1": "entered", "MP-2": "sent_to_rpa"}
    assert store_warnings(caplog) == [
        f"partition {number} of the po-ledgers store does not say which changelog it was made from (an earlier "
        "version wrote it), not from invoice-automation-po-ledgers-changelog on Kafka cluster <cluster>: it is "
        "cleared and read again from the whole of invoice-automation-po-ledgers-changelog"]


def test_a_rocksdb_partition_gone_to_another_worker_of_the_same_data_dir_is_opened_there(tmp_path):
    """Workers on one machine (or replicas sharing a volume) share DATA_DIR: a worker kept each
    partition's RocksDB open after a rebalance took it away, the worker it went to could not take
    RocksDB's lock, and the POs of that partition were never decided while the first one ran."""
    broker = InMemoryBroker(partitions=3)
    first = make_worker(tmp_path, store="rocksdb://", broker=broker)
    first.submit(ready_invoice("MP-1"))
    first.submit(ready_invoice("MP-2"))
    first.run()
    number = broker.partition_of(b"PO-5001")
    read_there = []

    def other_worker() -> None:
        other = Store("po-ledgers", changelog_topic(first.pipeline.settings), "rocksdb://", tmp_path)
        read_there.append(other.partition(number).get("PO-5001"))
        other.close()

    broker.rebalance(meanwhile=other_worker)
    assert read_there[0] is not None  # the ledger as the first worker left it
    first.complete("MP-1")
    first.run()
    assert first.statuses() == {"MP-1": "entered", "MP-2": "sent_to_rpa"}


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_partitions_added_to_the_topics_of_a_running_pipeline_stop_the_worker_naming_a_po_away_from_its_ledger(
        tmp_path, store):
    """Every topic grown from 3 to 4 partitions, the changelog too (the counts equal, the check at
    start passed): PO-5001 belonged on partition 3 then, whose store had no ledger of it. MP-3 was
    emailed to the RPA bot while MP-1 was there, the bot's entry of MP-1 was dead-lettered ("never
    held"), MP-2 waited for good, and nothing said why. (RocksDB's partitions read their changelog
    from their position on disk: nothing, here.)"""
    worker = make_worker(tmp_path, store=store)
    worker.submit(ready_invoice("MP-1"))
    worker.submit(ready_invoice("MP-2"))
    worker.run()
    ledger_on = worker.broker.partition_of(b"PO-5001")
    worker.broker.partition_count = 4  # kafka-topics --alter --partitions 4, on every topic
    for partitions in worker.broker.logs.values():
        partitions.append([])
    assert worker.broker.partition_of(b"PO-5001") == 3 != ledger_on
    worker.broker.rebalance()  # as the group does when its topics gain partitions
    worker.submit(ready_invoice("MP-3"))
    worker.complete("MP-1")
    steps = iter(range(20))
    with pytest.raises(Misconfigured) as stopped:
        run_together([worker.pipeline.runtime], lambda: next(steps, None) is None)
    assert str(stopped.value).startswith(
        f"partition {ledger_on} of the po-ledgers store holds the state of 'PO-5001', which "
        f"{worker.pipeline.topics.invoices} now puts on partition 3: ")
    assert str(stopped.value).endswith('(README, "Scaling out")')
    restarted = make_worker(tmp_path, store=store, broker=worker.broker, scheduler=worker.scheduler,
                            mailer=worker.mailer)
    with pytest.raises(Misconfigured, match="'PO-5001'"):
        restarted.run()
    assert [request.invoice_id for request in worker.mailer.sent] == ["MP-1"]
    assert worker.statuses() == {"MP-1": "sent_to_rpa", "MP-2": "waiting_for_po"}
    assert worker.dead_letters() == []
    assert (worker.pipeline.topics.invoices, 3) not in worker.broker.committed


def test_an_output_kafka_would_refuse_dead_letters_its_record_instead_of_failing_the_batch():
    from streams.runtime import Flow, Runtime

    broker = InMemoryBroker(partitions=1)
    runtime = Runtime(broker, dlq_topic="dlq", encode=lambda message: message)

    noise = random.Random(5).randbytes(1_100_000)
    made = {b"big": b"big" * 1_000_000, b"noise": noise, b"huge": b"huge" * 5_000_000}

    def echo(batch) -> None:
        for _record, value in batch.items:
            batch.emit("out", "k", made.get(value, value))

    runtime.add_flow(Flow("echo", ("in",), decode=lambda record: record.value, handle=echo))
    runtime.start()
    for value in (b"a", b"big", b"noise", b"huge", b"b"):
        broker.append("in", b"k", value)
    runtime.step()
    # 3 MB that compress under Kafka's 1 MB are sent, as the producer compresses them
    assert [r.value for r in broker.records("out")] == [b"a", made[b"big"], b"b"]
    noise_dead, huge_dead = broker.records("dlq")
    assert noise_dead.value == b"noise" and huge_dead.value == b"huge"
    said = dict(noise_dead.headers)["error"]
    assert re.search(rb"1,100,001 bytes, 1,10\d,\d{3} compressed; Kafka takes 1,000,000", said)
    assert b"20,000,001 bytes; the worker sends 16,000,000 at most" in dict(huge_dead.headers)["error"]
    assert broker.committed[("in", 0)] == 5


def test_an_invoice_that_would_grow_its_pos_ledger_past_what_kafka_takes_is_dead_lettered_alone(worker, monkeypatch):
    import streams.record_size

    waiting = [f"MP-{number}" for number in range(2, 151)]
    for invoice_id in ["MP-1", *waiting]:
        worker.submit(ready_invoice(invoice_id))
    worker.run()
    # As full as it may be: each further parked invoice adds its key to the PO's value (its record
    # is a value of its own, smaller than the PO's here, so only the PO's value reaches the limit).
    full = len(_ledger_bytes(worker, "PO-5001"))
    assert full > max(len(value) for key, value in _state(worker).items() if "\x1fr\x1f" in key)
    monkeypatch.setattr(streams.record_size, "KAFKA_TAKES", full + 5)
    monkeypatch.setattr(streams.record_size, "MAX_RECORD_BYTES", full + 5)
    worker.submit(ready_invoice("MP-151"))
    worker.submit(ready_invoice("MP-152"))
    worker.run()
    statuses = worker.statuses()
    assert statuses["MP-1"] == "sent_to_rpa" and {statuses[invoice_id] for invoice_id in waiting} == {"waiting_for_po"}
    assert {statuses["MP-151"], statuses["MP-152"]} == {"bad_invoice"}
    assert [dead["stage"] for dead in worker.dead_letters()] == ["decide", "decide"]
    assert "more than its ledger can keep" in worker.dead_letters()[0]["error"]
    worker.complete("MP-1")
    worker.run()
    assert worker.statuses()["MP-2"] == "sent_to_rpa"  # the PO goes on


def _state(worker) -> dict[str, bytes]:
    store = worker.pipeline.ledgers.store
    return {key: value for number in range(3) for key, value in store.partition(number).data.items()}


def _ledger_bytes(worker, po_number: str) -> bytes:
    store = worker.pipeline.ledgers.store
    for number in range(3):
        raw = store.partition(number).get(po_number)
        if raw:
            return raw
    raise AssertionError(f"no ledger for {po_number}")


def held_for_its_price(worker) -> list[dict]:
    """MP-1 held on PO-5001, whose price Sampro has at 15.00 against its 15.50 (the buyer keyed it
    wrong); the PO's lines, to change further."""
    from tests.unit.rules.builders import PO
    from tests.unit.streams.conftest import purchase_order

    lines = [dict(line) for line in PO["lines"]]
    lines[0]["unit_price"] = "15.00"
    worker.sampro.purchase_orders["PO-5001"] = purchase_order(lines=lines)
    worker.submit(ready_invoice("MP-1"))
    worker.run()
    return lines


def test_a_price_corrected_in_sampro_clears_a_held_invoice_which_is_mailed_once(worker):
    from rules.lifecycle import PurchaseOrderChanged
    from tests.unit.streams.conftest import AT, purchase_order

    held_for_its_price(worker)
    assert worker.statuses() == {"MP-1": "manual_review"}
    worker.sampro.purchase_orders["PO-5001"] = purchase_order()  # ... and corrected it
    change = PurchaseOrderChanged(event_id="sampro:PO-5001:1", po_number="PO-5001", changed_at=AT)
    worker.pipeline.sampro_changes.waiting.append(change)  # polled, and put on sampro.changes
    worker.run()
    worker.put(worker.pipeline.topics.sampro_changes, "PO-5001", worker.codec.encode(change))  # replayed
    worker.run()
    assert len(worker.broker.records(worker.pipeline.topics.sampro_changes)) == 2
    assert worker.statuses() == {"MP-1": "sent_to_rpa"}
    assert [request.invoice_id for request in worker.mailer.sent] == ["MP-1"]
    events = [event["status"] for event in worker.scheduler.history("MP-1")]
    assert events == ["manual_review", "ready_to_process", "sent_to_rpa"]


def test_a_held_invoice_the_rules_fail_on_at_a_change_of_its_po_stays_held_and_the_change_goes_on(
        worker, monkeypatch, caplog):
    """The change was dead-lettered, and the PO's other held invoices never judged again. Made
    bad_invoice, the invoice would have lost the price hold a clerk may release."""
    from rules.lifecycle import PurchaseOrderChanged
    from tests.unit.streams.conftest import AT, purchase_order

    held_for_its_price(worker)
    _rules_raise_on(worker, monkeypatch, "MP-1")
    worker.sampro.purchase_orders["PO-5001"] = purchase_order()
    worker.pipeline.sampro_changes.waiting.append(
        PurchaseOrderChanged(event_id="sampro:PO-5001:1", po_number="PO-5001", changed_at=AT))
    worker.run()
    assert worker.statuses() == {"MP-1": "manual_review"} and worker.dead_letters() == []
    assert "the rules failed on MP-1@v1 (held as it was): ArithmeticError" in caplog.text
    assert [event["status"] for event in worker.scheduler.history("MP-1")] == ["manual_review"]


def test_a_sampro_change_that_leaves_a_held_invoice_judged_as_it_was_adds_nothing_to_its_history(worker):
    """The bot's entry of another invoice changes the PO in Sampro: each invoice held on it was
    judged again and told again, unchanged, to the topic and into processscheduler's history."""
    from rules.lifecycle import PurchaseOrderChanged
    from tests.unit.streams.conftest import AT, purchase_order

    lines = held_for_its_price(worker)
    verdicts = len(worker.broker.records(worker.pipeline.topics.verdicts))
    lines[1]["quantity_invoiced"] = "1"  # another invoice entered: no finding of MP-1 reads line 2
    worker.sampro.purchase_orders["PO-5001"] = purchase_order(lines=lines)
    worker.pipeline.sampro_changes.waiting.append(
        PurchaseOrderChanged(event_id="sampro:PO-5001:1", po_number="PO-5001", changed_at=AT))
    worker.run()
    assert len(worker.broker.records(worker.pipeline.topics.verdicts)) == verdicts
    assert [event["status"] for event in worker.scheduler.history("MP-1")] == ["manual_review"]


def test_a_sampro_change_reads_its_po_only_when_the_po_holds_an_invoice_the_change_may_clear(worker):
    from rules.lifecycle import PurchaseOrderChanged
    from tests.unit.rules.builders import PO
    from tests.unit.streams.conftest import AT, purchase_order

    lines = [dict(line) for line in PO["lines"]]
    lines[0]["unit_price"] = "15.00"
    worker.sampro.purchase_orders["PO-5001"] = purchase_order(lines=lines)
    worker.sampro.purchase_orders["PO-5002"] = purchase_order(po_number="PO-5002")
    worker.submit(ready_invoice("MP-1"))  # held for its price
    worker.submit(ready_invoice("MP-2", po_number="PO-5002"))  # at the bot: nothing a change may clear
    worker.run()
    assert worker.statuses() == {"MP-1": "manual_review", "MP-2": "sent_to_rpa"}
    worker.sampro.asked.clear()
    for po_number in ("PO-5001", "PO-5002", "PO-7"):  # PO-7: no invoice ever
        worker.pipeline.sampro_changes.waiting.append(
            PurchaseOrderChanged(event_id=f"sampro:{po_number}:1", po_number=po_number, changed_at=AT))
    worker.run()
    assert worker.sampro.asked == {"PO-5001"}
    assert worker.statuses() == {"MP-1": "manual_review", "MP-2": "sent_to_rpa"}


def test_an_invoice_on_a_po_sampro_cannot_give_waits_saying_why_and_goes_on_once_the_po_is_fixed(worker):
    """A status Sampro's view gives that the service does not know failed the batch: the invoice
    was a bad_invoice (INVALID_INVOICE, which no clerk may release), its ledger never held it, and
    fixing the PO in Sampro changed nothing."""
    from rules.lifecycle import PurchaseOrderChanged
    from rules.models import UnreadablePurchaseOrder
    from tests.unit.streams.conftest import AT, purchase_order

    worker.sampro.purchase_orders["PO-5001"] = UnreadablePurchaseOrder(
        po_number="PO-5001", problem="PO PO-5001: status 'Released' is not one of ['open', 'closed', 'on_hold']")
    worker.sampro.purchase_orders["PO-5002"] = purchase_order(po_number="PO-5002")
    worker.submit(ready_invoice("MP-1"))
    worker.submit(ready_invoice("MP-2", po_number="PO-5002"))  # in the same batch, on a PO that reads
    worker.run()
    assert worker.statuses() == {"MP-1": "po_not_found", "MP-2": "sent_to_rpa"} and worker.dead_letters() == []
    (finding,) = next(row for row in worker.scheduler.rows() if row["invoice_id"] == "MP-1")["reasons"]
    assert finding["code"] == "PO_NOT_FOUND" and "is in Sampro but cannot be read: PO PO-5001: status " \
                                                  "'Released'" in finding["message"]
    worker.sampro.purchase_orders["PO-5001"] = purchase_order()  # the view fixed
    worker.pipeline.sampro_changes.waiting.append(
        PurchaseOrderChanged(event_id="sampro:PO-5001:1", po_number="PO-5001", changed_at=AT))
    worker.run()
    assert worker.statuses() == {"MP-1": "sent_to_rpa", "MP-2": "sent_to_rpa"}


def test_several_changes_of_a_po_in_one_batch_judge_its_held_invoices_again_once(worker):
    """Each judged them all again against the same snapshot, and each verdict went to the topic."""
    from rules.lifecycle import PurchaseOrderChanged
    from tests.unit.streams.conftest import AT, purchase_order

    lines = held_for_its_price(worker)
    verdicts = len(worker.broker.records(worker.pipeline.topics.verdicts))
    lines[0]["unit_price"] = "15.10"  # the buyer corrects the price five times, wrongly still
    worker.sampro.purchase_orders["PO-5001"] = purchase_order(lines=lines)
    for n in range(5):
        worker.put(worker.pipeline.topics.sampro_changes, "PO-5001", worker.codec.encode(
            PurchaseOrderChanged(event_id=f"sampro:PO-5001:{n}", po_number="PO-5001", changed_at=AT)))
    worker.run()
    again = [worker.codec.decode(r.value) for r in worker.broker.records(worker.pipeline.topics.verdicts)[verdicts:]]
    assert [(type(m).__name__, m.invoice_id, m.judged_after) for m in again] == [
        ("Verdict", "MP-1", "sampro:PO-5001:4")]
    assert worker.statuses() == {"MP-1": "manual_review"}
    # One of the changes the last one covered comes again (Debezium delivers at least once): seen.
    worker.put(worker.pipeline.topics.sampro_changes, "PO-5001", worker.codec.encode(
        PurchaseOrderChanged(event_id="sampro:PO-5001:2", po_number="PO-5001", changed_at=AT)))
    worker.run()
    assert len(worker.broker.records(worker.pipeline.topics.verdicts)) == verdicts + 1


def test_a_new_change_of_a_po_judges_its_held_invoices_though_the_batch_ends_on_one_seen_already(worker):
    """The last change of the batch judged for all, and was one applied before (a source sending
    again after a crash) or a repeat of the first (one transaction's header and line rows, under
    one id): the new change was noted as covered, nothing was judged, and the invoice stayed held
    for a price Sampro had corrected."""
    from rules.lifecycle import PurchaseOrderChanged
    from tests.unit.streams.conftest import AT, purchase_order

    def change(n: int) -> None:
        worker.put(worker.pipeline.topics.sampro_changes, "PO-5001", worker.codec.encode(
            PurchaseOrderChanged(event_id=f"sampro:PO-5001:{n}", po_number="PO-5001", changed_at=AT)))

    lines = held_for_its_price(worker)
    lines[0]["unit_price"] = "15.10"  # a wrong correction first: judged again, held still
    worker.sampro.purchase_orders["PO-5001"] = purchase_order(lines=lines)
    change(1)
    worker.run()
    assert worker.statuses() == {"MP-1": "manual_review"}
    lines[0]["unit_price"] = "15.50"  # corrected: change 2, then change 1 again
    worker.sampro.purchase_orders["PO-5001"] = purchase_order(lines=lines)
    change(2)
    change(1)
    worker.run()
    assert worker.statuses() == {"MP-1": "sent_to_rpa"}


def test_a_change_applied_again_once_forgotten_shows_its_new_findings_and_the_clerks_release_of_them_goes(worker):
    """Debezium sends a busy PO's changes again after a Connect restart, the first one after the
    ledger stopped remembering it (`CHANGES_REMEMBERED` changes later), judged against the PO as it
    is now. Its verdict had the event id of the change's first judgement: processscheduler took it
    for a repeat and showed the old price for good, and the worker refused every clerk's release of
    what it showed as judged again since the clerk looked."""
    from rules.po_ledger import CHANGES_REMEMBERED

    def change(n: int) -> None:
        worker.put(worker.pipeline.topics.sampro_changes, "PO-5001", worker.codec.encode(
            PurchaseOrderChanged(event_id=f"sampro:PO-5001:{n}", po_number="PO-5001", changed_at=AT)))

    lines = held_for_its_price(worker)
    lines[0]["unit_price"] = "15.10"  # change 0: a wrong correction
    worker.sampro.purchase_orders["PO-5001"] = purchase_order(lines=lines)
    change(0)
    worker.run()
    for n in range(1, CHANGES_REMEMBERED + 1):  # changes of line 2's order, which MP-1's findings do not read
        lines[1]["quantity_ordered"] = str(10 + n)
        worker.sampro.purchase_orders["PO-5001"] = purchase_order(lines=lines)
        change(n)
        worker.run(steps=2)
    lines[0]["unit_price"] = "15.20"  # the buyer changes the price again, and change 0 comes again
    worker.sampro.purchase_orders["PO-5001"] = purchase_order(lines=lines)
    change(0)
    worker.run()
    (finding,) = next(row for row in worker.scheduler.rows() if row["invoice_id"] == "MP-1")["reasons"]
    assert (finding["code"], finding["expected"]) == ("PRICE_MISMATCH", "15.20")
    worker.put(worker.pipeline.topics.commands, "PO-5001", worker.codec.encode(ReleaseRequested(
        command_id="r-1", invoice_id="MP-1", invoice_version=1, po_number="PO-5001", user="ana", reason="agreed",
        holds=["PRICE_MISMATCH:1:unit_price"], seen={"PRICE_MISMATCH:1:unit_price": finding["message"]},
        issued_at=AT)))
    worker.run()
    assert worker.statuses() == {"MP-1": "sent_to_rpa"}


def test_a_change_undone_before_a_cleared_invoices_turn_keeps_the_hold_the_clerk_released(worker):
    """Cleared by a change while another invoice of its PO was at the bot, the invoice waited; the
    buyer undid the change before its turn. At its turn its findings were the kept ones, yet it got a
    second verdict alike, and the clerk's release of its price hold was gone."""
    lines = [dict(line) for line in PO["lines"]]
    lines[0]["unit_price"] = "15.00"  # MP-1's 15.50 is off
    lines[1]["quantity_ordered"] = "2"  # and its 3 filters are more than ordered
    worker.sampro.purchase_orders["PO-5001"] = purchase_order(lines=lines)
    worker.submit(ready_invoice("MP-1"))
    worker.run()
    row = next(r for r in worker.scheduler.rows() if r["invoice_id"] == "MP-1")
    price = next(f for f in row["reasons"] if f["code"] == "PRICE_MISMATCH")
    worker.put(worker.pipeline.topics.commands, "PO-5001", worker.codec.encode(ReleaseRequested(
        command_id="r-1", invoice_id="MP-1", invoice_version=1, po_number="PO-5001", user="ana",
        reason="price agreed", holds=["PRICE_MISMATCH:1:unit_price"],
        seen={"PRICE_MISMATCH:1:unit_price": price["message"]}, issued_at=AT)))
    worker.submit(invoice(invoice_id="MP-X", invoice_number="INV-X", lines=[  # one compressor, goes to the bot
        {"line_no": 1, "part_number": "AC-100", "quantity": "1", "unit_price": "15.00", "amount": "15.00"}],
        tax_amount="1.20", extra_charges=[], total_amount="16.20"))
    worker.run()
    assert worker.statuses() == {"MP-1": "manual_review", "MP-X": "sent_to_rpa"}
    def verdicts() -> int:
        return sum(isinstance(message := worker.codec.decode(record.value), Verdict) and message.invoice_id == "MP-1"
                   for record in worker.broker.records(worker.pipeline.topics.verdicts))

    told = verdicts()
    for n, (price_now, ordered) in enumerate([("15.50", "10"), ("15.00", "2")], start=1):  # corrected, undone
        lines[0]["unit_price"], lines[1]["quantity_ordered"] = price_now, ordered
        worker.sampro.purchase_orders["PO-5001"] = purchase_order(lines=lines)
        worker.put(worker.pipeline.topics.sampro_changes, "PO-5001", worker.codec.encode(
            PurchaseOrderChanged(event_id=f"sampro:PO-5001:{n}", po_number="PO-5001", changed_at=AT)))
        worker.run()
        assert worker.statuses()["MP-1"] == "waiting_for_po"
    worker.put(worker.pipeline.topics.completions, "PO-5001", worker.codec.encode(RpaCompletion(
        event_id="done-x", invoice_id="MP-X", invoice_version=1, po_number="PO-5001",
        outcome=CompletionOutcome.FAILURE, error="screen timeout", occurred_at=AT)))
    worker.run()
    assert worker.statuses() == {"MP-1": "manual_review", "MP-X": "rpa_failed"}
    assert verdicts() == told  # no verdict again
    worker.put(worker.pipeline.topics.commands, "PO-5001", worker.codec.encode(ReleaseRequested(
        command_id="r-2", invoice_id="MP-1", invoice_version=1, po_number="PO-5001", user="ana",
        reason="filters agreed", holds=["QUANTITY_EXCEEDS_OPEN:2:quantity#po2"], issued_at=AT)))
    worker.run()
    assert worker.statuses()["MP-1"] == "sent_to_rpa"  # the price released before stays released


def test_one_transactions_rows_of_a_po_are_one_change_that_judges_its_held_invoices(worker):
    from rules.lifecycle import PurchaseOrderChanged
    from tests.unit.streams.conftest import AT, purchase_order

    lines = held_for_its_price(worker)
    lines[0]["unit_price"] = "15.50"
    worker.sampro.purchase_orders["PO-5001"] = purchase_order(lines=lines)
    for _ in ("header", "line 1", "line 2"):  # one id: the rows' updated_at, set by one statement
        worker.put(worker.pipeline.topics.sampro_changes, "PO-5001", worker.codec.encode(
            PurchaseOrderChanged(event_id="sampro:PO-5001:7", po_number="PO-5001", changed_at=AT)))
    worker.run()
    assert worker.statuses() == {"MP-1": "sent_to_rpa"}


def test_an_invoice_judged_again_is_a_duplicates_match_while_processscheduler_shows_its_first_verdict(tmp_path):
    """MP-1 was po_not_found, then ready once Sampro had its PO, while the sink was behind: the
    checks took processscheduler's po_not_found (rejected, so no match) over the worker's own newer
    verdict, and MP-2, of the same vendor and number, went to the RPA bot beside it."""
    from connectors.sampro import InMemoryPurchaseOrderReader
    from rules.lifecycle import PurchaseOrderChanged
    from tests.unit.streams.conftest import AT, make_worker, purchase_order

    sampro = InMemoryPurchaseOrderReader([purchase_order()])  # PO-5002 is not in Sampro yet
    worker = make_worker(tmp_path, purchase_orders=sampro)
    worker.submit(ready_invoice("MP-1", invoice_number="INV-9", po_number="PO-5002"))
    worker.run()
    assert worker.statuses() == {"MP-1": "po_not_found"}
    record, refusals = worker.scheduler.record, [3]

    def behind(decisions):  # the sink falls behind: a burst, a lock wait
        if refusals[0]:
            refusals[0] -= 1
            raise Unavailable("processscheduler", "lock wait timeout")
        return record(decisions)

    worker.scheduler.record = behind
    sampro.purchase_orders["PO-5002"] = purchase_order(po_number="PO-5002")
    worker.pipeline.sampro_changes.waiting.append(
        PurchaseOrderChanged(event_id="sampro:PO-5002:1", po_number="PO-5002", changed_at=AT))
    worker.run(steps=2)
    assert worker.statuses() == {"MP-1": "po_not_found"}  # judged ready, not recorded yet
    worker.submit(ready_invoice("MP-2", invoice_number="inv-9"))
    worker.run()
    assert worker.statuses() == {"MP-1": "sent_to_rpa", "MP-2": "bad_invoice"}
    assert [request.invoice_id for request in worker.mailer.sent] == ["MP-1"]


def test_an_invoice_withdrawn_while_the_sink_is_behind_is_no_duplicates_match_for_its_upload_again(tmp_path):
    """The worker's own verdict of MP-1 (held) stayed in the duplicate checks after its withdrawal,
    until the sink caught up: the vendor's upload again, as MP-2, was a DUPLICATE_INVOICE of it,
    which no clerk may release."""
    from connectors.sampro import InMemoryPurchaseOrderReader
    from rules.lifecycle import InvoiceWithdrawn, PurchaseOrderChanged
    from tests.unit.rules.builders import po
    from tests.unit.streams.conftest import AT, make_worker, purchase_order

    sampro = InMemoryPurchaseOrderReader([purchase_order()])  # PO-5002 is not in Sampro yet
    worker = make_worker(tmp_path, purchase_orders=sampro)
    worker.submit(ready_invoice("MP-1", invoice_number="INV-9", po_number="PO-5002"))
    worker.run()
    record, down = worker.scheduler.record, [True]

    def behind(decisions):
        if down[0]:
            raise Unavailable("processscheduler", "lock wait timeout")
        return record(decisions)

    worker.scheduler.record = behind
    lines = po(po_number="PO-5002")["lines"]
    lines[0]["unit_price"] = "15.00"  # MP-1 is held for its price now
    sampro.purchase_orders["PO-5002"] = purchase_order(po_number="PO-5002", lines=lines)
    worker.pipeline.sampro_changes.waiting.append(
        PurchaseOrderChanged(event_id="sampro:PO-5002:1", po_number="PO-5002", changed_at=AT))
    worker.run(steps=2)
    worker.put(worker.pipeline.topics.invoices, "PO-5002", worker.codec.encode(
        InvoiceWithdrawn(invoice_id="MP-1", version=1, po_number="PO-5002", withdrawn_at=AT)))
    worker.run(steps=3)
    worker.submit(ready_invoice("MP-2", invoice_number="inv-9"))
    worker.run(steps=3)
    down[0] = False
    worker.run()
    assert worker.statuses() == {"MP-1": "withdrawn", "MP-2": "sent_to_rpa"}


def test_a_second_entry_reported_before_processscheduler_shows_the_first_is_noted_for_ap(worker):
    """The API named both reports by the attempt alone: the second, under the first's id, was taken
    for a repeat and dropped, and Sampro held an entry AP never heard of."""
    from rules.models import CompletionOutcome, RpaCompletion
    from tests.unit.streams.conftest import AT

    worker.submit(ready_invoice("MP-1"))
    worker.run()
    for sampro_invoice_id in ("S-1", "S-2"):
        worker.put(worker.pipeline.topics.completions, "PO-5001", worker.codec.encode(RpaCompletion(
            event_id=f"rpa:MP-1:v1:attempt1:success:{sampro_invoice_id}", invoice_id="MP-1", invoice_version=1,
            po_number="PO-5001", outcome=CompletionOutcome.SUCCESS, sampro_invoice_id=sampro_invoice_id,
            occurred_at=AT, attempt=1)))
    worker.run()
    assert worker.statuses() == {"MP-1": "entered"}
    (note,) = [h["reason"] for h in worker.scheduler.history("MP-1") if "second time" in (h["reason"] or "")]
    assert "as Sampro invoice S-2, beside S-1" in note


def test_a_watermark_that_cannot_be_saved_leaves_the_poll_done_and_the_worker_going(tmp_path, caplog):
    """processscheduler, where the pollers keep their watermarks, blinked at the commit: the error
    left the runtime's step as a bug of its own after Kafka had committed the poll's changes."""
    from connectors.sampro.changes import InMemorySamproChanges
    from rules.lifecycle import PurchaseOrderChanged

    class SavedNowhere(InMemorySamproChanges):
        def commit(self):
            super().commit()
            raise Unavailable("processscheduler", "connection refused")

    worker = make_worker(tmp_path, sampro_changes=SavedNowhere())
    worker.pipeline.sampro_changes.waiting.append(
        PurchaseOrderChanged(event_id="sampro:PO-5001:1", po_number="PO-5001", changed_at=AT))
    worker.run(steps=3)
    assert len(worker.broker.records(worker.pipeline.topics.sampro_changes)) == 1
    assert "poll-sampro-changes: its watermark was not saved (Unavailable: processscheduler" in caplog.text
    worker.submit(ready_invoice("MP-1"))
    worker.run()
    assert worker.statuses() == {"MP-1": "sent_to_rpa"}


def test_a_source_reads_its_state_again_each_time_its_anchor_is_given_to_this_worker():
    """The pollers read their watermark once per process: given partition 0 back after another
    worker had polled, a worker polled on from its own, and sent again all the other had sent."""
    from streams.runtime import Flow, Runtime, Source

    broker = InMemoryBroker(partitions=2)
    runtime = Runtime(broker, dlq_topic="dlq", encode=bytes)
    runtime.add_flow(Flow("work", ("t",), decode=lambda record: record.value, handle=lambda batch: None))
    taken: list[str] = []
    runtime.add_source(Source("poll", 60, ("t", 0), lambda batch: None, taken=lambda: taken.append("t0")))
    runtime.add_source(Source("elsewhere", 60, ("u", 0), lambda batch: None, taken=lambda: taken.append("u0")))
    runtime.start()
    runtime.step()
    runtime.step()
    assert taken == ["t0"]  # given once; a topic this worker does not read is never its own
    broker.rebalance()
    runtime.step()
    assert taken == ["t0", "t0"]


def test_a_source_whose_poll_stopped_at_a_full_page_is_polled_again_at_once():
    """A poller read a page every POLL_INTERVAL_SECONDS: 1,000 marketplace rows every 2 s, however
    many vendors had uploaded at month end."""
    from streams.runtime import Flow, Runtime, Source

    broker = InMemoryBroker(partitions=1)
    runtime = Runtime(broker, dlq_topic="dlq", encode=bytes)
    runtime.add_flow(Flow("work", ("t",), decode=lambda record: record.value, handle=lambda batch: None))
    polled: list[int] = []
    pages_left = [True, True, False]  # two full pages, then the rest
    runtime.add_source(Source("poll", 60, ("t", 0), lambda batch: polled.append(len(polled)),
                              backlog=lambda: pages_left.pop(0) if pages_left else False))
    runtime.start()
    for _ in range(6):
        runtime.step()
    assert polled == [0, 1, 2]  # then not again for 60 s


def test_a_held_invoice_judged_again_at_the_bots_completion_is_checked_for_duplicates_too(worker):
    """Judged again when the invoice at the bot was entered, its duplicates were not looked up: one
    a clerk had keyed into Sampro by hand meanwhile cleared, and went to the bot to be paid twice."""
    from rules.context import KnownInvoice
    from rules.lifecycle import PurchaseOrderChanged
    from tests.unit.streams.conftest import AT, purchase_order

    lines = held_for_its_price(worker)
    worker.sampro.purchase_orders["PO-5001"] = purchase_order()
    worker.submit(ready_invoice("MP-2"))
    worker.run()
    assert worker.statuses() == {"MP-1": "manual_review", "MP-2": "sent_to_rpa"}
    lines[0]["unit_price"] = "15.25"  # a change while MP-2 is at the bot: MP-1 waits for its completion
    worker.sampro.purchase_orders["PO-5001"] = purchase_order(lines=lines)
    worker.pipeline.sampro_changes.waiting.append(
        PurchaseOrderChanged(event_id="sampro:PO-5001:1", po_number="PO-5001", changed_at=AT))
    worker.run()
    mp1 = ready_invoice("MP-1")
    worker.sampro.entered.append(KnownInvoice("S-77", mp1["vendor_id"], mp1["invoice_number"], "entered",
                                              mp1["total_amount"]))
    worker.sampro.purchase_orders["PO-5001"] = purchase_order()  # the price right: MP-1 would clear
    worker.complete("MP-2")
    worker.run()
    assert worker.statuses() == {"MP-1": "bad_invoice", "MP-2": "entered"}
    assert [request.invoice_id for request in worker.mailer.sent] == ["MP-2"]


def test_a_marketplace_row_too_large_to_dead_letter_whole_is_dead_lettered_without_its_lines_and_the_poll_goes_on(
        tmp_path):
    """A 3 MB PDF pasted into a line of a row whose PO number cannot key a record: dead-lettered
    whole, the broker refused it, and the poll's batch failed at every poll. (A PDF, as text, is
    noise to a compressor; 3 MB of one letter the broker takes, compressed, and is kept whole.)
    The poller no longer reads a JSON column over the limit: the dead letter gives its length."""
    import json
    import random

    from connectors.marketplace_polling import PollingMarketplaceSource
    from connectors.marketplace_table import marketplace_invoices, metadata
    from connectors.sql import engine_for
    from connectors.watermarks import FileWatermark

    engine = engine_for(f"sqlite:///{tmp_path / 'marketplace.db'}")
    metadata.create_all(engine)
    pasted = [{"line_no": 1, "description": random.Random(3).randbytes(1_500_000).hex()}]
    with engine.begin() as conn:
        conn.execute(marketplace_invoices.insert(), [
            {"invoice_id": "MP-1", "po_number": "PO-5001\n", "lines": pasted, "updated_at": AT},
            {"invoice_id": "MP-2", "po_number": "PO-5001", "lines": [], "updated_at": AT}])
    worker = make_worker(tmp_path, source=PollingMarketplaceSource(engine, FileWatermark(tmp_path / "mark.json")))
    worker.run()
    (letter,) = worker.dead_letters()
    row = json.loads(letter["value"])
    assert row["lines"] is None and int(row["lines_length"]) > 3_000_000 and "value.length" not in letter
    assert letter["source.invoice_id"] == "MP-1" and "control character U+000A" in letter["error"]
    assert worker.statuses() == {"MP-2": "bad_invoice"}  # the row after it: judged (it has no lines)


def test_a_marketplace_row_the_poller_cannot_use_is_logged_and_counted_as_a_captured_one_is(tmp_path, caplog):
    """MARKETPLACE_SOURCE=polling: a PO number typed with a trailing newline went to the dead-letter
    topic with no WARNING and no dead_letters_total, where the same row through CDC had both: the
    operator never heard of the invoice. Counted once, though its first batch is lost and the row
    polled again."""
    import logging

    from connectors.marketplace_polling import PollingMarketplaceSource
    from connectors.marketplace_table import marketplace_invoices, metadata
    from connectors.sql import engine_for
    from connectors.watermarks import FileWatermark

    engine = engine_for(f"sqlite:///{tmp_path / 'marketplace.db'}")
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(marketplace_invoices.insert(), [
            {"invoice_id": "MP-1", "po_number": "PO-5001\n", "lines": [], "updated_at": AT},
            {"invoice_id": "MP-2", "po_number": "PO-5001", "lines": [], "updated_at": AT}])
    worker = make_worker(tmp_path, source=PollingMarketplaceSource(engine, FileWatermark(tmp_path / "mark.json")))
    worker.broker.losing_commits = 1
    with caplog.at_level(logging.WARNING, logger="streams.runtime"):
        worker.run()
    (letter,) = worker.dead_letters()
    assert (letter["flow"], letter["stage"], letter["source.invoice_id"]) == ("poll-marketplace", "read", "MP-1")
    (warned,) = {r.getMessage() for r in caplog.records if "dead-lettered" in r.getMessage()}  # at each poll
    assert warned.startswith("poll-marketplace: source.table='marketplace_invoices' source.invoice_id='MP-1' "
                             "dead-lettered at read: DataError: po_number 'PO-5001\\n'")
    health = worker.pipeline.health
    counted = {(s.labels["flow"], s.labels["stage"]): s.value for metric in health.dead_letters.collect()
               for s in metric.samples if s.name.endswith("_total")}
    assert counted == {("poll-marketplace", "read"): 1.0}
    assert worker.statuses() == {"MP-2": "bad_invoice"}


def test_a_source_that_fails_but_not_for_an_outage_is_reported_down_until_it_polls_again(tmp_path):
    """A poll whose statement the database refused (a DATETIME column sent a time with its zone)
    logged an error at every try, while readiness said ready and no Sampro change came in."""
    from connectors.sampro.changes import InMemorySamproChanges

    class Refused(InMemorySamproChanges):
        failing = True

        def poll(self):
            if self.failing:
                raise DataError("sampro refused the data: (22007) conversion failed")
            return super().poll()

    changes = Refused()
    worker = make_worker(tmp_path, sampro_changes=changes)
    worker.run(steps=3)
    (down,) = worker.pipeline.health.outages().items()
    assert down[0] == "poll-sampro-changes" and "conversion failed" in down[1].detail
    changes.failing = False
    worker.run(steps=40)
    assert worker.pipeline.health.outages() == {}


def test_a_dead_letter_keeps_what_kafka_takes_compressed_and_the_records_own_headers():
    """Cut at 1 MB uncompressed, a 3 MB record the broker took (compressed) lost all but its first
    megabyte; a record forwarded to its key's partition lost where it was first."""
    from streams.broker import Record
    from streams.failures import dead_letter

    value = b'{"description": "' + b"x" * 3_000_000 + b'"}'
    headers = (("traceparent", b"00-abc-01"), ("forwarded-from", b"invoices[0]@7"), ("empty", None))
    letter = dead_letter("dlq", Record("invoices", 2, 41, b"PO-1", value, 0, headers), "po-agent", "decode",
                         DataError("not Avro"))
    said = dict(letter.headers)
    assert letter.value == value and "value.length" not in said
    assert (said["source.header.forwarded-from"], said["source.header.traceparent"]) == (b"invoices[0]@7", b"00-abc-01")
    assert said["source.header.empty"] == b"" and said["source.partition"] == b"2"
    many = tuple((f"h{n}", b"v" * 1_000) for n in range(100))
    said = dict(dead_letter("dlq", Record("invoices", 2, 41, b"PO-1", b"x", 0, many), "po-agent", "decode",
                            DataError("not Avro")).headers)
    assert 0 < int(said["source.headers.left_out"]) < 100 and "source.header.h0" in said


def test_a_dead_letter_is_bounded_key_value_and_headers_together():
    """A record of a 63 kB key and a 985 kB value, which the broker took, made a dead letter the
    broker would refuse, and the batch failed at every try: the key was never cut."""
    import random

    from streams.broker import Record
    from streams.failures import MAX_DEAD_LETTER_BYTES, dead_letter
    from streams.record_size import too_large

    noise = random.Random(7)
    for value_bytes in (985_000, 999_500):
        record = Record("invoices", 0, 41, noise.randbytes(63_000), noise.randbytes(value_bytes), 0, ())
        letter = dead_letter("dlq", record, "po-agent", "decode", DataError("not Avro"))
        headers = dict(letter.headers)
        size = len(letter.key) + len(letter.value) + sum(len(name) + len(text) for name, text in letter.headers)
        assert size <= MAX_DEAD_LETTER_BYTES and too_large(letter.value, size - len(letter.value)) is None
        assert headers["key.length"] == b"63000" and letter.key == record.key[: len(letter.key)]
        assert letter.value == record.value[: len(letter.value)]
        assert headers.get("value.length") == (None if value_bytes == 985_000 else b"999500")


def test_a_marketplace_row_whose_record_kafka_would_refuse_is_dead_lettered_and_the_poll_goes_on(tmp_path):
    """A 2.6 MB vendor id (SQLite keeps what a column's length says it may not): its event was
    refused at the emit, the whole poll failed, and no row after it was ever read again. (The poller
    now reads no column longer than a whole row may be, 256,000 characters: three of them, of
    characters no compressor makes small, are more than Kafka takes.)"""
    import random

    from connectors.marketplace_polling import PollingMarketplaceSource
    from connectors.marketplace_table import marketplace_invoices, metadata
    from connectors.sql import engine_for
    from connectors.watermarks import FileWatermark

    engine = engine_for(f"sqlite:///{tmp_path / 'marketplace.db'}")
    metadata.create_all(engine)
    draw = random.Random(1)
    vendor_id, invoice_number, description = ("".join(chr(draw.randrange(0x4E00, 0xA000)) for _ in range(250_000))
                                              for _ in range(3))  # 750 kB each, 540 kB compressed
    with engine.begin() as conn:
        conn.execute(marketplace_invoices.insert(), [
            {"invoice_id": "MP-1", "po_number": "PO-5001", "vendor_id": vendor_id, "invoice_number": invoice_number,
             "lines": [{"line_no": 1, "description": description}], "updated_at": AT},
            {"invoice_id": "MP-2", "po_number": "PO-5001", "vendor_id": "V100", "invoice_number": None, "lines": [],
             "updated_at": AT}])
    worker = make_worker(tmp_path, source=PollingMarketplaceSource(engine, FileWatermark(tmp_path / "mark.json")))
    worker.run()
    (letter,) = worker.dead_letters()
    assert letter["source.invoice_id"] == "MP-1" and letter["stage"] == "emit"
    assert "would be" in letter["error"] and int(letter["value.length"]) > 2_000_000
    assert worker.statuses() == {"MP-2": "bad_invoice"}  # the row after it: judged (it has no lines)


def test_a_number_where_the_invoice_has_text_is_refused_as_validate_refuses_it(worker):
    """The invoices topic carried a Decimal in the document as text: `"description": 2.5` went to
    the bot as "2.5" where `validate` (and the rules, on the document as sent) refuse the number.
    Numbers where numbers belong (here all of them) are taken as before."""
    import copy
    from decimal import Decimal

    from rules import EvaluationContext, evaluate

    document = ready_invoice("MP-1")
    for line in document["lines"]:
        line.update(quantity=Decimal(line["quantity"]), unit_price=Decimal(line["unit_price"]),
                    amount=Decimal(line["amount"]))
    numbers_only = ready_invoice("MP-2", lines=copy.deepcopy(document["lines"]))
    document["lines"][1]["description"] = Decimal("2.5")
    worker.submit(document)
    worker.submit(numbers_only)
    worker.run()
    assert worker.statuses() == {"MP-1": "bad_invoice", "MP-2": "sent_to_rpa"}
    (finding,) = next(row for row in worker.scheduler.rows() if row["invoice_id"] == "MP-1")["reasons"]
    as_sent = evaluate(document, purchase_order(), EvaluationContext(now=AT, today=AT.date()))
    assert [(f.code, f.field) for f in as_sent.reasons] == [("INVALID_INVOICE", "lines[2].description")]
    assert (finding["code"], finding["field"]) == ("INVALID_INVOICE", "lines[2].description")


def test_a_marketplace_row_holding_bytes_that_are_no_text_is_dead_lettered_and_the_poll_goes_on(tmp_path):
    """SQLite keeps a BLOB in a TEXT column: the event could not be written, the poll failed at the
    emit, and the same page was polled again for ever, every vendor behind it waiting."""
    from sqlalchemy import text

    from connectors.marketplace_polling import PollingMarketplaceSource
    from connectors.marketplace_table import marketplace_invoices, metadata
    from connectors.sql import engine_for
    from connectors.watermarks import FileWatermark

    engine = engine_for(f"sqlite:///{tmp_path / 'marketplace.db'}")
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(marketplace_invoices.insert(), [
            {"invoice_id": "MP-1", "po_number": "PO-5001", "vendor_id": "V1", "lines": [], "updated_at": AT},
            {"invoice_id": "MP-2", "po_number": "PO-5001", "vendor_id": "V100", "lines": [], "updated_at": AT}])
        conn.execute(text("UPDATE marketplace_invoices SET vendor_id = X'FFFE56' WHERE invoice_id = 'MP-1'"))
        conn.execute(text("UPDATE marketplace_invoices SET vendor_id = X'5631' WHERE invoice_id = 'MP-2'"))
    worker = make_worker(tmp_path, source=PollingMarketplaceSource(engine, FileWatermark(tmp_path / "mark.json")))
    worker.run()
    (letter,) = worker.dead_letters()
    assert letter["source.invoice_id"] == "MP-1" and letter["stage"] == "read"
    assert "vendor_id holds bytes that are no UTF-8 text" in letter["error"]
    # The row after it: judged (it has no lines); X'5631' is the text V1.
    (row,) = worker.scheduler.rows()
    assert (row["invoice_id"], row["status"], row["vendor_id"]) == ("MP-2", "bad_invoice", "V1")


def test_a_state_write_that_fails_after_its_batch_committed_is_caught_up_and_the_batch_not_read_again(worker):
    """RocksDB out of disk after the commit: the batch was read again, and its state applied twice
    where it had been applied; now the store partition catches up from its changelog."""
    number = worker.broker.partition_of(b"PO-5001")
    worker.submit(ready_invoice("MP-1"))
    worker.run()
    partition = worker.pipeline.ledgers.store.partition(number)
    # The write after the commit fails, and so does the first catching up: the worker goes on, and waits.
    write, failures = partition.write, [OSError(28, "No space left on device")] * 2

    def failing_once(changes, position):
        if failures:
            raise failures.pop()
        return write(changes, position)

    partition.write = failing_once
    worker.submit(ready_invoice("MP-2"))
    worker.run()
    assert failures == [] and worker.statuses() == {"MP-1": "sent_to_rpa", "MP-2": "waiting_for_po"}
    assert "state store" not in worker.pipeline.health.outages()  # back once caught up
    told = [r for r in worker.broker.records(worker.pipeline.topics.verdicts) if b"MP-2" in r.value]
    assert len(told) == 1  # its parking, told once
    worker.complete("MP-1")
    worker.run()
    assert worker.statuses() == {"MP-1": "entered", "MP-2": "sent_to_rpa"}  # its ledger knew MP-2 waited


def test_an_invoice_approved_after_sampro_changed_its_po_is_judged_again_not_sent_as_it_was(tmp_path):
    """DISPATCH_MODE=approval: a ready invoice waits for a clerk, for days perhaps; Sampro's changes
    re-judge held invoices only, and the approval sent the old payload to the bot at a price the
    buyer had cut since."""
    from datetime import timedelta

    from rules.lifecycle import DispatchApproved

    worker = make_worker(tmp_path, dispatch_mode="approval")
    worker.submit(ready_invoice("MP-1"))
    worker.submit(ready_invoice("MP-2", invoice_number="INV-2"))
    worker.run()
    assert worker.statuses() == {"MP-1": "ready_to_process", "MP-2": "waiting_for_po"}
    cut = [{**line, "unit_price": "15.00"} if line["line_no"] == 1 else line for line in po()["lines"]]
    worker.sampro.purchase_orders["PO-5001"] = purchase_order(lines=cut)
    worker.pipeline.sampro_changes.waiting.append(PurchaseOrderChanged(event_id="sampro:PO-5001:1",
                                                                       po_number="PO-5001", changed_at=AT))
    worker.run()
    assert worker.statuses() == {"MP-1": "ready_to_process", "MP-2": "waiting_for_po"}

    approvals = iter(range(1, 10))

    def approve(invoice_id: str) -> None:  # each a clerk's approval of its own, as the API's ids are
        worker.put(worker.pipeline.topics.commands, "PO-5001", worker.codec.encode(DispatchApproved(
            command_id=f"dispatch:{next(approvals)}", invoice_id=invoice_id, invoice_version=1, po_number="PO-5001",
            user="ana", issued_at=AT + timedelta(days=2))))
        worker.run()

    approve("MP-1")
    assert worker.mailer.sent == []
    # Held anew, and the PO went on to MP-2, judged against the PO as it is now.
    assert worker.statuses() == {"MP-1": "manual_review", "MP-2": "manual_review"}
    (held,) = [h for h in worker.scheduler.history("MP-1") if "Judged again at its turn" in (h["reason"] or "")]
    assert "PRICE_MISMATCH:1:unit_price, which no clerk has released" in held["reason"]
    worker.sampro.purchase_orders["PO-5001"] = purchase_order()  # the buyer's cut undone: MP-1 clears
    worker.pipeline.sampro_changes.waiting.append(PurchaseOrderChanged(event_id="sampro:PO-5001:2",
                                                                       po_number="PO-5001", changed_at=AT))
    worker.run()
    approve([key for key, status in worker.statuses().items() if status == "ready_to_process"][0])
    assert len(worker.mailer.sent) == 1 and worker.mailer.sent[0].payload.lines[0].unit_price == Decimal("15.50")


def test_a_batch_that_fails_outside_any_flow_is_read_again_whole_and_readiness_names_a_failure_that_stays(
        tmp_path, monkeypatch):
    """Rewound only as far as it had got, the partitions it had not reached were committed past by
    the next batch: an invoice lost without a verdict or a dead letter; and failing at every try,
    the worker said it was ready."""
    worker = make_worker(tmp_path)
    first, other = (next(f"PO-{n}" for n in range(9000, 9999) if worker.broker.partition_of(f"PO-{n}".encode()) == p)
                    for p in (0, 1))
    for po_number in (first, other):
        worker.sampro.purchase_orders[po_number] = purchase_order(po_number=po_number)
    worker.run()
    worker.submit(ready_invoice("MP-1", po_number=first))
    worker.submit(ready_invoice("MP-2", po_number=other))
    sent_home, failing = Runtime._sent_home, [3]

    def fails(self, flow, record, tick):
        if failing[0]:
            failing[0] -= 1
            raise RuntimeError("a bug while routing")
        return sent_home(self, flow, record, tick)

    monkeypatch.setattr(Runtime, "_sent_home", fails)
    runtime = worker.pipeline.runtime
    for _ in range(3):
        runtime.step_or_back_off(lambda: False)
    assert "runtime" in runtime.health.outages() and not runtime.health.readiness()[0]
    runtime.step_or_back_off(lambda: False)
    assert "runtime" not in runtime.health.outages()
    worker.run()
    assert worker.statuses() == {"MP-1": "sent_to_rpa", "MP-2": "sent_to_rpa"}


def test_a_released_hold_whose_finding_reads_otherwise_at_its_turn_holds_the_invoice_anew(worker):
    """A clerk released a price 0.10 over the PO's; the buyer cut the PO's price to 9.00 before the
    invoice's turn at the bot came. Judged again, the finding had the same name, and 6.60 over went
    to the bot as released."""
    worker.submit(ready_invoice("MP-1"))
    worker.submit({**PRICE_OFF, "invoice_id": "MP-2", "invoice_number": "INV-2"})
    worker.run()
    worker.complete("MP-1", ok=False)
    worker.submit(ready_invoice("MP-3", invoice_number="INV-3"))
    worker.run()
    assert worker.statuses() == {"MP-1": "rpa_failed", "MP-2": "manual_review", "MP-3": "sent_to_rpa"}
    _release(worker, "MP-2", "the vendor's increase agreed", holds=("PRICE_MISMATCH:1:unit_price",))
    cut = [{**line, "unit_price": "9.00"} if line["line_no"] == 1 else line for line in po()["lines"]]
    worker.sampro.purchase_orders["PO-5001"] = purchase_order(lines=cut)
    worker.complete("MP-3")
    worker.run()
    assert worker.statuses()["MP-2"] == "manual_review"
    assert [request.invoice_id for request in worker.mailer.sent] == ["MP-1", "MP-3"]
    assert worker.scheduler.history("MP-2")[-1]["reason"] == (
        "Judged again at its turn at the RPA bot: held by PRICE_MISMATCH:1:unit_price (released at expected 15.50, "
        "actual 15.60; now expected 9.00, actual 15.60), which no clerk has released as it reads now.")


def test_no_version_of_an_invoice_is_emailed_once_another_version_of_it_is_entered(worker):
    """The bot failed version 1, the vendor's version 2 went in its place and took its number; the
    bot's late word that version 1 was entered after all is taken. Version 2 then failed at the bot,
    and AP's routine release of the failure emailed it again: the invoice entered twice."""
    def report(version: int, ok: bool, event_id: str) -> None:
        worker.put(worker.pipeline.topics.completions, "PO-5001", worker.codec.encode(RpaCompletion(
            event_id=event_id, invoice_id="MP-1", invoice_version=version, po_number="PO-5001",
            outcome=CompletionOutcome.SUCCESS if ok else CompletionOutcome.FAILURE,
            sampro_invoice_id="S-1" if ok else None, error=None if ok else "screen timed out", occurred_at=AT)))
        worker.run()

    worker.submit(ready_invoice("MP-1"))
    worker.run()
    worker.submit(ready_invoice("MP-1"), version=2)
    worker.run()
    report(1, False, "v1-failed")
    report(1, True, "v1-entered-after-all")
    report(2, False, "v2-failed")
    assert [(row["invoice_version"], row["status"]) for row in worker.scheduler.rows()] == [
        (1, "entered"), (2, "rpa_failed")]
    worker.put(worker.pipeline.topics.commands, "PO-5001", worker.codec.encode(ReleaseRequested(
        command_id="r-v2", invoice_id="MP-1", invoice_version=2, po_number="PO-5001", user="ana", reason="retry",
        issued_at=AT, holds=[RPA_FAILURE])))
    worker.run()
    assert [(request.invoice_version, request.attempt) for request in worker.mailer.sent] == [(1, 1), (2, 1)]
    (refused,) = [h for h in worker.scheduler.history("MP-1") if "is entered in Sampro" in (h["reason"] or "")]
    assert (refused["invoice_version"], refused["status"]) == (2, "rpa_failed")
    assert refused["reason"].startswith("Not handed to the RPA bot: version 1 of this invoice is entered in Sampro")


def test_a_release_of_a_hold_judged_again_since_the_clerk_looked_is_not_applied(worker):
    """The API refuses it as processscheduler shows the hold; a Sampro change the worker judged a
    moment before processscheduler showed it was released under the same name: 6.60 over, where
    the clerk had agreed to 0.10."""
    worker.submit({**PRICE_OFF, "invoice_id": "MP-1"})
    worker.run()
    (seen,) = [reason["message"] for row in worker.scheduler.rows() for reason in row["reasons"]]
    cut = [{**line, "unit_price": "9.00"} if line["line_no"] == 1 else line for line in po()["lines"]]
    worker.sampro.purchase_orders["PO-5001"] = purchase_order(lines=cut)
    worker.pipeline.sampro_changes.waiting.append(PurchaseOrderChanged(event_id="sampro:PO-5001:1",
                                                                       po_number="PO-5001", changed_at=AT))
    worker.run()
    hold = "PRICE_MISMATCH:1:unit_price"

    def release(command_id: str, message: str) -> None:
        worker.put(worker.pipeline.topics.commands, "PO-5001", worker.codec.encode(ReleaseRequested(
            command_id=command_id, invoice_id="MP-1", invoice_version=1, po_number="PO-5001", user="ana",
            reason="agreed", issued_at=AT, holds=[hold], seen={hold: message})))
        worker.run()

    release("r-stale", seen)
    assert worker.statuses() == {"MP-1": "manual_review"} and worker.mailer.sent == []
    (now,) = [reason["message"] for row in worker.scheduler.rows() for reason in row["reasons"]]
    assert now != seen and worker.scheduler.history("MP-1")[-1]["reason"] == (
        f"Not released: agreed; judged again since ana looked, it reads {hold}: {now}")
    release("r-looked-again", now)
    assert worker.statuses() == {"MP-1": "sent_to_rpa"}


def test_a_hand_off_waiting_for_the_mailbox_is_not_sent_once_the_vendor_withdraws_the_invoice(tmp_path):
    """The vendor withdrew the invoice while its hand-off waited for the mailbox: it was emailed when
    the mailbox came back, and the bot entered an invoice the vendor no longer asked to be paid."""
    from connectors.rpa_mail import InMemoryRpaMailer

    mailer = DownMailer(InMemoryRpaMailer(), down=10**6)
    worker = make_worker(tmp_path, mailer=mailer)
    worker.submit(ready_invoice("MP-1"))
    worker.run()
    assert worker.statuses() == {"MP-1": "sent_to_rpa"}
    worker.put(worker.pipeline.topics.invoices, "PO-5001", worker.codec.encode(
        InvoiceWithdrawn(invoice_id="MP-1", version=1, po_number="PO-5001", withdrawn_at=AT)))
    worker.run()
    mailer.down = 0
    worker.run()
    assert mailer.inner.sent == [] and worker.statuses() == {"MP-1": "withdrawn"}
    withdrawn = worker.scheduler.history("MP-1")[-1]
    assert "the vendor withdrew this invoice before its email went" in withdrawn["reason"]


def test_a_hand_off_waiting_for_the_mailbox_is_not_sent_once_the_vendor_withdraws_a_newer_version_elsewhere(
        tmp_path):
    """The vendor moved the invoice to PO-5002, then deleted it: the delete reached PO-5002 alone, and
    version 1's hand-off, waiting on PO-5001 for the mailbox, was emailed and entered."""
    from connectors.rpa_mail import InMemoryRpaMailer

    mailer = DownMailer(InMemoryRpaMailer(), down=10**6)
    sampro = InMemoryPurchaseOrderReader([purchase_order(), purchase_order(po_number="PO-5002")])
    worker = make_worker(tmp_path, mailer=mailer, purchase_orders=sampro)
    worker.submit(ready_invoice("MP-1"))
    worker.run()
    worker.submit(ready_invoice("MP-1", po_number="PO-5002", total_amount="1.00"), version=2)  # held there
    worker.run()
    worker.put(worker.pipeline.topics.invoices, "PO-5002", worker.codec.encode(
        InvoiceWithdrawn(invoice_id="MP-1", version=2, po_number="PO-5002", withdrawn_at=AT)))
    worker.run()
    mailer.down = 0
    worker.run()
    assert mailer.inner.sent == []
    # The delete is told to PO-5001 too: version 1, never entered, is withdrawn there.
    assert {row["invoice_version"]: row["status"] for row in worker.scheduler.rows()} == {
        1: "withdrawn", 2: "withdrawn"}


def _moved_to_po_5002_and_deleted(worker, one_batch: bool) -> None:
    """The vendor's version 2 of MP-1 names PO-5002, then the vendor deletes the invoice there: read
    in one batch (a backlog, a quick edit then delete), or one after the other."""
    worker.submit(ready_invoice("MP-1", po_number="PO-5002", invoice_number="INV-MP-1-B"), version=2)
    if not one_batch:
        worker.run()
    worker.put(worker.pipeline.topics.invoices, "PO-5002", worker.codec.encode(
        InvoiceWithdrawn(invoice_id="MP-1", version=2, po_number="PO-5002", withdrawn_at=AT)))
    worker.run()


@pytest.mark.parametrize("one_batch", [False, True])
def test_the_vendor_withdrawing_a_newer_version_elsewhere_reaches_the_older_one_at_the_bot(tmp_path, one_batch):
    """Version 1 at the bot on PO-5001, the vendor moved the invoice to PO-5002 and deleted it there:
    the delete reached PO-5002 alone, the bot entered version 1 and its history said nothing of the
    withdrawal (no credit note asked for, the vendor paid for an invoice it had taken back). In one
    batch with the edit (a backlog, a quick edit then delete), PO-5001 heard only of the edit."""
    sampro = InMemoryPurchaseOrderReader([purchase_order(), purchase_order(po_number="PO-5002")])
    worker = make_worker(tmp_path, purchase_orders=sampro)
    worker.submit(ready_invoice("MP-1"))
    worker.run()
    _moved_to_po_5002_and_deleted(worker, one_batch)
    worker.complete("MP-1", version=1)
    worker.run()
    rows = {row["invoice_version"]: (row["po_number"], row["status"]) for row in worker.scheduler.rows()}
    assert rows == {1: ("PO-5001", "entered"), 2: ("PO-5002", "withdrawn")}
    reasons = [h["reason"] for h in worker.scheduler.history("MP-1") if h["invoice_version"] == 1]
    assert "The vendor withdrew this invoice while the RPA bot has it." in " ".join(map(str, reasons))
    assert reasons[-1] == "Entered although the vendor had withdrawn it: ask the vendor for a credit note."
    assert worker.dead_letters() == []


@pytest.mark.parametrize("one_batch", [False, True])
def test_the_vendor_withdrawing_a_newer_version_elsewhere_asks_for_a_credit_note_of_the_older_one_entered(
        tmp_path, one_batch):
    """Version 1 entered on PO-5001, then the vendor moved the invoice to PO-5002 and deleted it: the
    delete reached PO-5002 alone, and nothing told AP to ask for a credit note of the entry."""
    worker = _mp_1_entered_on_po_5001(tmp_path)
    _moved_to_po_5002_and_deleted(worker, one_batch)
    notes = [h["reason"] for h in worker.scheduler.history("MP-1") if h["invoice_version"] == 1]
    assert notes[-1] == ("The vendor withdrew this invoice after it was entered in Sampro: ask the vendor for a "
                         "credit note.")


def _one_line(invoice_id: str, quantity: str) -> dict[str, Any]:
    """An invoice of `quantity` of PO line 1 (AC-100, 5 ordered, 15.50), tax at the PO's 8%."""
    amount = Decimal(quantity) * Decimal("15.50")
    tax = (amount * Decimal("0.08")).quantize(Decimal("0.01"))
    return ready_invoice(invoice_id, lines=[{"line_no": 1, "part_number": "AC-100", "quantity": quantity,
                                             "unit_price": "15.50", "amount": str(amount)}],
                         tax_amount=str(tax), extra_charges=[], total_amount=str(amount + tax))


def _set_line_one(worker, price: str, invoiced: str = "0") -> None:
    lines = [dict(line) for line in po()["lines"]]
    lines[0].update(unit_price=price, quantity_invoiced=invoiced)
    worker.sampro.purchase_orders["PO-5001"] = purchase_order(lines=lines)


def _reasons(worker, invoice_id: str) -> list[str]:
    row = next(row for row in worker.scheduler.rows() if row["invoice_id"] == invoice_id)
    return [reason["message"] for reason in row["reasons"]]


def _held_with_mp_p_at_the_bot(worker) -> None:
    """MP-H (3 of PO line 1's 5) held for price; MP-X (2) and MP-P (1) behind it; the buyer fixes the
    price once the bot has entered MP-X: MP-H is judged again with MP-P's 1 at the bot in flight."""
    _set_line_one(worker, "15.00")  # the buyer keyed the price wrong
    worker.submit(_one_line("MP-H", "3"))
    worker.run()
    _set_line_one(worker, "15.50")
    worker.submit(_one_line("MP-X", "2"))
    worker.submit(_one_line("MP-P", "1"))
    worker.run()
    _set_line_one(worker, "15.50", invoiced="2")  # the price fixed; the bot has entered MP-X already
    worker.put(worker.pipeline.topics.sampro_changes, "PO-5001", worker.codec.encode(
        PurchaseOrderChanged(event_id="sampro:PO-5001:1", po_number="PO-5001", changed_at=AT)))
    worker.run()
    worker.complete("MP-X")
    worker.run()


def test_a_held_invoice_judged_with_another_at_the_bot_is_judged_again_when_the_bot_fails_that_one(worker):
    """MP-H (3 of the 5 ordered) was judged again at MP-X's entry with MP-P's 1 at the bot counted in
    flight: "only 2 still open". The bot failed MP-P, nothing reached Sampro, 3 were open, and nothing
    judged MP-H again: it stayed in manual review for a quantity that was never invoiced."""
    _held_with_mp_p_at_the_bot(worker)
    assert worker.statuses() == {"MP-H": "manual_review", "MP-P": "sent_to_rpa", "MP-X": "entered"}
    assert _reasons(worker, "MP-H") == ["PO line 1 (part AC-100): 3 invoiced but only 2 still open on PO PO-5001."]
    worker.complete("MP-P", ok=False)
    worker.run()
    assert worker.statuses() == {"MP-H": "sent_to_rpa", "MP-P": "rpa_failed", "MP-X": "entered"}
    (again,) = [event for event in worker.scheduler.history("MP-H") if event["status"] == "ready_to_process"]
    assert again["event_id"].startswith("verdict:MP-H:v1:ready_to_process:") and ":after:" in again["event_id"]


def test_a_held_invoice_judged_again_when_the_invoice_at_the_bot_fails_is_checked_for_duplicates(worker):
    """Judged again when the bot failed MP-P, MP-H was compared with no invoice seen before: AP had
    keyed it into Sampro by hand meanwhile, and it went to the bot, to be paid twice."""
    _held_with_mp_p_at_the_bot(worker)
    held = _one_line("MP-H", "3")
    worker.sampro.entered.append(KnownInvoice("S-900", held["vendor_id"], held["invoice_number"], "entered",
                                              Decimal(held["total_amount"])))
    worker.complete("MP-P", ok=False)
    worker.run()
    assert worker.statuses()["MP-H"] == "bad_invoice"
    assert [request.invoice_id for request in worker.mailer.sent] == ["MP-X", "MP-P"]


def test_a_held_invoice_judged_with_a_ready_one_in_flight_is_judged_again_when_that_one_is_withdrawn(tmp_path):
    """Approval: MP-A (4) awaited the clerk's approval when the buyer fixed the price, and MP-H (3)
    was judged with MP-A's 4 in flight: "only 1 still open". The vendor withdrew MP-A, and MP-H stayed
    in manual review with all 5 open."""
    worker = make_worker(tmp_path, dispatch_mode="approval")
    _set_line_one(worker, "15.00")
    worker.submit(_one_line("MP-H", "3"))
    worker.run()
    _set_line_one(worker, "15.50")
    worker.submit(_one_line("MP-A", "4"))
    worker.run()
    worker.put(worker.pipeline.topics.sampro_changes, "PO-5001", worker.codec.encode(
        PurchaseOrderChanged(event_id="sampro:PO-5001:1", po_number="PO-5001", changed_at=AT)))
    worker.run()
    assert _reasons(worker, "MP-H") == ["PO line 1 (part AC-100): 3 invoiced but only 1 still open on PO PO-5001."]
    worker.put(worker.pipeline.topics.invoices, "PO-5001", worker.codec.encode(
        InvoiceWithdrawn(invoice_id="MP-A", version=1, po_number="PO-5001", withdrawn_at=AT)))
    worker.run()
    assert worker.statuses() == {"MP-A": "withdrawn", "MP-H": "ready_to_process"}
    assert _reasons(worker, "MP-H") == []


def test_an_invoice_parked_behind_a_completion_whose_record_is_too_large_to_keep_is_bad_invoice_and_the_po_goes_on(
        worker, monkeypatch, caplog):
    """The buyer added 300 lines to the PO while MP-1 was at the bot: judged when MP-1's entry freed
    the PO, MP-2's record (it holds the PO as judged) was more than Kafka takes, the completion was
    dead-lettered, MP-1 stayed at the bot in the ledger for good, and every later invoice of the PO
    waited behind it."""
    import streams.record_size

    worker.submit(ready_invoice("MP-1"))
    worker.submit(ready_invoice("MP-2"))
    worker.run()
    lines = [dict(line) for line in po()["lines"]]
    lines += [{**lines[-1], "line_no": number, "part_number": f"XT-{number}"} for number in range(3, 303)]
    worker.sampro.purchase_orders["PO-5001"] = purchase_order(lines=lines)
    monkeypatch.setattr(streams.record_size, "KAFKA_TAKES", 20_000)
    monkeypatch.setattr(streams.record_size, "MAX_RECORD_BYTES", 20_000)
    worker.complete("MP-1")
    worker.run()
    assert worker.statuses() == {"MP-1": "entered", "MP-2": "bad_invoice"}
    assert worker.dead_letters() == []
    (reason,) = _reasons(worker, "MP-2")
    assert "ledger cannot keep this invoice's record" in reason and "went on" in reason
    assert "the rules failed on MP-2@v1 (made bad_invoice): DataError" in caplog.text
    monkeypatch.undo()
    worker.submit(ready_invoice("MP-3"))
    worker.run()
    assert worker.statuses()["MP-3"] == "sent_to_rpa"  # the PO is free


def test_a_message_that_grows_another_invoices_record_past_what_kafka_takes_is_dead_lettered_not_put_off_for_good(
        worker, monkeypatch):
    """A withdrawal that notes the invoice at the bot judges nothing: put off to judge that invoice
    again, it failed the same way at every try, the partition waited for good behind it, readiness
    green."""
    import streams.record_size

    worker.submit(ready_invoice("MP-1"))
    worker.run()
    store = worker.pipeline.ledgers.store.partitions[worker.broker.partition_of(b"PO-5001")]
    size = len(store.get(record_state_key("PO-5001", "MP-1@v1")))
    monkeypatch.setattr(streams.record_size, "KAFKA_TAKES", size + 50)
    monkeypatch.setattr(streams.record_size, "MAX_RECORD_BYTES", size + 50)
    worker.put(worker.pipeline.topics.invoices, "PO-5001", worker.codec.encode(
        InvoiceWithdrawn(invoice_id="MP-1", version=1, po_number="PO-5001", withdrawn_at=AT)))
    worker.submit(ready_invoice("MP-2"))
    worker.run(steps=30, seconds_between=10)
    assert [dead["stage"] for dead in worker.dead_letters()] == ["decide"]
    assert worker.statuses() == {"MP-1": "sent_to_rpa", "MP-2": "waiting_for_po"}


def test_a_batch_that_took_as_long_as_it_may_goes_on_in_the_next_step_not_one_by_one_in_this_one():
    """The RPA mailer stops beginning emails a minute into a batch (NextBatch): taken for a PutOff
    about one message, the runtime sent the rest one by one in the same step, and 500 emails at
    0.6 s still outlived Kafka's poll interval."""
    from rules.errors import NextBatch

    broker = InMemoryBroker(partitions=1)
    runtime = Runtime(broker, dlq_topic="dlq", encode=lambda message: message)
    handled: list[list[bytes]] = []

    def send_two(batch) -> None:
        handled.append([value for _, value in batch.items])
        if len(batch.items) > 2:
            raise NextBatch("smtp", "2 of 5 emails sent in 60 s; the others go next")

    runtime.add_flow(Flow("mail", ("requests",), decode=lambda record: record.value, handle=send_two))
    runtime.start()
    for value in (b"a", b"b", b"c", b"d", b"e"):
        broker.append("requests", b"k", value)
    runtime.step()
    assert handled == [[b"a", b"b", b"c", b"d", b"e"]] and broker.committed.get(("requests", 0)) is None
    assert runtime.health.outages() == {}


class _Unrecorded(InMemoryProcessScheduler):
    """processscheduler away for the sink: what the PO agent decides waits for it."""

    def record(self, decisions):
        raise Unavailable("processscheduler", "connection refused")


def test_a_rebalance_that_takes_a_po_partition_away_lets_its_unrecorded_verdicts_go(tmp_path):
    worker = make_worker(tmp_path, scheduler=_Unrecorded())
    worker.submit(ready_invoice("MP-1"))
    worker.run(steps=5)
    assert len(worker.pipeline.desk.recent) == 1
    home = worker.broker.partition_of(b"PO-5001")
    worker.broker.rebalance(kept={home})
    assert len(worker.pipeline.desk.recent) == 1  # its partition stayed
    worker.broker.rebalance(kept=set(range(3)) - {home})
    assert len(worker.pipeline.desk.recent) == 0



class _SinkBehind(InMemoryProcessScheduler):
    """processscheduler the sink cannot write to while `behind` (a burst, a lock wait): what the PO
    agent decides meanwhile waits for it."""

    behind = False

    def record(self, decisions):
        if self.behind:
            raise Unavailable("processscheduler", "lock wait timeout")
        super().record(decisions)


def _two_pos_with_the_sink(tmp_path) -> Any:
    sampro = InMemoryPurchaseOrderReader([purchase_order(), purchase_order(po_number="PO-5002")])
    return make_worker(tmp_path, purchase_orders=sampro, scheduler=_SinkBehind())


def test_a_delete_of_a_newer_version_reaches_an_older_one_at_the_bot_that_processscheduler_does_not_show_yet(
        tmp_path):
    """Version 1 went to the bot on PO-5001, then the vendor moved the invoice to PO-5002 and deleted
    it, all before the sink had recorded version 1: PO-5002's agent looked for older versions in
    processscheduler alone, found none, and told PO-5001 nothing. The bot entered version 1 with
    no word of the withdrawal: no credit note asked for."""
    worker = _two_pos_with_the_sink(tmp_path)
    worker.scheduler.behind = True
    worker.submit(ready_invoice("MP-1"))
    worker.run(steps=2)
    worker.submit(ready_invoice("MP-1", po_number="PO-5002", invoice_number="INV-MP-1-B"), version=2)
    worker.run(steps=2)
    worker.put(worker.pipeline.topics.invoices, "PO-5002", worker.codec.encode(
        InvoiceWithdrawn(invoice_id="MP-1", version=2, po_number="PO-5002", withdrawn_at=AT)))
    worker.run(steps=2)
    assert worker.scheduler.rows() == []
    worker.scheduler.behind = False
    worker.run()
    worker.complete("MP-1", version=1)
    worker.run()
    rows = {row["invoice_version"]: (row["po_number"], row["status"]) for row in worker.scheduler.rows()}
    assert rows == {1: ("PO-5001", "entered"), 2: ("PO-5002", "withdrawn")}
    reasons = [h["reason"] for h in worker.scheduler.history("MP-1") if h["invoice_version"] == 1]
    assert reasons[-1] == "Entered although the vendor had withdrawn it: ask the vendor for a credit note."
    assert worker.dead_letters() == []


def test_a_newer_version_on_another_po_supersedes_an_older_one_waiting_that_processscheduler_does_not_show_yet(
        tmp_path):
    """Version 1 waited on PO-5002 behind MP-2 at the bot, and the vendor's version 2 named PO-5001
    (held there for its price) before the sink had recorded version 1: PO-5002 was never told, and
    version 1 went to the bot and was entered when MP-2's entry freed the PO, while version 2 sat
    in manual review."""
    worker = _two_pos_with_the_sink(tmp_path)
    worker.submit(ready_invoice("MP-2", po_number="PO-5002"))
    worker.run()
    worker.scheduler.behind = True
    worker.submit(ready_invoice("MP-1", po_number="PO-5002"))
    worker.run(steps=2)
    worker.submit({**PRICE_OFF, "invoice_id": "MP-1", "invoice_number": "INV-MP-1"}, version=2)
    worker.run(steps=2)
    assert worker.statuses() == {"MP-2": "sent_to_rpa"}
    worker.scheduler.behind = False
    worker.run()
    worker.complete("MP-2", po_number="PO-5002")
    worker.run()
    rows = {(row["invoice_id"], row["invoice_version"]): row["status"] for row in worker.scheduler.rows()}
    assert rows == {("MP-1", 1): "superseded", ("MP-1", 2): "manual_review", ("MP-2", 1): "entered"}
    assert [request.invoice_id for request in worker.mailer.sent] == ["MP-2"]
    assert worker.dead_letters() == []


def test_an_older_version_waiting_for_its_email_is_not_sent_once_the_vendor_withdraws_a_newer_one_at_the_bot(tmp_path):
    """Version 1's hand-off on PO-5001 waited for the mail flow while the vendor moved the invoice to
    PO-5002 and deleted it there: the mail flow failed version 2's hand-off as withdrawn (its note
    said so) and emailed version 1 in the same batch, an invoice the vendor no longer asked to be
    paid. It looked only for a newest version processscheduler showed withdrawn."""
    worker = _two_pos_with_the_sink(tmp_path)
    worker.submit(ready_invoice("MP-1"))
    worker.run(steps=1)
    assert worker.mailer.sent == []
    worker.submit(ready_invoice("MP-1", po_number="PO-5002", invoice_number="INV-MP-1-B"), version=2)
    worker.put(worker.pipeline.topics.invoices, "PO-5002", worker.codec.encode(
        InvoiceWithdrawn(invoice_id="MP-1", version=2, po_number="PO-5002", withdrawn_at=AT)))
    worker.run()
    assert worker.mailer.sent == []
    assert {row["invoice_version"]: row["status"] for row in worker.scheduler.rows()} == {1: "withdrawn",
                                                                                        2: "withdrawn"}
    assert worker.dead_letters() == []
