"""A captured table that stays quiet while its database is busy must not make the replication slot
hold the database's WAL: both PostgreSQL captures, as the worker registers them, on the real
Connect and PostgreSQL, with other tables of the same database written meanwhile."""

from __future__ import annotations

import dataclasses
import json
import time
from datetime import date
from decimal import Decimal

import pytest
from confluent_kafka import Consumer
from sqlalchemy import create_engine, insert, text

from connectors.debezium import decode_marketplace_record, register_connector
from connectors.debezium.config import marketplace_capture, remove_capture
from connectors.debezium.sampro_config import SamproCapture, sampro_capture
from connectors.marketplace_table import marketplace_invoices
from connectors.sampro.standin import SamproStandIn
from connectors.sampro.tables import SamproNames
from rules.lifecycle import InvoiceSubmitted


@pytest.fixture
def busy_schema(request, unique_name):
    """A schema of this test's own in the captured database, for a table the capture does not read."""
    engine = create_engine(request.getfixturevalue(request.param))
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{unique_name}"'))
        conn.execute(text(f'CREATE TABLE "{unique_name}".other_work (id serial PRIMARY KEY, body text)'))
    yield engine
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{unique_name}" CASCADE'))
    engine.dispose()


def _lag_after_other_work(engine, schema: str, slot: str, timeout: float = 30) -> int:
    """Writes 20,000 rows (about 9 MB of WAL) into a table outside the capture, then waits for the
    slot to confirm a position past them; returns the bytes it still holds from there."""
    with engine.begin() as conn:
        conn.execute(text(f"INSERT INTO \"{schema}\".other_work (body) "
                          "SELECT repeat('x', 200) FROM generate_series(1, 20000)"))
        written = conn.execute(text("SELECT pg_current_wal_lsn()")).scalar_one()
    held = text("SELECT pg_wal_lsn_diff(:written, confirmed_flush_lsn) FROM pg_replication_slots "
                "WHERE slot_name = :slot")
    deadline = time.monotonic() + timeout
    while True:
        with engine.connect() as conn:
            lag = int(conn.execute(held, {"written": written, "slot": slot}).scalar_one())
        if lag <= 0 or time.monotonic() > deadline:
            return lag
        time.sleep(0.5)


def _messages(bootstrap: str, topic: str, timeout: float = 5) -> list:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{topic}", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    found, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            found += [m for m in consumer.consume(100, timeout=0.5) if m.error() is None]
    finally:
        consumer.close()
    return found


@pytest.mark.parametrize("busy_schema", ["marketplace_db_url"], indirect=True)
def test_the_marketplace_slot_lets_go_of_wal_while_no_invoice_arrives(
        busy_schema, connect_url, kafka_bootstrap, marketplace_db_url, unique_name):
    capture = dataclasses.replace(marketplace_capture(marketplace_db_url, f"{unique_name}.invoices", unique_name),
                                  heartbeat_ms=500)
    register_connector(connect_url, capture)
    try:
        lag = _lag_after_other_work(busy_schema, unique_name, capture.slot)
        assert lag <= 0, f"the slot still holds {lag:,} bytes of WAL written to other tables 30 s ago"
        # The heartbeats went to their own topic: the invoices topic has the table's records only.
        with busy_schema.begin() as conn:
            conn.execute(insert(marketplace_invoices).values(
                invoice_id=f"MP-{unique_name}", version=1, vendor_id="V100", invoice_number="INV-1",
                po_number=f"PO-{unique_name}", invoice_date=date(2026, 11, 20), currency="USD",
                lines=[{"line_no": 1, "part_number": "AC-100", "quantity": "1", "unit_price": "1.00"}],
                tax_amount=Decimal(0), extra_charges=[], total_amount=Decimal("1.00")))
        # With the snapshot of the rows other tests left in the table: each one a row, none a heartbeat.
        messages = _messages(kafka_bootstrap, capture.topic, timeout=10)
        assert all("invoice_id" in json.loads(message.value()) for message in messages)
        (ours,) = [m for m in messages if f"MP-{unique_name}".encode() in m.value()]
        assert ours.key() == f"PO-{unique_name}".encode()
        assert isinstance(decode_marketplace_record(ours.value()), InvoiceSubmitted)
        assert _messages(kafka_bootstrap, f"__debezium-heartbeat.{capture.name}")
    finally:
        remove_capture(connect_url, capture)


@pytest.mark.parametrize("busy_schema", ["sampro_db_url"], indirect=True)
def test_the_sampro_slot_lets_go_of_wal_while_no_po_changes(
        busy_schema, connect_url, kafka_bootstrap, sampro_db_url, unique_name):
    names = SamproNames(schema_name=unique_name)
    SamproStandIn(busy_schema, names).create_schema()
    capture = sampro_capture(sampro_db_url, f"{unique_name}.sampro.cdc", names, kafka_bootstrap, unique_name)
    assert isinstance(capture, SamproCapture)
    capture = dataclasses.replace(capture, heartbeat_ms=500)
    register_connector(connect_url, capture)
    try:
        lag = _lag_after_other_work(busy_schema, unique_name, capture.slot)
        assert lag <= 0, f"the slot still holds {lag:,} bytes of WAL written to other tables 30 s ago"
        # Nothing changed in the PO tables: the heartbeat's own messages are not changes.
        assert not _messages(kafka_bootstrap, capture.topic)
    finally:
        remove_capture(connect_url, capture)
