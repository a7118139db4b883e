"""A PO line's price corrected in the Sampro stand-in reaches sampro.changes as a PurchaseOrderChanged
of its PO, through the Debezium capture the worker registers at start and the ingest-sampro-cdc
flow, on the real Kafka, Connect and PostgreSQL. The worker's runtime runs in this process, with
only what the flow needs (no processscheduler, no mailbox)."""

from __future__ import annotations

import re
import time
from datetime import date
from decimal import Decimal

import httpx
import pytest
from sqlalchemy import create_engine, text, update

from connectors.debezium.config import deleted_po_problem, remove_capture
from connectors.debezium.sampro_config import SamproCapture, sampro_capture
from connectors.marketplace_table import marketplace_invoices
from connectors.rpa_mail import InMemoryRpaMailer
from connectors.sampro.standin import SamproStandIn
from connectors.sampro.tables import SamproNames
from connectors.scheduler import InMemoryProcessScheduler
from rules.lifecycle import PurchaseOrderChanged
from rules.models import PurchaseOrder
from schemas.codec import SingleObjectCodec
from streams.bootstrap import bootstrap
from streams.settings import Settings
from streams.topics import ensure_topics
from tests.stack_pipeline import read_topic


def _running(connect_url: str, name: str) -> bool:
    status = httpx.get(f"{connect_url}/connectors/{name}/status", timeout=5)
    if status.status_code != 200:
        return False
    body = status.json()
    states = [body["connector"]["state"]] + [task["state"] for task in body.get("tasks", [])]
    assert "FAILED" not in states, body
    return bool(body.get("tasks")) and all(state == "RUNNING" for state in states)


@pytest.fixture
def sampro(sampro_db_url, unique_name):
    """The stand-in's tables in a schema of this test's own, named through SamproNames as an
    installation's would be."""
    names = SamproNames(schema_name=unique_name)
    engine = create_engine(sampro_db_url)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{unique_name}"'))
    standin = SamproStandIn(engine, names)
    standin.create_schema()
    standin.load_purchase_orders([PurchaseOrder.model_validate({
        "po_number": f"PO-{unique_name}", "vendor_id": "V100", "status": "open", "currency": "USD",
        "order_date": date(2026, 11, 1), "tax_rate": None, "allowed_charges": [],
        "lines": [{"line_no": 1, "part_number": "AC-100", "unit_price": "15.50", "quantity_ordered": "5"}]})])
    yield standin, names
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{unique_name}" CASCADE'))
    engine.dispose()


