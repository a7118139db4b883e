"""`explain` tells an invoice's story from every topic, in the order it happened."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from audit.explain import describe, story
from connectors.topic_reader import InMemoryTopicReader
from rules.errors import Unavailable
from rules.judge import RulesJudge
from rules.lifecycle import (
    InvoiceReplaced,
    InvoiceStatus,
    InvoiceSubmitted,
    InvoiceWithdrawn,
    PurchaseOrderChanged,
    ReleaseRequested,
    RpaRequest,
    StatusChanged,
)
from rules.models import CompletionOutcome, PurchaseOrder, RpaCompletion, Verdict
from rules.po_ledger import PurchaseOrderLedger, recheck_held, submit_invoice, verdict_event_id
from rules.policy import Policy, Tolerance
from schemas.codec import SingleObjectCodec
from tests.unit.rules.builders import INVOICE, PO, PRICE_OFF, judge

AT = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def test_every_step_of_a_released_invoice_from_every_topic_in_order():
    codec, reader = SingleObjectCodec(), InMemoryTopicReader()
    verdict = judge(PRICE_OFF)
    released = judge(INVOICE).rpa_payload

    def put(topic: str, seconds: int, message) -> None:
        reader.append(topic, 0, int((AT + timedelta(seconds=seconds)).timestamp() * 1000), b"PO-5001",
                      codec.encode(message))

    def status(status: InvoiceStatus, seconds: int, **extra) -> StatusChanged:
        return StatusChanged(event_id=f"e{seconds}-{status.value}", invoice_id="MP-1001", invoice_version=1,
                             po_number="PO-5001", status=status, occurred_at=AT + timedelta(seconds=seconds), **extra)

    put("invoices", 0, InvoiceSubmitted(invoice_id="MP-1001", version=1, po_number="PO-5001",
                                        document=PRICE_OFF, received_at=AT))
    put("verdicts", 1, status(InvoiceStatus.WAITING_FOR_PO, 1))
    put("verdicts", 5, verdict)
    put("commands", 9, ReleaseRequested(command_id="c1", invoice_id="MP-1001", invoice_version=1, po_number="PO-5001",
                                        user="ana", reason="price agreed by phone", issued_at=AT))
    put("verdicts", 10, status(InvoiceStatus.RELEASED, 10, actor="ana", reason="price agreed by phone"))
    put("rpa.requests", 10, RpaRequest(invoice_id="MP-1001", invoice_version=1, po_number="PO-5001",
                                       payload=released, requested_at=AT))
    put("verdicts", 10, status(InvoiceStatus.SENT_TO_RPA, 10))
    put("rpa.completions", 20, RpaCompletion(event_id="done", invoice_id="MP-1001", invoice_version=1,
                                             po_number="PO-5001", outcome=CompletionOutcome.SUCCESS,
                                             sampro_invoice_id="S-9", occurred_at=AT))
    put("verdicts", 21, status(InvoiceStatus.ENTERED, 21, sampro_invoice_id="S-9"))
    put("verdicts", 22, status(InvoiceStatus.ENTERED, 22).model_copy(update={"invoice_id": "MP-1001-B"}))
    put("invoices", 30, InvoiceReplaced(invoice_id="MP-1001", version=2, po_number="PO-5001", replaced_on="PO-7",
                                        replaced_at=AT))

    told = story(reader, codec, ["invoices", "verdicts", "rpa.requests", "rpa.completions", "commands", "gone"],
                 "MP-1001")
    assert told.missing_topics == ["gone"] and told.unreadable == []
    steps = told.steps
    assert [(s.what, s.summary.split(" ")[0]) for s in steps] == [
        ("received", "version"), ("status", "waiting_for_po"), ("verdict", "manual_review"),
        ("release requested", "ana"), ("status", "released"), ("status", "sent_to_rpa"), ("rpa request", "hand-off"),
        ("completion", "RPA"), ("status", "entered"), ("replaced", "version")]
    verdict_step = steps[2]
    assert "PRICE_MISMATCH" in verdict_step.summary and verdict.rules_version in verdict_step.summary
    assert verdict_step.detail["po_snapshot"]["po_number"] == "PO-5001"
    assert "price agreed by phone" in steps[4].summary and "ana" in steps[4].summary
    assert steps[-1].summary == "version 2 names PO PO-7 and replaces the versions on PO PO-5001"


def test_a_release_names_the_holds_asked_for_and_released_and_a_copy_is_told_as_one():
    """Every release read "ana released it", one that released nothing too; a reprocess's copies
    of a status and a hand-off read as a second hand-off to the bot, which had one email."""
    codec, reader = SingleObjectCodec(), InMemoryTopicReader()
    released = judge(INVOICE).rpa_payload

    def put(topic: str, seconds: int, message) -> None:
        reader.append(topic, 0, int((AT + timedelta(seconds=seconds)).timestamp() * 1000), b"PO-5001",
                      codec.encode(message))

    hold = "PRICE_MISMATCH:1:unit_price"
    put("commands", 1, ReleaseRequested(command_id="c1", invoice_id="MP-1001", invoice_version=1, po_number="PO-5001",
                                        user="ana", reason="agreed", issued_at=AT, holds=[hold],
                                        reason_code="PRICE_AGREED"))
    sent = StatusChanged(event_id="e2", invoice_id="MP-1001", invoice_version=1, po_number="PO-5001",
                         status=InvoiceStatus.SENT_TO_RPA, occurred_at=AT, actor="ana", holds=[hold])
    request = RpaRequest(invoice_id="MP-1001", invoice_version=1, po_number="PO-5001", payload=released,
                         requested_at=AT)
    for seconds in (2, 3):  # the second: a copy
        put("verdicts", seconds, sent)
        put("rpa.requests", seconds, request)
    steps = story(reader, codec, ["commands", "verdicts", "rpa.requests"], "MP-1001").steps
    assert [s.summary for s in steps][:2] == ["ana asked to release PRICE_MISMATCH:1:unit_price (PRICE_AGREED): agreed",
                                              "sent_to_rpa by ana; holds released: PRICE_MISMATCH:1:unit_price"]
    assert [s.summary.split(":")[0] for s in steps[2:]] == [
        "hand-off 1 to the RPA bot", "again (a copy, applied once)", "again (a copy, applied once)"]


def test_an_upload_a_delete_or_a_replacement_delivered_again_is_told_as_a_copy():
    """The ingest's records delivered again (a crash before its offset was committed) read as the
    vendor uploading, deleting and moving the invoice twice. A delete told to the PO of an older
    version is no copy of the delete on the newest's PO, nor is an upload of other content."""
    codec, reader = SingleObjectCodec(), InMemoryTopicReader()

    def put(seconds: int, message) -> None:
        reader.append("invoices", 0, int((AT + timedelta(seconds=seconds)).timestamp() * 1000), b"PO-5001",
                      codec.encode(message))

    upload = InvoiceSubmitted(invoice_id="MP-1001", version=2, po_number="PO-5002", document=INVOICE,
                              received_at=AT)
    moved = InvoiceReplaced(invoice_id="MP-1001", version=2, po_number="PO-5001", replaced_on="PO-5002",
                            replaced_at=AT)
    deleted = InvoiceWithdrawn(invoice_id="MP-1001", version=2, po_number="PO-5002", withdrawn_at=AT)
    for seconds, message in enumerate([upload, upload, moved, moved, deleted, deleted,
                                       deleted.model_copy(update={"po_number": "PO-5001"}),
                                       upload.model_copy(update={"document": PRICE_OFF})]):
        put(seconds, message)
    steps = story(reader, codec, ["invoices"], "MP-1001").steps
    assert [(s.what, s.summary.startswith("again (a copy")) for s in steps] == [
        ("received", False), ("received", True), ("replaced", False), ("replaced", True),
        ("withdrawn", False), ("withdrawn", True), ("withdrawn", False), ("received", False)]


