"""Sampro's tables as SQLAlchemy Core objects, with installation-specific names.

Column keys stay canonical in code (`c.po_number`); only the names sent to the database come
from `SamproNames`, so the same queries run on SQL Server, PostgreSQL and SQLite.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from sqlalchemy import Column, ColumnElement, Date, DateTime, Dialect, Index, Integer, MetaData, String, Table, func
from sqlalchemy.dialects import mssql
from sqlalchemy.types import TypeDecorator, TypeEngine

from connectors.sql import ExactNumeric

MONEY = ExactNumeric(18, 4)


class SamproTime(TypeDecorator[datetime]):
    """When a row last changed, as the change poller compares it. On SQL Server a time is sent as a
    naive UTC datetime2 parameter: sent with its zone, it went as text with an offset, which a
    DATETIME or DATETIME2 column (what GETDATE() fills) does not convert from (Msg 241), and every
    poll failed. A DATETIMEOFFSET column takes the naive value as UTC. Elsewhere it keeps its zone:
    PostgreSQL would read a naive one in the session's time zone."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        return dialect.type_descriptor(DateTime() if dialect.name == "mssql" else DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is not None and dialect.name == "mssql":
            return value.astimezone(UTC).replace(tzinfo=None)
        return value
TABLES = ("po_header", "po_line", "ap_invoice")


ColumnName = Annotated[str, StringConstraints(min_length=1, max_length=128)]

StampClock = Literal["later", "utc", "local"]
"""The database clock Sampro stamps `updated_at` with, as `SAMPRO_CLOCK` names it: "local" for
GETDATE(), "utc" for SYSUTCDATETIME(), "later" for the later of the two (all three the same on a
server on UTC). The change poller (connectors/sampro/changes.py) takes its look-back window before
it: Sampro's local time, read as UTC like every naive time, is hours before UTC west of it, where
a window before UTC held no row so stamped (a row committed late was never read, nor the hour a
daylight-saving fall-back stamps again behind the cursor). Taken around both clocks, a change
stamped in one was read again by the other's span hours later, forgotten by then, and sent again.
Across a spring-forward, a row stamped in the look-back before it and committed after it is missed."""


