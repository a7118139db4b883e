"""Flattened Debezium records as the connector emits them, and the ones it could not map."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from connectors.debezium import MarketplaceCapture, MarketplaceRecordError, decode_marketplace_record
from rules import evaluate
from rules.lifecycle import InvoiceSubmitted, InvoiceWithdrawn

ROW = {
    "invoice_id": "MP-1001", "version": 1, "vendor_id": "V100", "invoice_number": "INV-778", "po_number": "PO-5001",
    "invoice_date": 20412, "currency": "USD",
    "lines": '[{"line_no": 1, "part_number": "AC-100", "quantity": 2, "unit_price": 15.50, "amount": "31.00"}]',
    "tax_amount": "2.4800", "extra_charges": '[{"kind": "freight", "amount": "10.00"}]', "total_amount": "43.4800",
    "updated_at": "2026-11-20T10:00:00.000000Z", "__deleted": "false", "__op": "c", "__lsn": 123,
    "__source_ts_ms": 1795600000000,
}


def record(**changes) -> bytes:
    return json.dumps({**ROW, **changes}).encode()


@pytest.mark.parametrize("op", ["c", "u", "r"])
def test_create_update_and_snapshot_give_the_canonical_invoice(op):
    event = decode_marketplace_record(record(__op=op))
    assert isinstance(event, InvoiceSubmitted)
    assert (event.invoice_id, event.version, event.po_number) == ("MP-1001", 1, "PO-5001")
    doc = event.document
    assert doc["invoice_date"] == "2025-11-20"
    # Money and quantities as decimal text (DESIGN §3), exactly as the JSON column has them.
    assert (doc["lines"][0]["quantity"], doc["lines"][0]["unit_price"]) == ("2", "15.50")
    assert doc["tax_amount"] == "2.4800" and doc["extra_charges"][0]["kind"] == "freight"
    assert "__op" not in doc and "updated_at" not in doc


def test_a_number_where_the_invoice_has_text_stays_a_number_for_the_rules_to_refuse():
    """Written as text on the wire, `"description": 2.5` went to the bot as "2.5"; `validate`
    refuses the number."""
    lines = '[{"line_no": 1, "part_number": 100.5, "description": 2.5, "quantity": 2.0, "unit_price": 1E+1}]'
    (line,) = decode_marketplace_record(record(lines=lines)).document["lines"]
    assert line == {"line_no": 1, "part_number": Decimal("100.5"), "description": Decimal("2.5"), "quantity": "2.0",
                    "unit_price": "1E+1"}


def test_a_key_holding_a_lone_surrogate_is_measured_and_not_an_error():
    """`encode("utf-16-le")` raised UnicodeEncodeError on it, outside the error family."""
    from connectors.marketplace_table import stream_key_problem
    from rules.limits import Limits

    assert "65 UTF-16 units" in str(stream_key_problem("\U0001F4E6" * 32 + "\ud800", Limits()))
    assert stream_key_problem("PO-\udc00", Limits()) == "contains the control character U+DC00"


def test_delete_is_a_withdrawal():
    event = decode_marketplace_record(record(__op="d", __deleted="true", version=3))
    assert isinstance(event, InvoiceWithdrawn)
    assert (event.invoice_id, event.po_number, event.version) == ("MP-1001", "PO-5001", 3)


def test_tombstone_means_nothing_to_do():
    assert decode_marketplace_record(None) is None


def test_contract_problems_flow_on_to_the_rules():
    event = decode_marketplace_record(record(currency=None, total_amount="abc"))
    assert "currency" not in event.document and event.document["total_amount"] == "abc"


@pytest.mark.parametrize("days", [3_000_000, -800_000])
def test_a_date_past_year_9999_or_before_year_1_flows_on_for_the_rules_to_name(days):
    """PostgreSQL keeps dates to year 294276: a typed 20260-11-20 is days past any Python date."""
    event = decode_marketplace_record(record(invoice_date=days))
    verdict = evaluate(event.document, None)
    assert event.document["invoice_date"] == days
    assert ("INVALID_INVOICE", "invoice_date") in [(finding.code, finding.field) for finding in verdict.reasons]


def test_a_lines_column_that_cannot_be_read_flows_on_as_a_note_for_the_rules():
    broken = decode_marketplace_record(record(lines="[{not json"))
    deep = decode_marketplace_record(record(lines="[" * 5000 + "]" * 5000))
    assert broken.document["lines"].startswith("unreadable: not JSON")
    assert deep.document["lines"] == "unreadable: JSON nested deeper than 8 levels"


def test_a_lines_column_within_the_invoices_limit_is_read_though_escaped_it_makes_a_larger_record():
    """Held to the limit as a whole, the record was dead-lettered where polling judged the invoice."""
    line = {"line_no": 1, "part_number": "AC-100", "description": "x" * 150, "quantity": "2",
            "unit_price": "15.50", "amount": "31.00"}
    lines = json.dumps([{**line, "line_no": n} for n in range(1, 900)])
    assert len(lines) < 256_000 < len(record(lines=lines))
    assert len(decode_marketplace_record(record(lines=lines)).document["lines"]) == 899
    past = json.dumps([{**line, "line_no": n} for n in range(1, 1001)])
    assert decode_marketplace_record(record(lines=past)).document["lines"].startswith("unreadable: ")


@pytest.mark.parametrize(
    ("value", "field"),
    [
        (b"\x00\x01garbage", "value"),
        (b"[1, 2]", "value"),
        (record(invoice_id=None), "invoice_id"),
        (record(po_number=""), "po_number"),
        (record(version="two"), "version"),
        (record(version=0), "version"),
        (record(invoice_id="MP-1\r\n1"), "invoice_id"),
        (record(po_number="P" * 65), "po_number"),
        # 40 characters, 80 UTF-16 units: SQL Server's NVARCHAR(64) refused its processscheduler row.
        (record(po_number="\U0001F4E6" * 40), "po_number"),
        (b"[" * 100_000 + b"]" * 100_000, "value"),
        (json.dumps({**ROW, "x": [[[[[[[[[["deep"]]]]]]]]]]}).encode(), "value"),
        (json.dumps({**ROW, "pad": "x" * 1_100_000}).encode(), "value"),
        (record(__op="x"), "__op"),
    ],
)
def test_unmappable_record_raises_a_typed_error_naming_the_field(value, field):
    with pytest.raises(MarketplaceRecordError) as caught:
        decode_marketplace_record(value)
    assert caught.value.field == field and repr(field) in str(caught.value)


def test_connector_config_keys_the_topic_by_po_and_keeps_deletes():
    config = MarketplaceCapture(database_url="postgresql+psycopg://u:p@127.0.0.1:5433/marketplace").connector_config()
    assert config["message.key.columns"] == "public.marketplace_invoices:po_number"
    assert config["transforms.po_key.field"] == "po_number"
    assert config["transforms.unwrap.delete.tombstone.handling.mode"] == "rewrite"
    assert config["publication.autocreate.mode"] == "filtered" and config["plugin.name"] == "pgoutput"
    assert (config["database.port"], config["database.dbname"], config["database.user"]) == ("5433", "marketplace", "u")
    assert config["transforms.route.replacement"] == "marketplace.invoices"
    assert config["snapshot.mode"] == "when_needed"  # a lost slot snapshots again, not streams on past a gap
    # An upload over Kafka's 1 MiB default, compressed under the topic's limit: not a task failed for good.
    assert (config["producer.override.max.request.size"], config["producer.override.compression.type"]) == (
        "16000000", "zstd")


def test_the_capture_is_named_after_the_pipeline_and_the_default_keeps_the_names_registered_before():
    """Two pipelines on one Connect took over each other's connector, and on one server each other's slot."""
    from connectors.debezium.config import marketplace_capture

    url = "postgresql+psycopg://u:p@127.0.0.1:5433/marketplace"
    default = marketplace_capture(url, "marketplace.invoices")
    assert (default.name, default.slot, default.publication) == ("marketplace-invoices", "invoice_automation",
                                                                  "invoice_automation")
    staging = marketplace_capture(url, "staging.marketplace", app_id="ap_staging")
    assert (staging.name, staging.slot, staging.publication) == ("ap_staging-marketplace", "ap_staging_marketplace",
                                                                  "ap_staging_marketplace")
    assert staging.connector_config()["transforms.route.replacement"] == "staging.marketplace"
    # Ids a slot name cannot hold as they are get a digest of themselves: a-b, a.b and A-B shared one slot.
    slots = {marketplace_capture(url, "t", app_id=app_id).slot for app_id in ("ap-staging", "ap.staging", "AP-staging",
                                                                              "x" * 60 + "1", "x" * 60 + "2")}
    assert len(slots) == 5 and all(len(slot) <= 63 and slot.startswith(("ap_staging_", "xxx")) for slot in slots)


def test_a_source_time_no_date_can_hold_is_taken_as_the_time_it_was_read():
    """10**17 ms (year 3,170,843) was a ValueError logged as an unexpected error with a traceback."""
    from datetime import UTC, datetime, timedelta

    event = decode_marketplace_record(record(__source_ts_ms=10**17))
    assert isinstance(event, InvoiceSubmitted)
    assert abs(event.received_at - datetime.now(UTC)) < timedelta(minutes=1)


def test_a_row_with_null_columns_makes_the_same_document_from_either_source(tmp_path):
    """Polling kept a NULL column as null and Debezium left it out: the vendor got "should be a
    valid string" from one and "Field required" from the other for the same row."""
    from datetime import UTC, datetime

    from connectors.marketplace_polling import PollingMarketplaceSource
    from connectors.marketplace_table import marketplace_invoices, metadata
    from connectors.sql import engine_for
    from connectors.watermarks import FileWatermark

    engine = engine_for(f"sqlite:///{tmp_path / 'marketplace.db'}")
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(marketplace_invoices.insert(), [{
            "invoice_id": "MP-1001", "version": 1, "vendor_id": None, "invoice_number": "INV-778",
            "po_number": "PO-5001", "invoice_date": None, "currency": "USD", "lines": [], "extra_charges": [],
            "tax_amount": "2.4800", "total_amount": "43.4800", "updated_at": datetime(2026, 11, 20, tzinfo=UTC)}])
    (polled,) = PollingMarketplaceSource(engine, FileWatermark(tmp_path / "mark.json")).poll().events
    captured = decode_marketplace_record(record(vendor_id=None, invoice_date=None, lines="[]", extra_charges="[]"))
    assert polled.document.keys() == captured.document.keys()
    # Money as DESIGN §3 has it on the wire, from either source: Debezium gives it as text, polling as Decimals.
    assert (polled.document["tax_amount"], captured.document["tax_amount"]) == ("2.4800", "2.4800")
    assert "vendor_id" not in polled.document and "invoice_date" not in polled.document


