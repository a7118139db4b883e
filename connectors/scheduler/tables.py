"""processscheduler: one row per invoice version, every status transition as history, the log of
RPA emails sent (so a replay never sends twice), and the invoice numbers handed to the RPA bot
(so two workers never hand over one number twice)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Unicode,
    UnicodeText,
    UniqueConstraint,
)
from sqlalchemy.dialects import mssql
from sqlalchemy.types import TypeEngine

metadata = MetaData()
REASON_CODES_LENGTH = 500  # the rule table's 16 codes take 280 with their spaces
# On SQL Server a String is VARCHAR in the database's code page (an invoice number in another script
# is stored as `?`) under a case-insensitive collation (`MP-1` is `mp-1`): ids and keys are NVARCHAR
# there, compared by code point as on PostgreSQL (migration 0012). Other databases store them as before.
EXACT_COLLATION = "Latin1_General_100_BIN2"


def identifier(length: int) -> TypeEngine[str]:
    """An id or key a vendor's text makes: stored whole and compared exactly on every database."""
    return String(length).with_variant(mssql.NVARCHAR(length, collation=EXACT_COLLATION), "mssql")


processscheduler = Table(
    "processscheduler", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("invoice_id", identifier(64), nullable=False),
    Column("invoice_version", Integer, nullable=False),
    Column("po_number", identifier(64), index=True),
    Column("vendor_id", identifier(64)),
    Column("invoice_number", identifier(64)),
    Column("status", String(32), nullable=False, index=True),
    Column("http_status", Integer),
    Column("reasons", JSON),
    # Each finding code of `reasons` once, between spaces (rows.reason_codes_column): what the read
    # model counts and filters by, a short text instead of the findings' JSON.
    Column("reason_codes", String(REASON_CODES_LENGTH)),
    Column("rpa_payload", JSON),
    Column("rules_version", String(32)),
    Column("po_snapshot", JSON),
    Column("invoice_document", JSON),  # the invoice as judged (the verdict's audit), valid or not
    # What the duplicate checks look an invoice up by (see rules.duplicates).
    Column("vendor_key", identifier(64)),
    Column("number_key", identifier(64)),
    Column("loose_number_key", identifier(64)),
    Column("total_amount", Numeric(18, 4)),
    Column("invoice_date", Date),
    Column("sampro_invoice_id", identifier(64)),
    Column("decided_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("invoice_id", "invoice_version", name="uq_processscheduler_invoice_version"),
    Index("ix_processscheduler_vendor_invoice_number", "vendor_id", "invoice_number"),
    Index("ix_processscheduler_vendor_number_key", "vendor_key", "number_key"),
    Index("ix_processscheduler_vendor_loose_key", "vendor_key", "loose_number_key"),
    Index("ix_processscheduler_vendor_total", "vendor_key", "total_amount", "invoice_date"),  # dated (0015)
    Index("ix_processscheduler_sampro_invoice_id", "sampro_invoice_id"),  # each entry the RPA bot reports
)

history = Table(
    "processscheduler_history", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", identifier(200), nullable=False, unique=True),
    Column("invoice_id", identifier(64), nullable=False, index=True),
    Column("invoice_version", Integer, nullable=False),
    Column("status", String(32), nullable=False),
    Column("occurred_at", DateTime(timezone=True), nullable=False, index=True),
    Column("actor", Unicode(200)),
    Column("reason", UnicodeText),
    Column("holds", JSON),  # the holds an AP release released (rules.holds ids)
)

rpa_sent_log = Table(
    "rpa_sent_log", metadata,
    Column("invoice_id", identifier(64), primary_key=True),
    Column("invoice_version", Integer, primary_key=True),
    Column("attempt", Integer, primary_key=True),  # RpaRequest.attempt: 2 and on after a released RPA failure
    Column("message_id", String(300), nullable=False),
    Column("sent_at", DateTime(timezone=True), nullable=False),
    Column("server_reply", UnicodeText),  # null: cut off before the server answered, see SqlSentLog.in_doubt
)

source_watermarks = Table(
    "source_watermarks", metadata,
    # A polling source's watermark and the events of its look-back window (connectors.watermarks):
    # here, every worker reads where the last one to poll committed.
    Column("source", identifier(64), primary_key=True),
    Column("state", UnicodeText, nullable=False),  # JSON
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

invoice_numbers = Table(
    "rpa_invoice_numbers", metadata,
    # rules.duplicates.hand_off_key (vendor and number) or invoice_key (the invoice id): a hand-off takes both
    Column("hand_off_key", identifier(64), primary_key=True),
    Column("invoice_id", identifier(64), nullable=False),  # the invoice handed over under that key
    Column("invoice_version", Integer, nullable=False),
    Column("claimed_at", DateTime(timezone=True), nullable=False),
)
