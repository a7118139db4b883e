"""Debezium change events of Sampro's PO tables, as either connector writes them, become one
`PurchaseOrderChanged` of their PO, with the id the poller gives the same change; the Debezium
flow puts them on sampro.changes keyed by PO and dead-letters what is not such an event."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from connectors.debezium import SamproRecordError, decode_sampro_record
from connectors.debezium.config import CHECK_EVERY_SECONDS
from connectors.rpa_mail import InMemoryRpaMailer
from connectors.sampro import InMemoryPurchaseOrderReader
from connectors.sampro.changes import change_id
from connectors.sampro.tables import SamproNames
from connectors.scheduler import InMemoryProcessScheduler
from rules.lifecycle import PurchaseOrderChanged
from schemas.codec import SingleObjectCodec
from streams.bootstrap import bootstrap
from streams.broker_memory import InMemoryBroker
from streams.settings import Settings

UPDATED = "2026-11-20T10:00:00.123456Z"  # a timestamptz column: Debezium's ZonedTimestamp
UPDATED_AT = datetime(2026, 11, 20, 10, 0, 0, 123456, tzinfo=UTC)
COMMITTED_MS = 1_795_700_000_000  # source.ts_ms, later than UPDATED
COMMITTED_AT = datetime.fromtimestamp(COMMITTED_MS / 1000, tz=UTC)
HEADER = {"po_number": "PO-5001", "vendor_id": "V100", "status": "open", "currency": "USD", "order_date": 20393,
          "tax_rate": "0.080000", "allowed_charges": "freight", "updated_at": UPDATED}
LINE = {"po_number": "PO-5001", "line_no": 1, "part_number": "AC-100", "unit_price": "15.5000",
        "quantity_ordered": "5.0000", "quantity_received": "5.0000", "quantity_invoiced": "0.0000",
        "updated_at": UPDATED}


def envelope(table: str, op: str, before: dict | None, after: dict | None, connector: str = "postgresql",
             schema: str = "public") -> dict:
    return {"before": before, "after": after, "op": op, "ts_ms": COMMITTED_MS + 40, "transaction": None,
            "source": {"version": "3.6.1.Final", "connector": connector, "name": "invoice-automation-sampro",
                       "ts_ms": COMMITTED_MS, "snapshot": "false", "db": "sampro", "schema": schema,
                       "table": table}}


def decoded_one(value: bytes | None, *names) -> PurchaseOrderChanged:
    (change,) = decode_sampro_record(value, *names)
    return change


def encoded(event: dict) -> bytes:
    return json.dumps(event).encode()


def assert_change(change: PurchaseOrderChanged | None, po_number: str, at: datetime) -> None:
    assert isinstance(change, PurchaseOrderChanged)
    assert (change.po_number, change.changed_at) == (po_number, at)
    assert change.event_id == change_id(po_number, at)


@pytest.mark.parametrize(("table", "row"), [("po_header", HEADER), ("po_line", LINE)])
@pytest.mark.parametrize("op", ["c", "r"])
def test_an_inserted_or_snapshot_row_is_a_change_at_its_updated_at(table, row, op):
    assert_change(decoded_one(encoded(envelope(table, op, None, row))), "PO-5001", UPDATED_AT)


def test_a_line_price_update_is_a_change_of_its_po_with_the_pollers_event_id():
    # PostgreSQL's default replica identity: no `before` on an update.
    event = envelope("po_line", "u", None, {**LINE, "unit_price": "15.0000", "updated_at": "2026-11-21T08:30:00Z"})
    change = decoded_one(encoded(event))
    assert_change(change, "PO-5001", datetime(2026, 11, 21, 8, 30, tzinfo=UTC))
    assert change.event_id == "sampro:PO-5001:1795249800000000"  # to the microsecond, as the poller names it


def test_a_header_update_on_sql_server_reads_updated_at_as_connect_milliseconds():
    millis = int(UPDATED_AT.timestamp() * 1000)  # a datetime2 column under time.precision.mode=connect
    before, after = {**HEADER, "updated_at": millis - 60_000}, {**HEADER, "status": "closed", "updated_at": millis}
    change = decoded_one(encoded(envelope("po_header", "u", before, after, "sqlserver", "dbo")))
    assert_change(change, "PO-5001", datetime.fromtimestamp(millis / 1000, tz=UTC))


def test_an_update_that_left_updated_at_alone_is_a_change_at_its_commit_time():
    # Else it would take the id of the change that last set updated_at, and be dropped as applied.
    event = envelope("po_line", "u", LINE, {**LINE, "unit_price": "15.0000"}, "sqlserver", "dbo")
    assert_change(decoded_one(encoded(event)), "PO-5001", COMMITTED_AT)


def test_a_row_without_updated_at_is_a_change_at_its_commit_time():
    row = {key: value for key, value in LINE.items() if key != "updated_at"}
    assert_change(decoded_one(encoded(envelope("po_line", "c", None, row))), "PO-5001", COMMITTED_AT)


@pytest.mark.parametrize("before", [{"po_number": "PO-5001", "line_no": 2}, LINE],
                         ids=["key columns only", "the whole row"])
def test_a_deleted_line_is_a_change_of_its_po_at_the_commit_time(before):
    assert_change(decoded_one(encoded(envelope("po_line", "d", before, None))), "PO-5001", COMMITTED_AT)


def test_a_deleted_header_is_a_change_of_its_po():
    event = envelope("po_header", "d", {"po_number": "PO-5001"}, None)
    assert_change(decoded_one(encoded(event)), "PO-5001", COMMITTED_AT)


def in_transaction(event: dict, **position: object) -> dict:
    return {**event, "source": {**event["source"], **position}}


def test_two_transactions_that_left_one_updated_at_are_two_changes_and_one_transactions_rows_one():
    """Two receipts in one second on a datetime2(0) column had one id: the PO agent took the second
    for the first, applied already, and the invoice it would clear stayed held."""
    seconds = int(UPDATED_AT.timestamp()) * 1000
    first, second, header = (
        in_transaction(envelope(table, "u", {**row, "updated_at": seconds - 60_000}, {**row, "updated_at": seconds},
                                "sqlserver", "dbo"), commit_lsn=lsn)
        for table, row, lsn in (("po_line", LINE, "0000002A:00000758:0003"),
                                ("po_line", {**LINE, "line_no": 2}, "0000002b:00000010:0002"),
                                ("po_header", HEADER, "0000002b:00000010:0002")))
    ids = [decoded_one(encoded(event)).event_id for event in (first, second, header)]
    assert ids[0] == f"sampro:PO-5001:{seconds}@0000002a:00000758:0003"
    assert ids[1] != ids[0] and ids[2] == ids[1]  # the header and line rows of one transaction: one change
    on_postgres = [decoded_one(encoded(in_transaction(envelope("po_line", "u", None, LINE), txId=tx)))
                   for tx in (901, 902)]
    assert [change.event_id.rsplit("@", 1)[1] for change in on_postgres] == ["901", "902"]


def test_a_snapshot_read_keeps_the_pollers_id_whatever_its_transaction():
    read = in_transaction(envelope("po_line", "r", None, LINE, "sqlserver", "dbo"), commit_lsn="0000002a:0:1")
    assert_change(decoded_one(encoded(read)), "PO-5001", UPDATED_AT)


def test_a_tombstone_is_nothing_to_do():
    assert decode_sampro_record(None) == ()


def test_renamed_tables_and_columns_are_read_as_sampro_names_says():
    names = SamproNames(schema_name="dbo", po_header="POHDR", po_line="POLIN", columns={"updated_at": "CHGDATE"},
                        po_header_columns={"po_number": "PONUM"}, po_line_columns={"po_number": "PO_NO"})
    header = {"PONUM": "PO-7001", "VENDNO": "V1", "CHGDATE": UPDATED}
    line = {"PO_NO": "PO-7002", "LINENO": 3, "CHGDATE": "2026-11-21T08:30:00Z"}
    assert_change(decoded_one(encoded(envelope("POHDR", "u", None, header, "sqlserver", "dbo")), names),
                  "PO-7001", UPDATED_AT)
    assert_change(decoded_one(encoded(envelope("POLIN", "c", None, line, "sqlserver", "dbo")), names),
                  "PO-7002", datetime(2026, 11, 21, 8, 30, tzinfo=UTC))
    # SQL Server names compare without case; a CHAR(n) PO number comes padded.
    padded = {"ponum": "PO-7001   ", "chgdate": UPDATED}
    assert_change(decoded_one(encoded(envelope("pohdr", "u", None, padded, "sqlserver", "dbo")), names),
                  "PO-7001", UPDATED_AT)


def test_a_converter_that_keeps_its_schemas_wraps_the_same_envelope():
    wrapped = {"schema": {"type": "struct"}, "payload": envelope("po_line", "c", None, LINE)}
    assert_change(decoded_one(encoded(wrapped)), "PO-5001", UPDATED_AT)


@pytest.mark.parametrize(
    ("value", "field", "says"),
    [
        (b"\x00\x01garbage", "value", "JSON"),
        (b"[1, 2]", "value", "not a Debezium change event"),
        # A flattened record (ExtractNewRecordState), as the marketplace capture writes: not an envelope.
        (encoded({**LINE, "__op": "u", "__deleted": "false"}), "op", "not a Debezium change event"),
        (encoded({**envelope("po_line", "c", None, LINE), "op": "t"}), "op", "expected op c, u, d or r"),
        (encoded({**envelope("po_line", "c", None, LINE), "source": None}), "source", "source object"),
        (encoded(envelope("ap_invoice", "c", None, LINE)), "source.table", "not the PO header or line table"),
        (encoded(envelope("po_line", "u", None, None)), "after", "the changed row is missing"),
        (encoded(envelope("po_line", "d", None, None)), "before", "the changed row is missing"),
        (encoded(envelope("po_line", "c", None, {**LINE, "po_number": None})), "after.po_number", "missing"),
        (encoded(envelope("po_line", "c", None, {**LINE, "po_number": "P" * 65})), "after.po_number", "65"),
        (encoded(envelope("po_line", "c", None, {**LINE, "po_number": "PO\r\n1"})), "after.po_number", "control"),
        (encoded(envelope("po_line", "c", None, {**LINE, "updated_at": "yesterday"})), "after.updated_at", "ISO"),
        (encoded(envelope("po_line", "c", None, {**LINE, "updated_at": [1]})), "after.updated_at", "not a time"),
        (encoded({**envelope("po_line", "d", LINE, None), "source": {"table": "po_line"}}), "source.ts_ms",
         "not a time"),
        (encoded(in_transaction(envelope("po_line", "u", None, LINE), commit_lsn="lsn; DROP")), "source.commit_lsn",
         "not a SQL Server log sequence number"),
        (encoded(in_transaction(envelope("po_line", "u", None, LINE), txId="9")), "source.txId",
         "not a PostgreSQL transaction id"),
    ],
)
def test_what_is_not_a_change_event_of_a_po_table_raises_naming_the_field(value, field, says):
    with pytest.raises(SamproRecordError) as caught:
        decoded_one(value)
    assert caught.value.field == field and repr(field) in str(caught.value) and says in str(caught.value)


def test_the_flow_puts_each_change_on_sampro_changes_keyed_by_po_and_dead_letters_the_rest(tmp_path):
    settings = Settings(data_dir=tmp_path, marketplace_source="debezium", sampro_changes="debezium", _env_file=None)
    broker = InMemoryBroker(partitions=2)
    pipeline = bootstrap(settings, broker=broker, purchase_orders=InMemoryPurchaseOrderReader([]),
                         scheduler=InMemoryProcessScheduler(), mailer=InMemoryRpaMailer())
    assert pipeline.sampro_changes is None  # nothing polls Sampro
    assert "ingest-sampro-cdc" in [flow.name for flow in pipeline.runtime.flows]
    assert not [source.name for source in pipeline.runtime.sources if "sampro" in source.name]  # no CONNECT_URL
    line_update = envelope("po_line", "u", None, {**LINE, "unit_price": "15.0000"})
    broker.append("sampro.cdc", b'{"po_number":"PO-5001","line_no":1}', encoded(line_update))
    broker.append("sampro.cdc", b'{"po_number":"PO-5001","line_no":1}', None)  # a tombstone
    broker.append("sampro.cdc", b'{"po_number":"PO-5001","line_no":1}', b'{"after": {}}')
    runtime = pipeline.runtime
    runtime.start()
    for _ in range(100):  # on the real clock: a loaded machine took more than five steps to read them
        runtime.step()
        if broker.records("sampro.changes") and broker.records("invoices.dlq"):
            break

    published = broker.records("sampro.changes")
    assert [record.key for record in published] == [b"PO-5001"]
    assert_change(SingleObjectCodec().decode(published[0].value), "PO-5001", UPDATED_AT)
    letters = [dict(record.headers) for record in broker.records("invoices.dlq")]
    assert len(letters) == 1 and b"'op'" in letters[0]["error"]


def test_with_connect_the_capture_is_registered_at_start_and_watched(tmp_path):
    settings = Settings(data_dir=tmp_path, marketplace_source="debezium", sampro_changes="debezium", connect_url="http://127.0.0.1:9",
                        sampro_db_url="postgresql+psycopg://u:p@db:5432/sampro",
                        marketplace_db_url="postgresql+psycopg://u:p@db:5432/marketplace", _env_file=None)
    pipeline = bootstrap(settings, broker=InMemoryBroker(partitions=1),
                         purchase_orders=InMemoryPurchaseOrderReader([]), scheduler=InMemoryProcessScheduler(),
                         mailer=InMemoryRpaMailer())
    [source] = [source for source in pipeline.runtime.sources if source.name == "sampro-capture"]
    assert not source.once and source.interval == CHECK_EVERY_SECONDS and source.anchor == ("invoices", 0)


def test_a_sampro_debezium_cannot_capture_stops_the_worker_at_start(tmp_path):
    settings = Settings(data_dir=tmp_path, marketplace_source="debezium", sampro_changes="debezium", connect_url="http://127.0.0.1:9",
                        sampro_db_url=f"sqlite:///{tmp_path}/sampro.db",
                        marketplace_db_url="postgresql+psycopg://u:p@db:5432/marketplace", _env_file=None)
    with pytest.raises(ValueError, match="PostgreSQL or SQL Server, not sqlite"):
        bootstrap(settings, broker=InMemoryBroker(partitions=1), purchase_orders=InMemoryPurchaseOrderReader([]),
                  scheduler=InMemoryProcessScheduler(), mailer=InMemoryRpaMailer())


def test_an_update_that_moves_a_line_to_another_po_is_a_change_of_both():
    """Only the PO it went to was judged again: the one it left (held, say, for that line's
    duplicate line number) waited for its next change."""
    after = {**LINE, "updated_at": "2026-11-21T08:30:00Z"}
    moved = envelope("po_line", "u", {**LINE, "po_number": "PO-4001   "}, after, "sqlserver", "dbo")
    changes = decode_sampro_record(encoded(moved))
    assert [change.po_number for change in changes] == ["PO-5001", "PO-4001"]
    assert changes[0].event_id != changes[1].event_id and changes[0].changed_at == changes[1].changed_at
    kept = envelope("po_line", "u", {**LINE, "unit_price": "1.0000"}, LINE, "sqlserver", "dbo")
    assert [change.po_number for change in decode_sampro_record(encoded(kept))] == ["PO-5001"]


@pytest.mark.parametrize("left", ["", "          ", "x" * 300])
def test_a_line_moved_off_a_po_whose_number_cannot_key_a_stream_is_a_change_of_the_po_it_went_to(left, caplog):
    """The whole event was dead-lettered for the PO number it left (blank, or a CHAR of blanks):
    the invoices held on the PO it went to were not judged again. The SQL poller passes such a
    PO number over, saying so, and goes on with the other."""
    moved = envelope("po_line", "u", {**LINE, "po_number": left}, LINE, "sqlserver", "dbo")
    assert [change.po_number for change in decode_sampro_record(encoded(moved))] == ["PO-5001"]
    assert "before.po_number" in caplog.text and "passed over" in caplog.text