@pytest.mark.parametrize(("status", "outage"), [(409, True), (503, True), (400, False)])
def test_connect_rebalancing_is_an_outage_to_wait_out_and_a_refused_config_is_not(status, outage):
    """409 is Connect rebalancing its workers, right after it starts: taken for a refusal, the
    capture's registration was reported broken, with a traceback at each try, until it passed."""
    import httpx

    from connectors.debezium import MarketplaceCapture
    from connectors.debezium.config import ConnectorError, put_connector
    from rules.errors import Unavailable

    answering = httpx.Client(base_url="http://connect", transport=httpx.MockTransport(
        lambda request: httpx.Response(status, text="rebalance in progress")))
    capture = MarketplaceCapture(database_url="postgresql://u:p@db:5432/marketplace")
    with pytest.raises(Unavailable if outage else ConnectorError):
        put_connector(answering, capture)


class ConnectAnswering:
    """Connect's REST API as far as a kept capture asks it: the connector's status, its restart, its config."""

    def __init__(self, state: str = "RUNNING"):
        self.state, self.registered, self.asked = state, True, []

    def __call__(self, request):
        import httpx

        self.asked.append(f"{request.method} {request.url.path}")
        if request.method == "PUT":
            self.registered, self.state = True, "RUNNING"
            return httpx.Response(200, json={})
        if request.method == "POST":
            return httpx.Response(202, json={})
        if not self.registered:
            return httpx.Response(404, json={"error_code": 404})
        task = {"id": 0, "state": self.state, **({"trace": "org.postgresql.util.PSQLException: FATAL: password "
                                                          "authentication failed\n\tat ..."} if self.state == "FAILED"
                                                else {})}
        return httpx.Response(200, json={"connector": {"state": "RUNNING"}, "tasks": [task]})


