"""Turning one flattened Debezium record into the canonical invoice event.

Only what cannot be mapped at all fails here (not JSON within the size and nesting limits, no
usable invoice id, PO number or version, an unknown operation): that record is dead-lettered.
The rules, not the transport, judge whether an invoice breaks its contract, so every other
oddity (a lines column that is not JSON included) flows on inside the document.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

from connectors.marketplace_table import HEADER_FIELDS, invoice_document, stream_key_problem
from rules.errors import DataError
from rules.lifecycle import InvoiceSubmitted, InvoiceWithdrawn
from rules.limits import Limits, load_json
from rules.models import MAX_VERSION

EPOCH = date(1970, 1, 1)


class MarketplaceRecordError(DataError):
    """A marketplace record that cannot be read at all; names the field and the value."""

    def __init__(self, field: str, value: Any, reason: str):
        self.field, self.value, self.reason = field, value, reason
        shown = repr(value) if len(repr(value)) <= 120 else repr(value)[:117] + "..."
        super().__init__(f"marketplace record field {field!r}: {reason} (value {shown})")


def _date(value: Any) -> Any:
    """io.debezium.time.Date is days since the epoch; anything else is left for the rules to judge."""
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return (EPOCH + timedelta(days=value)).isoformat()
        except OverflowError:  # past year 9999 or before year 1: the rules name the field and the value
            return value
    return value


def _changed_at(row: dict[str, Any]) -> datetime:
    millis = row.get("__source_ts_ms")
    if isinstance(millis, int):
        try:
            return datetime.fromtimestamp(millis / 1000, tz=UTC)
        except (OverflowError, OSError, ValueError):  # 10**17 ms, year 3170843: when it was read, as without one
            pass
    return datetime.now(UTC)


def _record_limits(limits: Limits) -> Limits:
    """A record carries the lines and charges columns as JSON text, each escaped (a quote is two
    bytes): each column is held to the invoice's limit on its own (`read_json_column`), as polling
    holds it, and the record has room for both. Held to the limit as a whole, lines of 235 kB made
    a record of 274 kB, dead-lettered, where polling judged the same invoice."""
    return replace(limits, max_json_bytes=4 * limits.max_json_bytes + 64_000)


def decode_marketplace_record(
    value: bytes | None, limits: Limits = Limits()
) -> InvoiceSubmitted | InvoiceWithdrawn | None:
    """None for a tombstone (nothing to do); raises MarketplaceRecordError for what cannot be mapped."""
    if value is None:
        return None
    try:
        row = load_json(value, _record_limits(limits), "marketplace record")
    except DataError as exc:
        raise MarketplaceRecordError("value", value[:80], str(exc).removeprefix("marketplace record: ")) from None
    if not isinstance(row, dict):
        raise MarketplaceRecordError("value", row, "expected a JSON object")
    for key in ("invoice_id", "po_number"):
        if (problem := stream_key_problem(row.get(key), limits)) is not None:
            raise MarketplaceRecordError(key, row.get(key), problem)
    version = row.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= MAX_VERSION:
        raise MarketplaceRecordError("version", version, f"not a whole number from 1 to {MAX_VERSION}")
    op = row.get("__op", "c")
    if op not in ("c", "u", "r", "d"):
        raise MarketplaceRecordError("__op", op, "unknown operation")
    at = _changed_at(row)
    if op == "d" or str(row.get("__deleted", "false")).lower() == "true":
        return InvoiceWithdrawn(invoice_id=row["invoice_id"], version=version, po_number=row["po_number"],
                                withdrawn_at=at)
    header = {field: row.get(field) for field in HEADER_FIELDS}
    if header["invoice_date"] is not None:
        header["invoice_date"] = _date(header["invoice_date"])
    document = invoice_document(header, row.get("lines"), row.get("extra_charges"), limits)
    return InvoiceSubmitted(invoice_id=row["invoice_id"], version=version, po_number=row["po_number"],
                            document=document, received_at=at)
