"""Hostile input on the real stack: hypothesis draws malformed marketplace rows (captured by Debezium)
and raw records on every topic the worker reads, mixed in with a stream of valid invoices. At the
end every valid invoice has exactly the row an in-memory run gives and its email once, every
hostile row has a bad_invoice verdict, every raw record is in the DLQ with its provenance, the
worker still runs and no partition is stuck."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from datetime import UTC, date, datetime

from confluent_kafka import Producer
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from devstack.demo import upload
from devstack.workload import invoices, purchase_orders, uninterrupted
from rules.lifecycle import InvoiceSubmitted
from rules.models import Verdict
from schemas.codec import SingleObjectCodec

VALID, POS = 40, 20
# Each example's names: a count, not a random suffix: 4 random hex digits can name two examples alike (in a
# clean-clone run the first row of an example was refused as a duplicate of an earlier one).
EXAMPLES = itertools.count()
CONTROL = st.sampled_from(["\r\n", "\n", "\r", "\x1b", "\x07", "\u2028", "\x85"])


DEFECTS = ("number_control", "lines_deep", "lines_object", "quantity_huge", "quantity_integer", "price_nan",
           "nulls", "too_many_lines", "description_long", "part_nul", "currency", "no_total", "no_lines",
           "negative", "charges_object", "too_precise")
# Drawn as (defect, detail) and only then made into a row, so that a failing example prints short.
DETAIL = {
    "number_control": st.tuples(CONTROL, st.text(alphabet="ABC:@ ", max_size=20)).map("".join),
    "lines_deep": st.integers(9, 1_000),  # PostgreSQL itself refuses JSON much deeper than a few thousand
    "quantity_huge": st.integers(15, 400),
    "quantity_integer": st.integers(15, 3000),
    "price_nan": st.sampled_from(["NaN", "Infinity", "-Infinity", "abc", ""]),
    "too_many_lines": st.integers(1001, 1050),
    "description_long": st.integers(401, 20_000),
    "part_nul": st.sampled_from(["\u0000", "\u0001", "\n"]),
    "currency": st.sampled_from(["", "US", "U\nS"]),
    "negative": st.sampled_from(["1", "0.5", "1000"]),
    "too_precise": st.integers(4, 40),
}


def hostile_row(defect: str, detail) -> dict:
    """A marketplace row with the one defect; the rest of the row is fine."""
    row = {"vendor_id": "V1", "invoice_number": "N", "currency": "USD", "invoice_date": date(2026, 11, 20),
           "tax_amount": "0", "extra_charges": "[]", "total_amount": "4.50"}
    line = {"line_no": 1, "part_number": "P-1", "quantity": "2", "unit_price": "2.25", "amount": "4.50"}
    lines = None
    if defect == "number_control":
        row["invoice_number"] = "INV" + detail
    elif defect == "lines_deep":
        lines = "[" * detail + "]" * detail
    elif defect == "lines_object":
        lines = json.dumps({"line_no": 1})
    elif defect == "quantity_huge":
        line["quantity"] = f"1e{detail}"
    elif defect == "quantity_integer":
        line["quantity"] = 10 ** detail
    elif defect == "price_nan":
        line["unit_price"] = detail
    elif defect == "nulls":
        line = dict.fromkeys(line)
    elif defect == "too_many_lines":
        lines = json.dumps([{**line, "line_no": n} for n in range(1, detail + 1)])
    elif defect == "description_long":
        line["description"] = "x" * detail
    elif defect == "part_nul":
        line["part_number"] = "P" + detail + "1"
    elif defect == "currency":
        row["currency"] = detail
    elif defect == "no_total":
        row["total_amount"] = None
    elif defect == "no_lines":
        lines = "[]"
    elif defect == "negative":
        line["quantity"] = "-" + detail
    elif defect == "charges_object":
        row["extra_charges"] = json.dumps({"kind": "freight"})
    elif defect == "too_precise":
        line["unit_price"] = "2.2" + "5" * detail
    row["lines"] = lines if lines is not None else json.dumps([line])
    return row


RECORDS = ("binary", "marketplace_shape", "deep", "truncated", "other_schema", "unknown_fingerprint", "oversized")
MARKETPLACE_SHAPES = (b"null", b"[1, 2]", b'{"po_number": "PO-1"}',
                      b'{"invoice_id": "A", "po_number": "P", "version": -1}',
                      b'{"invoice_id": "' + b"A" * 10_000 + b'", "po_number": "P"}',
                      b'{"invoice_id": "A", "po_number": "P", "__op": "z"}')


def raw_record(topics) -> st.SearchStrategy[tuple[str, str, object]]:
    """(topic, kind, detail) of a record no worker should be able to use; `record_value` makes it."""
    avro_topics = st.sampled_from([topics.invoices, topics.completions, topics.commands, topics.verdicts,
                                   topics.rpa_requests])
    return st.one_of(
        st.tuples(st.just(topics.marketplace), st.just("binary"), st.binary(max_size=300)),
        st.tuples(st.just(topics.marketplace), st.just("marketplace_shape"), st.integers(0, 5)),
        st.tuples(st.just(topics.marketplace), st.just("deep"), st.integers(2_000, 50_000)),
        st.tuples(avro_topics, st.just("binary"), st.binary(max_size=300)),
        st.tuples(avro_topics, st.just("truncated"), st.integers(1, 60)),
        st.tuples(avro_topics, st.just("other_schema"), st.none()),
        st.tuples(avro_topics, st.just("unknown_fingerprint"), st.none()),
        st.tuples(avro_topics, st.just("oversized"), st.integers(100_000, 900_000)),
    )


def record_value(topics, topic: str, kind: str, detail) -> bytes:
    codec, at = SingleObjectCodec(), datetime(2026, 11, 25, tzinfo=UTC)
    verdict = codec.encode(Verdict(invoice_id="X", invoice_version=1, po_number="PO-1", status="bad_invoice",
                                   http_status=400, rules_version="t", evaluated_at=at))
    submission = codec.encode(InvoiceSubmitted(invoice_id="X", version=1, po_number="PO-1", document={},
                                               received_at=at))
    # A well-formed record, of a kind the topic's reader does not take.
    other = submission if topic in (topics.verdicts, topics.rpa_requests) else verdict
    return {"binary": lambda: detail, "marketplace_shape": lambda: MARKETPLACE_SHAPES[detail],
            "deep": lambda: b"[" * detail + b"]" * detail,
            "truncated": lambda: verdict[: min(detail, len(verdict) - 1)],
            "other_schema": lambda: other, "unknown_fingerprint": lambda: b"\xc3\x01" + b"\x00" * 8,
            "oversized": lambda: b"\x00" * detail}[kind]()


def produce(bootstrap: str, records) -> list[tuple[str, int, int]]:
    """Produces the records; returns where each landed (topic, partition, offset)."""
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random",
                         "message.max.bytes": 2_000_000})
    landed = []

    def delivered(error, message) -> None:
        assert error is None, error
        landed.append((message.topic(), message.partition(), message.offset()))

    for topic, key, value in records:
        producer.produce(topic, key=key, value=value, on_delivery=delivered)
    assert producer.flush(60) == 0
    return landed


def insert_rows(engine, rows: list[dict]) -> None:
    cast = "CAST(:{0} AS JSON)"
    statement = text("INSERT INTO marketplace_invoices (invoice_id, version, vendor_id, invoice_number, po_number, "
                     "invoice_date, currency, lines, tax_amount, extra_charges, total_amount, updated_at) VALUES "
                     f"(:invoice_id, 1, :vendor_id, :invoice_number, :po_number, :invoice_date, :currency, "
                     f"{cast.format('lines')}, :tax_amount, {cast.format('extra_charges')}, :total_amount, now())")
    with engine.begin() as conn:
        for row in rows:
            conn.execute(statement, row)


@settings(max_examples=5, deadline=None, database=None, phases=[Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large, HealthCheck.large_base_example])
@given(data=st.data())
def test_hostile_rows_and_records_among_valid_invoices_lose_nothing_and_stop_nothing(pipeline, unique_name, data):
    """Each example sends its own invoices, rows and records to the one worker of the test."""
    from streams.bootstrap import Topics

    topics = Topics.of(pipeline.settings)
    name = f"{unique_name}-{next(EXAMPLES)}"
    pos = purchase_orders(POS, name)
    valid = invoices(VALID, pos, name)
    expected = {row["invoice_id"]: row["status"] for row in uninterrupted(pos, valid).rows()}
    rows = [hostile_row(defect, data.draw(DETAIL[defect], label=defect) if defect in DETAIL else None)
            for defect in DEFECTS]
    own_pos = purchase_orders(len(rows), f"{name}-B")  # not behind a valid invoice waiting at the bot
    for n, row in enumerate(rows):
        row["invoice_id"], row["po_number"] = f"{name}-BAD-{n}", own_pos[n].po_number
    drawn = data.draw(st.lists(raw_record(topics), min_size=12, max_size=12), label="raw records")
    records = [(topic, b"PO-1", record_value(topics, topic, kind, detail)) for topic, kind, detail in drawn]
    pipeline.sampro.load_purchase_orders([*pos, *own_pos])
    if pipeline.worker is None:
        pipeline.start_worker()

    documents = [submission.document for submission in valid]
    half = len(documents) // 2
    upload(pipeline.settings, documents[:half])
    insert_rows(pipeline.marketplace, rows[:8])
    landed = produce(pipeline.settings.kafka_bootstrap_servers, records[:6])
    upload(pipeline.settings, documents[half:])
    insert_rows(pipeline.marketplace, rows[8:])
    landed += produce(pipeline.settings.kafka_bootstrap_servers, records[6:])

    hostile_ids = {row["invoice_id"] for row in rows}

    def settled() -> bool:
        statuses = pipeline.statuses()
        return (all(statuses.get(i) == s for i, s in expected.items())
                and all(statuses.get(i) not in (None, "waiting_for_po") for i in hostile_ids))

    pipeline.wait_for(settled, timeout=120, what="every valid invoice and every hostile row")
    statuses = pipeline.statuses()
    assert {i: statuses[i] for i in hostile_ids} == dict.fromkeys(hostile_ids, "bad_invoice")
    reasons = {r["invoice_id"]: r["reasons"] for r in pipeline.scheduler.rows() if r["invoice_id"] in hostile_ids}
    assert all(any(reason["code"] == "INVALID_INVOICE" and reason["field"] for reason in found)
               for found in reasons.values()), reasons
    ours = [r for r in pipeline.scheduler.rows() if r["invoice_id"] in expected]
    assert len(ours) == len({(r["invoice_id"], r["invoice_version"]) for r in ours}) == VALID
    def mailed() -> Counter:
        return Counter(invoice_id for m in list(pipeline.mailbox.mailbox.messages)
                       if (invoice_id := json.loads(m.get_body(("plain",)).get_content())["invoice_id"]) in expected)

    ready = Counter(i for i, s in expected.items() if s == "sent_to_rpa")
    pipeline.wait_for(lambda: sum(mailed().values()) >= len(ready), timeout=60, what="the RPA emails")
    assert mailed() == ready

    def dead() -> set[tuple[str, int, int]]:
        return {(d["source.topic"], int(d["source.partition"]), int(d["source.offset"]))
                for d in pipeline.dead_letters() if "source.topic" in d}

    pipeline.wait_for(lambda: set(landed) <= dead(), timeout=60, what=lambda: f"the DLQ ({set(landed) - dead()})")
    assert pipeline.worker.running()
    assert set(pipeline.unread().values()) == {0}, pipeline.unread()
