"""processscheduler keeps what the duplicate checks look an invoice up by: its vendor and number as
identifier keys (trimmed, NFC, case-folded), the number's loose key, its total and date

Revision ID: 0006
Revises: 0005
"""

import json
from datetime import date
from decimal import Decimal, InvalidOperation

import sqlalchemy as sa
from alembic import op

from rules.identifiers import identifier_key, loose_number_key

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("processscheduler") as table:
        table.add_column(sa.Column("vendor_key", sa.String(64)))
        table.add_column(sa.Column("number_key", sa.String(64)))
        table.add_column(sa.Column("loose_number_key", sa.String(64)))
        table.add_column(sa.Column("total_amount", sa.Numeric(18, 4)))
        table.add_column(sa.Column("invoice_date", sa.Date))
    op.create_index("ix_processscheduler_vendor_number_key", "processscheduler", ["vendor_key", "number_key"])
    op.create_index("ix_processscheduler_vendor_loose_key", "processscheduler", ["vendor_key", "loose_number_key"])
    op.create_index("ix_processscheduler_vendor_total", "processscheduler", ["vendor_key", "total_amount"])
    _backfill()


def _backfill() -> None:
    """Rows decided before this revision get their keys from what they already hold."""
    bind = op.get_bind()
    t = sa.table("processscheduler", sa.column("id", sa.Integer), sa.column("vendor_id", sa.String),
                 sa.column("invoice_number", sa.String), sa.column("invoice_document", sa.JSON),
                 sa.column("vendor_key", sa.String), sa.column("number_key", sa.String),
                 sa.column("loose_number_key", sa.String), sa.column("total_amount", sa.Numeric(18, 4)),
                 sa.column("invoice_date", sa.Date))
    rows = bind.execute(sa.select(t.c.id, t.c.vendor_id, t.c.invoice_number, t.c.invoice_document)
                        .where(t.c.vendor_id.is_not(None), t.c.invoice_number.is_not(None))).all()
    for row in rows:
        document = row.invoice_document
        document = json.loads(document) if isinstance(document, str) else document or {}
        bind.execute(t.update().where(t.c.id == row.id).values(
            vendor_key=identifier_key(row.vendor_id)[:64], number_key=identifier_key(row.invoice_number)[:64],
            loose_number_key=loose_number_key(row.invoice_number)[:64],
            total_amount=_decimal(document.get("total_amount")), invoice_date=_date(document.get("invoice_date"))))


def _decimal(value: object) -> Decimal | None:
    try:
        return Decimal(str(value)) if value is not None else None
    except InvalidOperation:
        return None


def _date(value: object) -> date | None:
    try:
        return date.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def downgrade() -> None:
    for name in ("ix_processscheduler_vendor_total", "ix_processscheduler_vendor_loose_key",
                 "ix_processscheduler_vendor_number_key"):
        op.drop_index(name, "processscheduler")
    with op.batch_alter_table("processscheduler") as table:
        for column in ("invoice_date", "total_amount", "loose_number_key", "number_key", "vendor_key"):
            table.drop_column(column)
