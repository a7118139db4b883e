"""Sampro's tables as SQLAlchemy Core objects, with installation-specific names.

Column keys stay canonical in code (`c.po_number`); only the names sent to the database come
from `SamproNames`, so the same queries run on SQL Server, PostgreSQL and SQLite.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, Field
from sqlalchemy import Column, Date, DateTime, Integer, MetaData, Numeric, String, Table

MONEY = Numeric(18, 4, asdecimal=True)


class SamproNames(BaseModel):
    """Table names, and column renames for installations whose Sampro differs (canonical -> actual)."""

    schema_name: str | None = None
    po_header: str = "po_header"
    po_line: str = "po_line"
    ap_invoice: str = "ap_invoice"
    columns: dict[str, str] = Field(default_factory=dict)


@dataclass(frozen=True)
class SamproTables:
    metadata: MetaData
    po_header: Table
    po_line: Table
    ap_invoice: Table


def sampro_tables(names: SamproNames = SamproNames()) -> SamproTables:
    def col(key: str, *args, **kwargs) -> Column:
        return Column(names.columns.get(key, key), *args, key=key, **kwargs)

    metadata = MetaData(schema=names.schema_name)
    header = Table(
        names.po_header, metadata,
        col("po_number", String(64), primary_key=True), col("vendor_id", String(64), nullable=False),
        col("status", String(32), nullable=False), col("currency", String(3), nullable=False),
        col("order_date", Date, nullable=False), col("tax_rate", Numeric(9, 6, asdecimal=True)),
        col("allowed_charges", String(400), nullable=False, default=""),
    )
    line = Table(
        names.po_line, metadata,
        col("po_number", String(64), primary_key=True), col("line_no", Integer, primary_key=True),
        col("part_number", String(64), nullable=False), col("unit_price", MONEY, nullable=False),
        col("quantity_ordered", MONEY, nullable=False), col("quantity_received", MONEY),
        col("quantity_invoiced", MONEY, nullable=False, default=0),
    )
    invoice = Table(
        names.ap_invoice, metadata,
        col("sampro_invoice_id", String(64), primary_key=True), col("vendor_id", String(64), nullable=False),
        col("invoice_number", String(64), nullable=False), col("po_number", String(64), nullable=False),
        col("invoice_date", Date), col("total_amount", MONEY), col("entered_at", DateTime(timezone=True)),
    )
    return SamproTables(metadata, header, line, invoice)