def test_a_kept_capture_whose_task_failed_is_restarted_and_named_until_it_runs_and_one_lost_is_registered_again():
    """Connect leaves a failed task failed: its topic went quiet, every held invoice stayed held,
    and /readyz said ready."""
    import httpx

    from connectors.debezium import MarketplaceCapture
    from connectors.debezium.config import KeptRunning
    from rules.errors import Unavailable

    connect, now = ConnectAnswering(), [0.0]
    kept = KeptRunning("http://connect", MarketplaceCapture(name="mp", database_url="postgresql://u:p@db/m"),
                       transport=httpx.MockTransport(connect), clock=lambda: now[0])
    kept()
    kept()
    assert connect.asked == ["PUT /connectors/mp/config", "GET /connectors/mp/status"]
    connect.state = "FAILED"
    with pytest.raises(Unavailable, match=r"mp failed \(org.postgresql.util.PSQLException: FATAL: password "
                                          r"authentication failed\); Connect was asked to restart it") as down:
        kept()
    assert down.value.dependency == "connect" and connect.asked[-1] == "POST /connectors/mp/restart"
    now[0] = 10.0  # the runtime tries a failed source again within seconds: Connect is asked to restart it once
    with pytest.raises(Unavailable):
        kept()
    now[0] = 31.0
    with pytest.raises(Unavailable):
        kept()
    assert connect.asked.count("POST /connectors/mp/restart") == 2
    connect.registered, connect.asked = False, []  # deleted, or Connect's config topic lost
    kept()
    assert connect.asked == ["GET /connectors/mp/status", "PUT /connectors/mp/config"]