class SamproNames(BaseModel):
    """Table names, and column renames for installations whose Sampro differs (canonical -> actual).

    `columns` renames a column in every table that has it (the older, single form);
    `po_header_columns`, `po_line_columns` and `ap_invoice_columns` rename it in that table alone
    and win over `columns`, since a header and a line table often name their PO column differently.
    """

    # A misspelt key would otherwise leave a rename silently unapplied.
    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_name: str | None = Field(default=None, min_length=1, max_length=256)  # e.g. "dbo" on SQL Server
    po_header: str = Field(default="po_header", min_length=1, max_length=128)
    po_line: str = Field(default="po_line", min_length=1, max_length=128)
    ap_invoice: str = Field(default="ap_invoice", min_length=1, max_length=128)
    columns: dict[str, ColumnName] = Field(default_factory=dict)
    po_header_columns: dict[str, ColumnName] = Field(default_factory=dict)
    po_line_columns: dict[str, ColumnName] = Field(default_factory=dict)
    ap_invoice_columns: dict[str, ColumnName] = Field(default_factory=dict)
    # Sampro's text columns are NVARCHAR (SQL Server): the reads send their values as NVARCHAR too.
    # Sent as VARCHAR (what VARCHAR columns' indexes serve), a character outside the database's
    # code page (Cyrillic, CJK, Polish ł) did not reach SQL Server as itself: the PO was not found,
    # or a resend of an entered invoice was not, and was paid twice.
    unicode_text: bool = False

    def column(self, table: str, key: str) -> str:
        """The name `table`'s canonical column `key` has in this Sampro."""
        renamed: dict[str, str] = getattr(self, f"{table}_columns")
        return renamed.get(key, self.columns.get(key, key))

    @model_validator(mode="after")
    def _renames_name_canonical_columns(self) -> SamproNames:
        keys = _canonical_columns()
        every = set().union(*keys.values())
        for field, wanted, known in [("columns", self.columns, every)] + [
                (f"{table}_columns", getattr(self, f"{table}_columns"), keys[table]) for table in TABLES]:
            for key in sorted(set(wanted) - known):
                close = difflib.get_close_matches(key, sorted(known), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; the columns are {', '.join(sorted(known))}"
                raise ValueError(f"{field}: {key!r} is not a canonical Sampro column{hint}")
        tables = [getattr(self, table) for table in TABLES]
        if shared := next((name for name in tables if tables.count(name) > 1), None):
            # One table read as two: SQLAlchemy refused it at start with a traceback naming no setting.
            named = [table for table in TABLES if getattr(self, table) == shared]
            raise ValueError(f"{', '.join(named[:-1])} and {named[-1]} name the same table {shared!r}: each needs "
                             "a table of its own")
        for table in TABLES:  # two columns of one table under one name: the table could not be read
            names = [self.column(table, key) for key in sorted(keys[table])]
            if len(set(names)) != len(names):
                twice = next(name for name in names if names.count(name) > 1)
                raise ValueError(f"{table}: two columns are renamed to {twice!r}")
        return self


@cache
def _canonical_columns() -> dict[str, set[str]]:
    canonical = SamproNames.model_construct()  # no renames; constructed without validation, which calls this
    return {table: set(_table(table, MetaData(), canonical).c.keys()) for table in TABLES}


@dataclass(frozen=True)
class SamproTables:
    metadata: MetaData
    po_header: Table
    po_line: Table
    ap_invoice: Table


def _table(table: str, metadata: MetaData, names: SamproNames) -> Table:
    def col(key: str, *args: Any, **kwargs: Any) -> Column[Any]:
        return Column(names.column(table, key), *args, key=key, **kwargs)

    def text(length: int) -> TypeEngine[str]:
        plain = String(length)
        return plain.with_variant(mssql.NVARCHAR(length), "mssql") if names.unicode_text else plain

    if table == "po_header":
        return Table(
            names.po_header, metadata,
            col("po_number", text(64), primary_key=True), col("vendor_id", text(64), nullable=False),
            col("status", text(32), nullable=False), col("currency", text(3), nullable=False),
            col("order_date", Date, nullable=False), col("tax_rate", ExactNumeric(9, 6)),
            col("allowed_charges", text(400), nullable=False, default=""),
            # When the row last changed: read by the change poller (connectors.sampro.changes) only.
            col("updated_at", SamproTime(), index=True),
        )
    if table == "po_line":
        return Table(
            names.po_line, metadata,
            col("po_number", text(64), primary_key=True), col("line_no", Integer, primary_key=True),
            col("part_number", text(64), nullable=False), col("unit_price", MONEY, nullable=False),
            col("quantity_ordered", MONEY, nullable=False), col("quantity_received", MONEY),
            col("quantity_invoiced", MONEY, nullable=False, default=0),
            col("updated_at", SamproTime(), index=True),
        )
    vendor = col("vendor_id", text(64), nullable=False)
    number, total = col("invoice_number", text(64), nullable=False), col("total_amount", MONEY)
    dated = col("invoice_date", Date)  # the same total is asked for within the duplicate window
    # The duplicate lookup's two index ranges, on the values as it compares them (`folded`); the
    # stand-in creates them, so that its lookup does not scan every invoice ever entered. On SQL
    # Server the lookup compares the columns as they are (reader.py), which Sampro's own indexes serve.
    return Table(
        names.ap_invoice, metadata,
        col("sampro_invoice_id", text(64), primary_key=True), vendor, number,
        col("po_number", text(64), nullable=False), dated, total,
        col("entered_at", DateTime(timezone=True)),
        Index(f"ix_{names.ap_invoice}_vendor_number", folded(vendor), folded(number)),
        Index(f"ix_{names.ap_invoice}_vendor_total", folded(vendor), total, dated),
    )


def folded(column: ColumnElement[str]) -> ColumnElement[str]:
    """An AP invoice's vendor or number as the duplicate lookup compares it: without blanks around
    it, in upper case. Sampro keeps both as AP keyed them (`Inv-778`, ` Acme-Co`), and compared as
    kept, on a database or collation that tells case apart, a resend as `INV-778` was not found
    and was paid twice."""
    return func.upper(func.ltrim(func.rtrim(column)), type_=column.type)


def sampro_tables(names: SamproNames = SamproNames()) -> SamproTables:
    metadata = MetaData(schema=names.schema_name)
    return SamproTables(metadata, *(_table(table, metadata, names) for table in TABLES))
