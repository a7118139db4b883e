"""The marketplace's invoice table, as vendors' uploads land in it.

Header columns mirror the canonical invoice (DESIGN §3); lines and extra charges are JSON.
`version` grows with every vendor edit and `updated_at` moves with it; together with
`invoice_id` they drive both the Debezium capture and the SQL polling source. Vendors' data
may be incomplete, so only the keys are required: the rules report what is missing.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Column,
    Date,
    DateTime,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    func,
)

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
    Column("tax_amount", Numeric(18, 4), nullable=False, server_default="0"),
    Column("extra_charges", JSON, nullable=False, server_default="[]"),
    Column("total_amount", Numeric(18, 4)),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