def test_a_table_that_stops_keeping_whole_rows_after_the_capture_started_is_named_at_the_next_status_check():
    """Checked only before the registration: a DBA who set the table back to REPLICA IDENTITY
    DEFAULT while the worker ran left every vendor's deletion without its PO number, each
    dead-lettered, the withdrawn invoice entered and paid, and /readyz said ready."""
    import httpx

    from connectors.debezium.config import KeptRunning
    from rules.errors import Unavailable

    identity, checked = ["f"], []

    def full_rows_kept() -> None:  # as agents.ingest wires replica_identity_problem: one query a check
        checked.append(identity[0])
        if identity[0] != "f":
            raise Unavailable("marketplace", "ALTER TABLE public.marketplace_invoices REPLICA IDENTITY FULL")

    connect = ConnectAnswering()
    kept = KeptRunning("http://connect", MarketplaceCapture(name="mp", database_url="postgresql://u:p@db/m"),
                       full_rows_kept, transport=httpx.MockTransport(connect))
    kept()
    kept()
    identity[0] = "d"
    for _ in range(2):
        with pytest.raises(Unavailable, match="REPLICA IDENTITY FULL") as down:
            kept()
        assert down.value.dependency == "marketplace"
    identity[0] = "f"
    kept()
    assert checked == ["f", "f", "d", "d", "f"]  # once a check, however long the capture runs
    assert connect.asked.count("PUT /connectors/mp/config") == 1  # the running capture is left as it is