def test_a_record_naming_the_invoice_that_cannot_be_read_is_listed_and_the_story_goes_on():
    """A damaged verdict was left out without a word; a vendor's "lines": 5 stopped explain."""
    codec, reader = SingleObjectCodec(), InMemoryTopicReader()
    odd = {**INVOICE, "lines": 5}
    reader.append("invoices", 0, 1_795_000_000_000, b"PO-5001", codec.encode(InvoiceSubmitted(
        invoice_id="MP-1001", version=1, po_number="PO-5001", document=odd, received_at=AT)))
    damaged = codec.encode(judge(INVOICE))
    reader.append("verdicts", 1, 1_795_000_000_010, b"PO-5001", damaged[:len(damaged) // 2])
    reader.append("verdicts", 1, 2**62, b"PO-5001", codec.encode(judge(INVOICE)))  # a producer's odd timestamp
    told = story(reader, codec, ["invoices", "verdicts"], "MP-1001")
    assert [(s.what, s.offset) for s in told.steps] == [("received", 0), ("verdict", 1)]
    assert "lines not a list" in told.steps[0].summary and told.steps[1].at.year == 9999
    (unreadable,) = told.unreadable
    assert unreadable.startswith("verdicts[1]@0: DecodeError: Verdict body cannot be read")



def test_a_schema_registry_that_does_not_answer_is_an_outage_not_a_gap_in_the_story():
    class RegistryDown(SingleObjectCodec):
        def decode(self, data):
            raise Unavailable("schema-registry", "looking up schema id 7: connection refused")

    reader = InMemoryTopicReader()
    reader.append("verdicts", 0, 1_795_000_000_000, b"PO-5001", SingleObjectCodec().encode(judge(INVOICE)))
    with pytest.raises(Unavailable, match="schema-registry"):
        story(reader, RegistryDown(), ["verdicts"], "MP-1001")


def test_a_time_range_reads_only_its_records_and_progress_counts_them_to_the_total(monkeypatch):
    """Without --since, explain read five topics from the start of ten years' retention, with no count."""
    monkeypatch.setattr("audit.explain.PROGRESS_EVERY", 2)
    codec, reader = SingleObjectCodec(), InMemoryTopicReader()
    day = 86_400_000
    start = int(AT.timestamp() * 1000)
    for n in range(5):  # one verdict a day
        reader.append("verdicts", n % 2, start + n * day, b"PO-5001", codec.encode(judge(INVOICE)))
    reader.append("invoices", 0, start + 2 * day, b"PO-5001", codec.encode(InvoiceSubmitted(
        invoice_id="MP-1001", version=1, po_number="PO-5001", document=INVOICE, received_at=AT)))
    totals, read = [], []
    told = story(reader, codec, ["invoices", "verdicts"], "MP-1001", since_ms=start + day, until_ms=start + 4 * day,
                 on_total=totals.append, on_progress=read.append)
    assert [(s.topic, s.partition, s.offset) for s in told.steps] == [
        ("verdicts", 1, 0), ("invoices", 0, 0), ("verdicts", 0, 1), ("verdicts", 1, 1)]
    assert totals == [4] and sum(read) == 4 and all(n >= 0 for n in read) and len(read) > 2


def retained(codec: SingleObjectCodec) -> InMemoryTopicReader:
    """On partition 0 of three topics: another invoice received, then MP-1001 received, held,
    released and handed to the bot, one record a second."""
    reader = InMemoryTopicReader()
    released = StatusChanged(event_id="e3", invoice_id="MP-1001", invoice_version=1, po_number="PO-5001",
                             status=InvoiceStatus.RELEASED, occurred_at=AT, actor="ana", reason="agreed")
    for seconds, (topic, message) in enumerate([
            ("invoices", InvoiceSubmitted(invoice_id="MP-0999", version=1, po_number="PO-5001", document=INVOICE,
                                          received_at=AT)),
            ("invoices", InvoiceSubmitted(invoice_id="MP-1001", version=1, po_number="PO-5001", document=PRICE_OFF,
                                          received_at=AT)),
            ("verdicts", judge(PRICE_OFF)), ("verdicts", released),
            ("rpa.requests", RpaRequest(invoice_id="MP-1001", invoice_version=1, po_number="PO-5001",
                                        payload=judge(INVOICE).rpa_payload, requested_at=AT))]):
        reader.append(topic, 0, int((AT + timedelta(seconds=seconds)).timestamp() * 1000), b"PO-5001",
                      codec.encode(message))
    return reader


def test_a_story_whose_beginning_retention_deleted_is_incomplete_naming_where_the_partitions_start():
    """It started at `status: released`, with no receipt and no verdict, and was the whole story (exit 0)."""
    codec = SingleObjectCodec()
    topics = ["invoices", "verdicts", "rpa.requests"]
    reader = retained(codec)
    reader.delete_records("invoices", 0, 2)  # MP-1001's receipt and its verdict are gone
    reader.delete_records("verdicts", 0, 1)
    told = story(reader, codec, topics, "MP-1001")
    assert [s.what for s in told.steps] == ["status", "rpa request"] and not told.complete
    assert told.deleted == ["records before offset 2 of invoices[0] are gone: retention",
                            "records before offset 1 of verdicts[0] are gone: retention"]

    # Retention that deleted only what came before the invoice leaves its story whole.
    before = retained(codec)
    before.delete_records("invoices", 0, 1)
    told = story(before, codec, topics, "MP-1001")
    assert [s.what for s in told.steps] == ["received", "verdict", "status", "rpa request"] and told.complete

    # verdicts[0] keeps a record from before --since, so what retention deleted there is before it
    # too: not named. invoices[0] keeps none, and what it deleted may be within the range.
    since = int((AT + timedelta(seconds=4)).timestamp() * 1000)
    told = story(reader, codec, topics, "MP-1001", since_ms=since)
    assert [s.what for s in told.steps] == ["rpa request"]
    assert told.deleted == ["records before offset 2 of invoices[0] are gone: retention"]


def test_a_verdict_retention_deleted_where_its_receipt_was_kept_leaves_the_story_incomplete():
    """Topics are deleted partition by partition: verdicts[0] lost the verdict that held the invoice
    while invoices[0] kept its receipt, and the clerk's release was told, without the hold it
    released, as the whole story."""
    codec = SingleObjectCodec()
    reader = retained(codec)
    reader.delete_records("verdicts", 0, 1)
    told = story(reader, codec, ["invoices", "verdicts", "rpa.requests"], "MP-1001")
    assert [s.what for s in told.steps] == ["received", "status", "rpa request"]
    assert told.deleted == ["records before offset 1 of verdicts[0] are gone: retention"] and not told.complete


def test_what_retention_deleted_before_a_story_without_its_first_receipt_began_is_none_of_it():
    """No receipt of the lowest version seen (version 1's went to the dead letters; its verdict is
    here) and version 2 received: once retention deleted another invoice's older receipt, the story
    read as cut, exit 1."""
    codec = SingleObjectCodec()
    reader = InMemoryTopicReader()
    for seconds, (topic, message) in enumerate([
            ("invoices", InvoiceSubmitted(invoice_id="MP-0999", version=1, po_number="PO-5001", document=INVOICE,
                                          received_at=AT)),
            ("invoices", InvoiceSubmitted(invoice_id="MP-1001", version=2, po_number="PO-5001", document=INVOICE,
                                          received_at=AT)),
            ("verdicts", judge(INVOICE))]):
        reader.append(topic, 0, int((AT + timedelta(seconds=seconds)).timestamp() * 1000), b"PO-5001",
                      codec.encode(message))
    reader.delete_records("invoices", 0, 1)
    told = story(reader, codec, ["invoices", "verdicts"], "MP-1001")
    assert told.steps[0].what == "received" and told.deleted == [] and told.complete


def test_a_verdict_without_a_po_says_whether_sampro_had_none_or_the_invoice_was_not_judged_against_one():
    """A verdict the pipeline could not judge has no PO snapshot either: it read "Sampro had none"."""
    from rules.context import EvaluationContext
    from rules.evaluate import could_not_judge

    codec, reader = SingleObjectCodec(), InMemoryTopicReader()
    submitted = InvoiceSubmitted(invoice_id="MP-1001", version=1, po_number="PO-5001", document=INVOICE, received_at=AT)
    for offset, verdict in enumerate((judge(INVOICE, None), could_not_judge(submitted, "RecursionError",
                                                                            EvaluationContext(now=AT)))):
        reader.append("verdicts", 0, int(AT.timestamp() * 1000) + offset, b"PO-5001", codec.encode(verdict))
    summaries = [step.summary for step in story(reader, codec, ["verdicts"], "MP-1001").steps]
    assert "judged against no PO (Sampro gave none): PO_NOT_FOUND" in summaries[0]
    assert "judged against no PO (not judged against one): INVALID_INVOICE" in summaries[1]


def test_a_po_sampro_has_but_could_not_give_is_not_told_as_no_po():
    from audit.explain import describe
    from rules.models import Finding, Severity

    unreadable = Finding(code="PO_NOT_FOUND", severity=Severity.ERROR, message="Purchase order PO-5001 is in Sampro "
                         "but cannot be read: line 2 has unit_price NULL.")
    verdict = judge(INVOICE).model_copy(update={"po_snapshot": None, "reasons": [unreadable]})
    assert "judged against no PO (Sampro has it, but could not give it)" in describe(verdict)[1]


def test_a_refused_step_says_so_with_the_dead_letters_why_and_a_marketplace_row_is_a_step_of_its_own():
    """explain did not read the dead-letter topic: a completion the PO agent refused ("look in
    Sampro for an entry to reverse") read as the bot's entry, and a row polling could not read was
    missing from the story."""
    from streams.failures import dead_letter_of

    codec, reader = SingleObjectCodec(), InMemoryTopicReader()
    at = int(AT.timestamp() * 1000)
    completion = codec.encode(RpaCompletion(event_id="late", invoice_id="MP-1001", invoice_version=1,
                                            po_number="PO-5001", outcome=CompletionOutcome.SUCCESS,
                                            sampro_invoice_id="S-9", occurred_at=AT))
    reader.append("rpa.completions", 2, at, b"PO-5001", completion)
    refused = dead_letter_of("dlq", b"PO-5001", completion, (
        ("source.topic", b"rpa.completions"), ("source.partition", b"2"), ("source.offset", b"0"),
        ("flow", b"decide"), ("stage", b"decide")), "DataError: look in Sampro for an entry to reverse")
    reader.append("dlq", 0, at + 5, refused.key, refused.value, refused.headers)
    row = dead_letter_of("dlq", b"MP-1001", b'{"invoice_id": "MP-1001", "version": "2", "lines": "[oops"}', (
        ("source.table", b"marketplace_invoices"), ("source.invoice_id", b"MP-1001"),
        ("flow", b"poll-marketplace"), ("stage", b"read")), "lines: not JSON")
    reader.append("dlq", 0, at + 9, row.key, row.value, row.headers)
    other = dead_letter_of("dlq", b"MP-10011", b'{"invoice_id": "MP-10011"', (
        ("source.table", b"marketplace_invoices"), ("source.invoice_id", b"MP-10011"), ("flow", b"poll-marketplace"),
        ("stage", b"read")), "not JSON")
    reader.append("dlq", 0, at + 10, other.key, other.value, other.headers)  # another invoice's row
    reader.append("dlq", 0, at + 11, row.key, row.value.replace(b'"2"', b'"3"'), row.headers)  # its next version

    told = story(reader, codec, ["rpa.completions", "dlq"], "MP-1001")
    assert [(s.what, s.topic, s.invoice_version) for s in told.steps] == [
        ("completion", "rpa.completions", 1), ("dead letter", "dlq", 2), ("dead letter", "dlq", 3)]
    entry, unread, _ = told.steps
    assert entry.summary == ("REFUSED, dead-lettered by decide at decide: DataError: look in Sampro for an entry to "
                             "reverse: RPA bot reports version 1 entered in Sampro as S-9")
    assert entry.detail["dead_letter"] == "dlq[0]@0"
    assert unread.summary == ("dead-lettered by poll-marketplace at read: lines: not JSON "
                              "(the record from marketplace_invoices row MP-1001)")
    assert told.unreadable == [] and told.complete


def test_a_dead_letter_whose_record_is_outside_the_story_is_a_step_and_one_that_cannot_be_read_is_listed():
    from streams.failures import dead_letter_of

    codec, reader = SingleObjectCodec(), InMemoryTopicReader()
    provenance = (("source.topic", b"rpa.completions"), ("source.partition", b"0"), ("source.offset", b"7"),
                  ("flow", b"decide"), ("stage", b"decide"))
    request = codec.encode(RpaRequest(invoice_id="MP-1001", invoice_version=1, po_number="PO-5001",
                                      payload=judge(INVOICE).rpa_payload, requested_at=AT))
    for value in (request, b"MP-1001 but no message"):
        dead = dead_letter_of("dlq", b"PO-5001", value, provenance, "DataError: why")
        reader.append("dlq", 0, int(AT.timestamp() * 1000), dead.key, dead.value, dead.headers)
    told = story(reader, codec, ["dlq"], "MP-1001")
    (step,) = told.steps
    assert (step.what, step.invoice_version) == ("dead letter", 1)
    assert step.summary.startswith("dead-lettered by decide at decide: DataError: why (the record from "
                                   "rpa.completions[0]@7): hand-off 1 to the RPA bot")
    (unread,) = told.unreadable
    assert unread.startswith("dlq[0]@1: DecodeError") and unread.endswith(
        "; dead-lettered by decide at decide: DataError: why (the record from rpa.completions[0]@7)")


def test_a_record_forwarded_to_its_pos_partition_is_told_once_where_it_was_applied():
    """A producer that partitions keys otherwise: the runtime forwards each record to its key's
    partition, and explain told the invoice received twice."""
    from streams.runtime import FORWARDED_FROM

    codec, reader = SingleObjectCodec(), InMemoryTopicReader()
    value = codec.encode(InvoiceSubmitted(invoice_id="MP-1001", version=1, po_number="PO-5001", document=INVOICE,
                                          received_at=AT))
    at = int(AT.timestamp() * 1000)
    reader.append("invoices", 0, at + 1, b"PO-5001", value, ((FORWARDED_FROM, b"invoices[1]@0"),))
    reader.append("invoices", 1, at, b"PO-5001", value)
    steps = story(reader, codec, ["invoices"], "MP-1001").steps
    assert [(s.what, s.partition, s.detail.get("forwarded_from")) for s in steps] == [("received", 0, "invoices[1]@0")]


def test_a_debezium_event_of_the_marketplace_the_worker_could_not_read_is_a_step_of_its_own():
    """Only a polled row named its invoice in a header: a Debezium event dead-lettered at ingest was
    listed as a record that might be about it, and explain exited 1."""
    from streams.failures import dead_letter_of

    codec, reader = SingleObjectCodec(), InMemoryTopicReader()
    provenance = (("source.topic", b"marketplace.invoices"), ("source.partition", b"0"), ("source.offset", b"4"),
                  ("flow", b"ingest-marketplace-cdc"), ("stage", b"decode"))
    for invoice_id in ("MP-1001", "MP-10010"):
        event = {"op": "u", "before": None, "after": {"invoice_id": invoice_id, "version": 3, "lines": "[oops"}}
        dead = dead_letter_of("dlq", b"PO-5001", json.dumps({"schema": {}, "payload": event}).encode(), provenance,
                              "MarketplaceRecordError: lines: not JSON")
        reader.append("dlq", 0, int(AT.timestamp() * 1000), dead.key, dead.value, dead.headers)
    told = story(reader, codec, ["dlq"], "MP-1001")
    (step,) = told.steps
    assert (step.what, step.invoice_version) == ("dead letter", 3) and told.complete
    assert step.summary == ("dead-lettered by ingest-marketplace-cdc at decode: MarketplaceRecordError: lines: not "
                            "JSON (the record from marketplace.invoices[0]@4)")


def test_a_marketplace_record_the_ingest_refused_is_read_as_the_ingest_reads_json_or_not_at_all():
    """Read with plain json.loads, a dead letter's version of 1e400 stopped explain with an
    OverflowError, lines nested 100,000 deep with a RecursionError, and an invoice id with a lone
    surrogate with a UnicodeEncodeError: the auditor got a traceback for the whole story."""
    from streams.failures import dead_letter_of

    codec, reader = SingleObjectCodec(), InMemoryTopicReader()
    provenance = (("source.topic", b"marketplace.invoices"), ("source.partition", b"0"), ("source.offset", b"4"),
                  ("flow", b"ingest-marketplace-cdc"), ("stage", b"decode"))
    deep = b"[" * 100_000 + b"]" * 100_000
    for value in (b'{"payload": {"after": {"invoice_id": "MP-1001", "version": 1e400}}}',
                  b'{"payload": {"after": {"invoice_id": "MP-1001", "version": 2, "lines": ' + deep + b"}}}",
                  b'{"payload": {"after": {"invoice_id": "MP-1001\\ud800", "version": 2}}}'):
        dead = dead_letter_of("dlq", b"PO-5001", value, provenance, "MarketplaceRecordError: version: not a number")
        reader.append("dlq", 0, int(AT.timestamp() * 1000), dead.key, dead.value, dead.headers)
    told = story(reader, codec, ["dlq"], "MP-1001")
    (step,) = told.steps
    assert (step.what, step.invoice_version, step.offset) == ("dead letter", 0, 0)
    assert [where.split(":")[0] for where in told.unreadable] == ["dlq[0]@1", "dlq[0]@2"]


def test_a_verdict_given_again_says_after_what_as_the_po_ledger_names_it():
    """A clerk read manual_review, then ready_to_process, and nothing between said why."""
    def verdicts(outcome) -> list[Verdict]:
        return [message for message in outcome.emitted if isinstance(message, Verdict)]

    submitted = InvoiceSubmitted(invoice_id="MP-1001", version=1, po_number="PO-5001", document=PRICE_OFF,
                                 received_at=AT)
    held = submit_invoice(PurchaseOrderLedger(po_number="PO-5001"), submitted,
                          RulesJudge(PurchaseOrder.model_validate(PO), [], Policy(), AT), "automatic")
    (first,) = verdicts(held)
    lenient = Policy(default=Tolerance(price_abs=Decimal("0.10")))
    (under_new_rules,) = verdicts(submit_invoice(held.ledger, submitted,
                                                 RulesJudge(PurchaseOrder.model_validate(PO), [], lenient, AT),
                                                 "automatic"))
    repriced = {**PO, "lines": [{**PO["lines"][0], "unit_price": "15.60"}, *PO["lines"][1:]]}
    change = PurchaseOrderChanged(event_id="sampro:PO-5001:1764061800000000", po_number="PO-5001", changed_at=AT)
    (after_change,) = verdicts(recheck_held(held.ledger, change,
                                            RulesJudge(PurchaseOrder.model_validate(repriced), [], Policy(), AT),
                                            "automatic"))
    # Released (its last event, a status change), or approved when ready (its verdict's event), then held anew.
    at_its_turn = first.model_copy(update={"judged_after": "MP-1001:v1:released:r-1"})
    after_its_verdict = first.model_copy(update={"judged_after": verdict_event_id(
        "MP-1001", 1, "ready_to_process", first.rules_version, None, [])})

    freed = first.model_copy(update={"judged_after": "po-freed-by:MP-1002:v1:rpa_failed:rpa-1"})

    said = {name: describe(verdict) for name, verdict in (
        ("first", first), ("rules", under_new_rules), ("sampro", after_change), ("turn", at_its_turn),
        ("turn after its verdict", after_its_verdict), ("freed", freed))}
    assert said["freed"][1].startswith("judged again when MP-1002:v1:rpa_failed:rpa-1 freed its PO, nothing "
                                       "entered in Sampro: manual_review")
    assert said["first"][1].startswith("manual_review")
    assert said["rules"][1].startswith(
        f"judged again under rules {under_new_rules.rules_version} (its verdict before was under rules "
        f"{first.rules_version}, given {first.evaluated_at.isoformat()}): ready_to_process")
    assert said["sampro"][1].startswith("judged again after Sampro change sampro:PO-5001:1764061800000000: "
                                        "ready_to_process")
    for name in ("turn", "turn after its verdict"):
        assert said[name][1].startswith("judged again at its turn at the RPA bot: manual_review")
    assert said["first"][2]["judged_again"] is None
    assert said["sampro"][2]["judged_again"] == "judged again after Sampro change sampro:PO-5001:1764061800000000"
    assert said["sampro"][2]["judged_after"] == "sampro:PO-5001:1764061800000000"


def test_an_entry_the_bot_gave_no_sampro_number_for_says_so():
    """It read "entered in Sampro as None"."""
    completion = RpaCompletion(event_id="done", invoice_id="MP-1001", invoice_version=1, po_number="PO-5001",
                               outcome=CompletionOutcome.SUCCESS, occurred_at=AT)
    assert describe(completion)[1] == ("RPA bot reports version 1 entered in Sampro "
                                       "(the bot gave no Sampro invoice number)")
    numbered = completion.model_copy(update={"sampro_invoice_id": "S-9"})
    assert describe(numbered)[1] == "RPA bot reports version 1 entered in Sampro as S-9"
