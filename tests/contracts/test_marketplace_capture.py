"""One contract for the two ways a marketplace row becomes a canonical invoice event: the SQL
polling source (on SQLite and PostgreSQL) and the Debezium record decoder (the row as the
connector's flattened JSON record, connectors.debezium.config). The same row gives the same
event: the same identity, and the same invoice and findings as the rules read the document."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import insert

from connectors.debezium import decode_marketplace_record
from connectors.debezium.decoder import EPOCH
from connectors.marketplace_polling import PollingMarketplaceSource
from connectors.marketplace_table import marketplace_invoices, metadata
from connectors.watermarks import FileWatermark
from rules.lifecycle import InvoiceSubmitted
from rules.parsing import read_invoice

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
LINES = [{"line_no": 1, "part_number": "AC-100", "description": "Compressor", "quantity": 2, "unit_price": 15.50,
          "amount": "31.00"},
         {"line_no": 2, "part_number": "FL-200", "quantity": "3", "unit_price": "4.25"}]


def row(invoice_id: str, **changes: Any) -> dict[str, Any]:
    return {"invoice_id": invoice_id, "version": 1, "vendor_id": "V100", "invoice_number": f"N-{invoice_id}",
            "po_number": "PO-1", "invoice_date": date(2026, 11, 20), "currency": "USD", "lines": LINES,
            "tax_amount": Decimal("3.50"), "extra_charges": [{"kind": "freight", "amount": "10.00"}],
            "total_amount": Decimal("57.25"), "updated_at": T0, **changes}


ROWS = {
    "complete": row("A"),
    "a later version": row("B", version=3),
    "no vendor, currency or total": row("C", vendor_id=None, currency=None, total_amount=None),
    "no date and no lines": row("D", invoice_date=None, lines=[]),
    "amounts to the column's four places": row("E", tax_amount=Decimal("0.0049"), total_amount=Decimal("43.4849")),
}


class MarketplaceCaptureContract:
    @pytest.fixture
    def events_of(self):
        """rows -> the canonical events the source makes of them."""
        raise NotImplementedError

    @pytest.mark.parametrize("name", ROWS)
    def test_the_same_row_gives_the_same_canonical_event(self, events_of, name):
        source_row = ROWS[name]
        (event,) = events_of([source_row])
        assert isinstance(event, InvoiceSubmitted)
        assert (event.invoice_id, event.version, event.po_number) == (
            source_row["invoice_id"], source_row["version"], source_row["po_number"])
        assert self.as_judged(event.document) == self.as_judged(canonical(source_row))

    @staticmethod
    def as_judged(document: dict[str, Any]) -> tuple[Any, list[tuple[str, str | None, int | None]]]:
        invoice, findings = read_invoice(document)
        return invoice, sorted((f.code, f.field, f.line_no) for f in findings)


def canonical(source_row: dict[str, Any]) -> dict[str, Any]:
    """The row as DESIGN §3's canonical invoice: absent where the vendor left it empty."""
    document = {key: value for key, value in source_row.items() if key != "updated_at" and value is not None}
    if "invoice_date" in document:
        document["invoice_date"] = document["invoice_date"].isoformat()
    return document


class PollingContract(MarketplaceCaptureContract):
    @pytest.fixture
    def engine(self):
        raise NotImplementedError

    @pytest.fixture
    def events_of(self, engine, tmp_path):
        metadata.create_all(engine)

        def events(rows: list[dict[str, Any]]) -> list[Any]:
            with engine.begin() as conn:
                conn.execute(insert(marketplace_invoices), rows)
            return PollingMarketplaceSource(engine, FileWatermark(tmp_path / "watermark.json")).poll().events

        return events


class TestPollingOnSqlite(PollingContract):
    @pytest.fixture
    def engine(self, sqlite_engine):
        return sqlite_engine


class TestPollingOnPostgres(PollingContract):
    @pytest.fixture
    def engine(self, marketplace_pg_engine):
        return marketplace_pg_engine


def debezium_record(source_row: dict[str, Any], op: str = "c") -> bytes:
    """The row as the connector writes it: ExtractNewRecordState with op, lsn and source.ts_ms added,
    decimals as strings at the column's scale, dates as days since the epoch, JSON columns as text,
    timestamps as ZonedTimestamp strings."""

    def value(column: str, cell: Any) -> Any:
        if cell is None:
            return None
        if column in ("tax_amount", "total_amount"):
            return format(Decimal(cell).quantize(Decimal("0.0001")), "f")
        if column == "invoice_date":
            return (cell - EPOCH).days
        if column in ("lines", "extra_charges"):
            return json.dumps(cell)
        if column == "updated_at":
            return cell.isoformat().replace("+00:00", "Z")
        return cell

    record = {column: value(column, cell) for column, cell in source_row.items()}
    at = source_row["updated_at"] + timedelta(milliseconds=5)
    record.update({"__deleted": "false", "__op": op, "__lsn": 1234, "__source_ts_ms": int(at.timestamp() * 1000)})
    return json.dumps(record).encode()


class TestDebeziumDecoder(MarketplaceCaptureContract):
    @pytest.fixture
    def events_of(self):
        return lambda rows: [decode_marketplace_record(debezium_record(r)) for r in rows]
