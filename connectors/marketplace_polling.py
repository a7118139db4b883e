"""SQL polling of the marketplace table: the embedded default, and the fallback where logical
replication is not allowed.

Rows are read by (updated_at, invoice_id) watermark. A row committed late with an older
`updated_at` is still found: each poll re-reads a look-back window and emits what it has not
emitted yet. What was emitted inside the window is remembered durably with the watermark (a
small JSON file), so a restart neither skips nor repeats a version. Deletes cannot be seen by
polling; withdrawals need the Debezium source.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Text, and_, cast, or_, select

from connectors.marketplace_table import marketplace_invoices as table
from rules.lifecycle import InvoiceSubmitted

_COLUMNS = [c for c in table.c if c.key not in ("lines", "extra_charges")]
# JSON columns as text: drivers parse JSON numbers into floats, and amounts must stay exact.
_JSON_AS_TEXT = [cast(table.c.lines, Text).label("lines"), cast(table.c.extra_charges, Text).label("extra_charges")]


def _utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _document(row: Any) -> dict[str, Any]:
    def parsed(text: str | None, default: Any) -> Any:
        try:
            return json.loads(text, parse_float=Decimal) if text else default
        except json.JSONDecodeError:
            return text  # the rules will report it as INVALID_INVOICE, naming the field

    return {
        "invoice_id": row.invoice_id, "version": row.version, "vendor_id": row.vendor_id,
        "invoice_number": row.invoice_number, "po_number": row.po_number,
        "invoice_date": row.invoice_date.isoformat() if row.invoice_date else None, "currency": row.currency,
        "lines": parsed(row.lines, []), "tax_amount": row.tax_amount,
        "extra_charges": parsed(row.extra_charges, []), "total_amount": row.total_amount,
    }


class PollingMarketplaceSource:
    def __init__(self, engine: Engine, state_file: Path, lookback_seconds: float = 300, batch_size: int = 1000):
        self.engine = engine
        self.state_file = state_file
        self.lookback = timedelta(seconds=lookback_seconds)
        self.batch_size = batch_size
        self._watermark, self._emitted = self._load()
        self._pending: tuple[tuple[datetime, str] | None, dict[str, list]] | None = None

    def _load(self) -> tuple[tuple[datetime, str] | None, dict[str, list]]:
        try:
            state = json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return None, {}
        mark = state.get("watermark")
        return ((datetime.fromisoformat(mark[0]), mark[1]) if mark else None), state.get("emitted", {})

    def poll(self) -> list[InvoiceSubmitted]:
        """New invoices and versions; call `commit()` once they are safely produced."""
        watermark, emitted = self._watermark, dict(self._emitted)
        events: list[InvoiceSubmitted] = []
        with self.engine.connect() as conn:
            rows = [row for query in self._queries(watermark) for row in conn.execute(query)]
        rows.sort(key=lambda row: (_utc(row.updated_at), row.invoice_id))
        for row in rows:
            updated_at = _utc(row.updated_at)
            known = emitted.get(row.invoice_id)
            if known is None or known[0] < row.version:
                events.append(InvoiceSubmitted(invoice_id=row.invoice_id, version=row.version,
                                               po_number=row.po_number, document=_document(row),
                                               received_at=updated_at))
                emitted[row.invoice_id] = [row.version, updated_at.isoformat()]
            if watermark is None or (updated_at, row.invoice_id) > watermark:
                watermark = (updated_at, row.invoice_id)
        if watermark is not None:
            horizon = (watermark[0] - self.lookback).isoformat()
            emitted = {k: v for k, v in emitted.items() if v[1] >= horizon}
        self._pending = (watermark, emitted)
        return events

    def commit(self) -> None:
        """Makes the last poll durable: written to a temp file, then renamed over the state."""
        if self._pending is None:
            return
        self._watermark, self._emitted = self._pending
        self._pending = None
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.state_file.with_suffix(".tmp")
        mark = [self._watermark[0].isoformat(), self._watermark[1]] if self._watermark else None
        temporary.write_text(json.dumps({"watermark": mark, "emitted": self._emitted}))
        os.replace(temporary, self.state_file)

    def _queries(self, watermark: tuple[datetime, str] | None) -> list:
        """The next page of new rows, and the look-back window behind the watermark (late commits)."""
        columns = (*_COLUMNS, *_JSON_AS_TEXT)
        order = (table.c.updated_at, table.c.invoice_id)
        if watermark is None:
            return [select(*columns).order_by(*order).limit(self.batch_size)]
        since, invoice_id = watermark
        newer = or_(table.c.updated_at > since, and_(table.c.updated_at == since, table.c.invoice_id > invoice_id))
        return [
            select(*columns).where(newer).order_by(*order).limit(self.batch_size),
            select(*columns).where(table.c.updated_at >= since - self.lookback, ~newer),
        ]