def test_a_po_line_price_update_reaches_sampro_changes_through_the_capture(
        sampro, kafka_bootstrap, connect_url, sampro_db_url, unique_name, tmp_path):
    standin, names = sampro
    prefix, po_number = unique_name, f"PO-{unique_name}"
    marketplace_db_url = f"sqlite:///{tmp_path}/marketplace.db"  # polled, empty: only Sampro is under test
    marketplace_invoices.metadata.create_all(create_engine(marketplace_db_url))
    settings = Settings(
        kafka_bootstrap_servers=kafka_bootstrap, app_id=prefix, data_dir=tmp_path, topic_partitions=1,
        connect_url=connect_url, sampro_db_url=sampro_db_url, sampro_names=names,
        sampro_changes="debezium", sampro_cdc_topic=f"{prefix}.sampro.cdc", marketplace_db_url=marketplace_db_url,
        marketplace_topic=f"{prefix}.marketplace.invoices", invoices_topic=f"{prefix}.invoices",
        completions_topic=f"{prefix}.rpa.completions", commands_topic=f"{prefix}.po.commands",
        sampro_changes_topic=f"{prefix}.sampro.changes", verdicts_topic=f"{prefix}.verdicts",
        rpa_requests_topic=f"{prefix}.rpa.requests", dlq_topic=f"{prefix}.dlq", batch_seconds=0.1,
        session_timeout_seconds=10, _env_file=None)
    ensure_topics(settings)
    capture = sampro_capture(sampro_db_url, settings.sampro_cdc_topic, names, kafka_bootstrap, prefix)
    assert isinstance(capture, SamproCapture)
    pipeline = bootstrap(settings, scheduler=InMemoryProcessScheduler(), mailer=InMemoryRpaMailer())
    runtime = pipeline.runtime
    runtime.start()
    try:
        # The runtime registers the capture once it owns the invoices topic's partition 0; with
        # snapshot.mode=no_data a change counts only once the connector streams.
        deadline = time.monotonic() + 60
        while not _running(connect_url, capture.name):
            assert time.monotonic() < deadline, "the worker did not register a running Sampro capture in 60 s"
            runtime.step()
        po_line = standin.tables.po_line
        with standin.engine.begin() as conn:
            conn.execute(update(po_line).where(po_line.c.po_number == po_number)
                         .values(unit_price=Decimal("15.00"), updated_at=text("now()")))
            changed_at = conn.execute(text("SELECT now()")).scalar_one()

        codec, changes, deadline = SingleObjectCodec(), [], time.monotonic() + 60
        while not changes and time.monotonic() < deadline:
            for _ in range(20):
                runtime.step()
            changes = read_topic(kafka_bootstrap, settings.sampro_changes_topic)
        assert changes, "no PurchaseOrderChanged on sampro.changes within 60 s of the price change"
        [message] = changes
        change = codec.decode(message.value())
        assert isinstance(change, PurchaseOrderChanged)
        assert message.key() == po_number.encode() and change.po_number == po_number
        assert change.changed_at == changed_at  # the row's updated_at, as the poller would name it
        # ...and the transaction, which PostgreSQL's connector names in source.txId: two changes of one updated_at
        assert re.fullmatch(rf"sampro:{re.escape(po_number)}:\d+@\d+", change.event_id), change.event_id

        # A header with a wide column of its own (a buyer's notes): only the columns the decoder
        # reads are captured, so its change is no larger than any other.
        with standin.engine.begin() as conn:
            conn.execute(text(f'ALTER TABLE "{unique_name}".po_header ADD COLUMN notes text'))
            conn.execute(text(f"UPDATE \"{unique_name}\".po_header SET notes = repeat('x', 300000), "
                              "updated_at = now() WHERE po_number = :po"), {"po": po_number})
        deadline = time.monotonic() + 60
        while len(changes) < 2 and time.monotonic() < deadline:
            for _ in range(20):
                runtime.step()
            changes = read_topic(kafka_bootstrap, settings.sampro_changes_topic)
        assert len(changes) == 2, "the wide header's change did not reach sampro.changes within 60 s"
        assert not read_topic(kafka_bootstrap, settings.dlq_topic)
    finally:
        runtime.close()
        pipeline.mail_runtime.close()
        remove_capture(connect_url, capture)


def test_a_po_table_whose_deletions_would_not_carry_the_po_number_is_named_before_the_capture_starts(
        sampro, sampro_db_url, unique_name):
    """With PostgreSQL's default replica identity a deletion carries the primary key alone: a PO line
    keyed by a line id of its own was deleted without its PO number, dead-lettered, and its PO's held
    invoices were never judged again."""
    standin, names = sampro
    capture = SamproCapture(database_url=sampro_db_url, names=names)
    assert deleted_po_problem(capture) is None  # the stand-in keys its lines by PO and line number
    table = f'"{unique_name}"."po_line"'
    with standin.engine.begin() as conn:
        key = conn.execute(text("SELECT conname FROM pg_constraint WHERE conrelid = to_regclass(:t) AND contype = 'p'"),
                           {"t": table}).scalar_one()
        conn.execute(text(f'ALTER TABLE {table} DROP CONSTRAINT "{key}"'))
        conn.execute(text(f"ALTER TABLE {table} ADD COLUMN line_id serial PRIMARY KEY"))
    assert deleted_po_problem(capture) == (
        f"a deleted row of {unique_name}.po_line would not carry its po_number: ALTER TABLE {table} "
        "REPLICA IDENTITY FULL (or make po_number part of its primary key)")
    with standin.engine.begin() as conn:
        conn.execute(text(f"ALTER TABLE {table} REPLICA IDENTITY FULL"))
    assert deleted_po_problem(capture) is None
    gone = SamproCapture(database_url=sampro_db_url, names=SamproNames(schema_name=f"{unique_name}_none"))
    assert deleted_po_problem(gone) == f"the table {unique_name}_none.po_header does not exist in Sampro's database"
