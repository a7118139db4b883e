"""The marketplace's invoice table, as vendors' uploads land in it.

Header columns mirror the canonical invoice (DESIGN §3); lines and extra charges are JSON.
`version` grows with every vendor edit and `updated_at` moves with it; together with
`invoice_id` they drive both the Debezium capture and the SQL polling source. Vendors' data
may be incomplete, so only the keys are required: the rules report what is missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Date,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    func,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from connectors.sql import ExactNumeric
from rules.errors import DataError
from rules.limits import Limits, control_character, load_json
from rules.parsing import UNREADABLE_COLUMN


class StampedNow(FunctionElement[datetime]):
    """The time a row is stamped with when the marketplace gives none: now(); on SQLite the present
    to the millisecond, written as SQLAlchemy writes a time there (microseconds), where
    CURRENT_TIMESTAMP kept whole seconds, and the rows of one second sorted before the watermark;
    on SQL Server UTC (`_utc_to_the_microsecond`)."""

    type = DateTime(timezone=True)
    name = "stamped_now"
    inherit_cache = True


@compiles(StampedNow)
def _now(_element: StampedNow, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(func.now(), **kw)


@compiles(StampedNow, "mssql")
def _utc_to_the_microsecond(_element: StampedNow, _compiler: SQLCompiler, **_kw: Any) -> str:
    # SQL Server's now(), CURRENT_TIMESTAMP, is the server's local time, which a DATETIMEOFFSET
    # column takes as +00:00, hours off the UTC the poller compares with (SYSUTCDATETIME()): west
    # of UTC, the hour a daylight-saving fall-back stamps again lay behind the watermark, and its
    # uploads were never read. In UTC, as every stamp the poller keeps is (it compares their text),
    # to the microsecond a time is read back with (pyodbc drops the tenth of one SYSUTCDATETIME()
    # keeps: a row stamped so would be read again at every poll, being after the watermark it made).
    return "CAST(SYSUTCDATETIME() AS DATETIMEOFFSET(6))"


@compiles(StampedNow, "sqlite")
def _now_to_the_millisecond(_element: StampedNow, compiler: SQLCompiler, **kw: Any) -> str:
    return compiler.process(func.strftime("%Y-%m-%d %H:%M:%f000", "now"), **{**kw, "literal_binds": True})


metadata = MetaData()

marketplace_invoices = Table(
    "marketplace_invoices",
    metadata,
    Column("invoice_id", String(64), primary_key=True),
    Column("version", Integer, nullable=False, server_default="1"),
    Column("vendor_id", String(64)),
    Column("invoice_number", String(64)),
    Column("po_number", String(64), nullable=False, index=True),
    Column("invoice_date", Date),
    Column("currency", String(3)),
    Column("lines", JSON, nullable=False),
    # Read as the vendor wrote it: on SQLite a tax of 1.00005 was read 1.0001, and the rules judged a
    # number the vendor never sent (they refuse a fifth digit after the point, naming it).
    Column("tax_amount", ExactNumeric(18, 4), nullable=False, server_default="0"),
    Column("extra_charges", JSON, nullable=False, server_default="[]"),
    Column("total_amount", ExactNumeric(18, 4)),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=StampedNow()),
)


HEADER_FIELDS = ("invoice_id", "version", "vendor_id", "invoice_number", "po_number", "invoice_date", "currency",
                 "tax_amount", "total_amount")


def invoice_document(header: Mapping[str, Any], lines: Any, extra_charges: Any, limits: Limits) -> dict[str, Any]:
    """The canonical invoice (DESIGN §3) of a marketplace row, whichever source read it: a NULL
    column is left out, as Debezium leaves it. (Polling kept it as null, and a vendor got "should be
    a valid string" from one source and "Field required" from the other for the same row.)"""
    document = {field: _column_value(field, header[field]) for field in HEADER_FIELDS if header.get(field) is not None}
    document["lines"] = read_json_column(lines, [], limits)
    document["extra_charges"] = read_json_column(extra_charges, [], limits)
    _as_decimal_text([document], ("tax_amount", "total_amount"))
    _as_decimal_text(document["lines"], ("quantity", "unit_price", "amount"))
    _as_decimal_text(document["extra_charges"], ("amount",))
    return document


def _as_decimal_text(items: Any, fields: tuple[str, ...]) -> None:
    """Money and quantities as decimal text, as DESIGN §3 has them on the wire ("15.50"): Debezium
    gives the numeric columns as text, polling as Decimals, and a JSON column holds numbers. Only
    these fields: a number where the invoice has text (a description of 2.5) stays a number, which
    the rules refuse as `validate` does."""
    if not isinstance(items, list):
        return  # a note of why the column could not be read, for the rules to report
    for item in items:
        if isinstance(item, dict):
            for field in fields:
                value = item.get(field)
                if isinstance(value, Decimal) or type(value) is int:  # not a bool
                    item[field] = str(value)


def _column_value(field: str, value: Any) -> Any:
    """SQLite keeps a BLOB in a TEXT column: bytes that are UTF-8 are that text; others make the row
    unreadable, naming the column (written into the invoice, they became base64 text)."""
    if not isinstance(value, bytes):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{field} holds bytes that are no UTF-8 text (a BLOB in a text column): "
                        f"{value[:40]!r}") from None


def read_json_column(value: Any, default: Any, limits: Limits) -> Any:
    """A lines or extra_charges column: its JSON, or, when it cannot be read within the limits,
    a short note of why, which the rules report as INVALID_INVOICE on that field."""
    if value is None:
        return default
    if not isinstance(value, str | bytes):  # a driver that already parsed it
        return value
    try:
        return load_json(value, limits, "column")
    except DataError as exc:
        return f"{UNREADABLE_COLUMN}{str(exc).removeprefix('column: ')}"


def stream_key_problem(value: Any, limits: Limits) -> str | None:
    """Why a value cannot be the invoice id or PO number a record is keyed and stored by."""
    if not isinstance(value, str) or not value.strip():
        return "missing or not text"
    if len(value) > limits.max_identifier_length:
        return f"{len(value):,} characters; at most {limits.max_identifier_length}"
    # SQL Server's NVARCHAR(64) counts UTF-16 units: 40 emoji are 80, and the invoice's only
    # processscheduler row was refused there, dead-lettered, where PostgreSQL took it.
    units = len(value) if value.isascii() else len(value.encode("utf-16-le", "surrogatepass")) // 2
    if units > limits.max_identifier_length:
        return (f"{len(value):,} characters but {units:,} UTF-16 units, as SQL Server counts them; "
                f"at most {limits.max_identifier_length}")
    if (character := control_character(value)) is not None:
        return f"contains the control character {character}"
    if value in (".", ".."):  # a path step to every browser and HTTP client: its page could not be reached
        return "a path step, not an id"
    return None
