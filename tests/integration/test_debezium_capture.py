"""Debezium turns marketplace INSERT, UPDATE and DELETE into canonical invoice events keyed by PO."""

from __future__ import annotations

import time
from datetime import date
from decimal import Decimal

import pytest
from confluent_kafka import Consumer
from sqlalchemy import create_engine, delete, insert, update

from connectors.debezium import MarketplaceCapture, decode_marketplace_record, register_connector
from connectors.debezium.config import remove_capture
from connectors.debezium.decoder import MarketplaceRecordError
from connectors.marketplace_table import marketplace_invoices
from rules import PurchaseOrder, evaluate
from rules.lifecycle import InvoiceSubmitted, InvoiceWithdrawn

LINES = [{"line_no": 1, "part_number": "AC-100", "description": "Compressor", "quantity": "2",
          "unit_price": "15.50", "amount": "31.00"}]


@pytest.fixture
def capture(connect_url, marketplace_db_url, unique_name):
    capture = MarketplaceCapture(name=f"mp-{unique_name}", database_url=marketplace_db_url,
                                 topic=f"marketplace.invoices.{unique_name}", slot=unique_name, publication=unique_name)
    register_connector(connect_url, capture)
    yield capture
    remove_capture(connect_url, capture)


def read_events(bootstrap: str, topic: str, invoice_id: str, count: int, timeout: float = 30) -> list:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{topic}", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    found = []
    deadline = time.monotonic() + timeout
    try:
        while len(found) < count and time.monotonic() < deadline:
            for message in consumer.consume(100, timeout=0.5):
                if message.error() is None and invoice_id.encode() in (message.value() or b""):
                    found.append(message)
    finally:
        consumer.close()
    return found


def test_insert_update_delete_become_canonical_events_keyed_by_po(capture, kafka_bootstrap, marketplace_db_url,
                                                                  unique_name):
    invoice_id, po_number = f"MP-{unique_name}", f"PO-{unique_name}"
    engine = create_engine(marketplace_db_url)
    started = time.monotonic()
    with engine.begin() as conn:
        conn.execute(insert(marketplace_invoices).values(
            invoice_id=invoice_id, version=1, vendor_id="V100", invoice_number="INV-778", po_number=po_number,
            invoice_date=date(2026, 11, 20), currency="USD", lines=LINES, tax_amount=Decimal("2.48"),
            extra_charges=[{"kind": "freight", "amount": "10.00"}], total_amount=Decimal("43.48")))
    with engine.begin() as conn:
        conn.execute(update(marketplace_invoices).where(marketplace_invoices.c.invoice_id == invoice_id)
                     .values(version=2, total_amount=Decimal("33.48"), extra_charges=[]))
    with engine.begin() as conn:
        conn.execute(delete(marketplace_invoices).where(marketplace_invoices.c.invoice_id == invoice_id))
    engine.dispose()

    messages = read_events(kafka_bootstrap, capture.topic, invoice_id, 3)
    elapsed = time.monotonic() - started
    assert len(messages) == 3, f"got {len(messages)} events in {elapsed:.1f} s"
    assert elapsed < 30
    assert {m.key() for m in messages} == {po_number.encode()}
    created, edited, deleted = (decode_marketplace_record(m.value()) for m in messages)

    assert isinstance(created, InvoiceSubmitted) and created.version == 1
    assert created.document["invoice_date"] == "2026-11-20"
    assert created.document["lines"][0]["unit_price"] == "15.50"
    assert Decimal(created.document["total_amount"]) == Decimal("43.48")
    po = PurchaseOrder.model_validate({
        "po_number": po_number, "vendor_id": "V100", "status": "open", "currency": "USD", "order_date": "2026-11-01",
        "tax_rate": "0.08", "allowed_charges": ["freight"],
        "lines": [{"line_no": 1, "part_number": "AC-100", "unit_price": "15.50", "quantity_ordered": "5"}]})
    assert evaluate(created.document, po).status.value == "ready_to_process"

    assert isinstance(edited, InvoiceSubmitted) and edited.version == 2 and edited.document["extra_charges"] == []
    assert isinstance(deleted, InvoiceWithdrawn)
    assert (deleted.invoice_id, deleted.po_number, deleted.version) == (invoice_id, po_number, 2)


def test_an_upload_over_a_mebibyte_as_connect_writes_it_reaches_the_topic(capture, kafka_bootstrap, marketplace_db_url,
                                                                          unique_name):
    """Kafka's producer refused a record over 1 MiB before compressing it: the task failed at every
    restart on the same row, and no vendor's invoice was captured after it."""
    invoice_id, po_number = f"MP-{unique_name}", f"PO-{unique_name}"
    lines = [{**LINES[0], "line_no": n, "description": f"Compressor {n} " + "x" * 1_100} for n in range(1, 1_001)]
    engine = create_engine(marketplace_db_url)
    with engine.begin() as conn:
        conn.execute(insert(marketplace_invoices).values(
            invoice_id=invoice_id, version=1, vendor_id="V100", invoice_number="INV-1", po_number=po_number,
            invoice_date=date(2026, 11, 20), currency="USD", lines=lines, tax_amount=Decimal(0), extra_charges=[],
            total_amount=Decimal("31000.00")))
    engine.dispose()
    (message,) = read_events(kafka_bootstrap, capture.topic, invoice_id, 1)
    assert len(message.value()) > 1_048_576 and message.key() == po_number.encode()
    with pytest.raises(MarketplaceRecordError, match="at most 1,088,000"):  # the worker dead-letters it, named
        decode_marketplace_record(message.value())


def test_a_table_that_keeps_only_keys_for_deletions_is_named_before_the_capture_starts(marketplace_db_url,
                                                                                       unique_name):
    """With PostgreSQL's default replica identity a deletion carries the primary key alone: the
    withdrawal was dead-lettered, and the withdrawn invoice went on to be entered."""
    from sqlalchemy import text

    from connectors.debezium.config import replica_identity_problem

    table = f"{unique_name}.marketplace_invoices"
    capture = MarketplaceCapture(database_url=marketplace_db_url, table=table)
    engine = create_engine(marketplace_db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{unique_name}"'))
            conn.execute(text(f'CREATE TABLE {table} (invoice_id varchar(64) PRIMARY KEY, po_number varchar(64))'))
        assert "ALTER TABLE " + table + " REPLICA IDENTITY FULL" in replica_identity_problem(capture)
        with engine.begin() as conn:
            conn.execute(text(f"ALTER TABLE {table} REPLICA IDENTITY FULL"))
        assert replica_identity_problem(capture) is None
        gone = MarketplaceCapture(database_url=marketplace_db_url, table=f"{unique_name}.nothing")
        assert "does not exist" in replica_identity_problem(gone)
    finally:
        with engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{unique_name}" CASCADE'))
        engine.dispose()
