"""On SQL Server, vendor text is NVARCHAR, and ids compare by code point as on PostgreSQL

Revision ID: 0012
Revises: 0011

A String column is VARCHAR on SQL Server, in the database's code page: an invoice number in
another script was stored as `?`, so two such invoices shared a processscheduler key, a history
event id and a hand-off key (the second was refused as a duplicate, or updated the first's row).
The default collation is also case-insensitive, so `MP-1` and `mp-1` were one invoice. The id
columns become NVARCHAR with a binary collation, the free text NVARCHAR. Other databases store
Unicode in these columns already, and compare exactly: the revision does nothing there.

SQL Server changes no column that an index or a key uses, so those are dropped and made again
around the change. The unique key of the history's event id was made without a name (0001), so
SQL Server named it: it is found by its column and dropped, and made again with a name. Rows
already stored with `?` are not repaired; the verdicts topic holds each verdict as decided, and a
replay into a new processscheduler writes them whole.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mssql

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

EXACT = "Latin1_General_100_BIN2"  # code point order and equality, as PostgreSQL's C collation
TEXT_LENGTH = None  # (max)

# table -> (column, length, nullable, exact): the columns that hold what a vendor or a clerk wrote
COLUMNS: dict[str, tuple[tuple[str, int | None, bool, bool], ...]] = {
    "processscheduler": (
        ("invoice_id", 64, False, True), ("po_number", 64, True, True), ("vendor_id", 64, True, True),
        ("invoice_number", 64, True, True), ("vendor_key", 64, True, True), ("number_key", 64, True, True),
        ("loose_number_key", 64, True, True), ("sampro_invoice_id", 64, True, True),
    ),
    "processscheduler_history": (
        ("event_id", 200, False, True), ("invoice_id", 64, False, True), ("actor", 200, True, False),
        ("reason", TEXT_LENGTH, True, False),
    ),
    "rpa_sent_log": (("invoice_id", 64, False, True), ("server_reply", TEXT_LENGTH, True, False)),
    "rpa_invoice_numbers": (("hand_off_key", 64, False, True), ("invoice_id", 64, False, True)),
}
# What uses those columns, made again as the revisions before made them: (table, name, columns)
Uses = tuple[tuple[str, str, tuple[str, ...]], ...]
INDEXES: Uses = (
    ("processscheduler", "ix_processscheduler_po_number", ("po_number",)),
    ("processscheduler", "ix_processscheduler_vendor_invoice_number", ("vendor_id", "invoice_number")),
    ("processscheduler", "ix_processscheduler_vendor_number_key", ("vendor_key", "number_key")),
    ("processscheduler", "ix_processscheduler_vendor_loose_key", ("vendor_key", "loose_number_key")),
    ("processscheduler", "ix_processscheduler_vendor_total", ("vendor_key", "total_amount")),
    ("processscheduler_history", "ix_processscheduler_history_invoice_id", ("invoice_id",)),
)
UNIQUE: Uses = (
    ("processscheduler", "uq_processscheduler_invoice_version", ("invoice_id", "invoice_version")),
    ("processscheduler_history", "uq_processscheduler_history_event_id", ("event_id",)),
)
PRIMARY: Uses = (
    ("rpa_sent_log", "pk_rpa_sent_log_attempt", ("invoice_id", "invoice_version", "attempt")),
    ("rpa_invoice_numbers", "pk_rpa_invoice_numbers", ("hand_off_key",)),
)
# The event id's unique key: 0001 made it without a name, so SQL Server gave it one.
DROP_EVENT_ID_KEY = """\
DECLARE @key sysname = (
    SELECT k.name FROM sys.key_constraints AS k
    JOIN sys.index_columns AS ic ON ic.object_id = k.parent_object_id AND ic.index_id = k.unique_index_id
    JOIN sys.columns AS c ON c.object_id = ic.object_id AND c.column_id = ic.column_id
    WHERE k.parent_object_id = OBJECT_ID(N'processscheduler_history') AND k.type = 'UQ' AND c.name = N'event_id');
IF @key IS NOT NULL EXEC (N'ALTER TABLE processscheduler_history DROP CONSTRAINT ' + QUOTENAME(@key))"""


def upgrade() -> None:
    if op.get_context().dialect.name == "mssql":
        _retype(unicode=True)


def downgrade() -> None:
    if op.get_context().dialect.name == "mssql":
        _retype(unicode=False)


def _retype(unicode: bool) -> None:
    for table, name, _ in INDEXES:
        op.drop_index(name, table)
    for table, name, _ in (*UNIQUE, *PRIMARY):
        if name == "uq_processscheduler_history_event_id":
            op.execute(DROP_EVENT_ID_KEY)
        else:
            op.drop_constraint(name, table)
    for table, columns in COLUMNS.items():
        for column, length, nullable, exact in columns:
            op.alter_column(table, column, type_=_type(length, exact, unicode), nullable=nullable,
                            existing_type=_type(length, exact, not unicode), existing_nullable=nullable)
    for table, name, key in PRIMARY:
        op.create_primary_key(name, table, list(key))
    for table, name, key in UNIQUE:
        op.create_unique_constraint(name, table, list(key))
    for table, name, key in INDEXES:
        op.create_index(name, table, list(key))


def _type(length: int | None, exact: bool, unicode: bool) -> sa.types.TypeEngine[str]:
    if not unicode:  # as 0001 to 0011 made them: VARCHAR(n), and Text as SQL Server has it, VARCHAR(max)
        return sa.String(length) if length else mssql.VARCHAR()
    if length is None:
        return mssql.NVARCHAR()  # NVARCHAR(max)
    return mssql.NVARCHAR(length, collation=EXACT if exact else None)
