"""processscheduler, its history and the RPA sent log

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "processscheduler",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("invoice_id", sa.String(64), nullable=False),
        sa.Column("invoice_version", sa.Integer, nullable=False),
        sa.Column("po_number", sa.String(64)),
        sa.Column("vendor_id", sa.String(64)),
        sa.Column("invoice_number", sa.String(64)),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("http_status", sa.Integer),
        sa.Column("reasons", sa.JSON),
        sa.Column("rpa_payload", sa.JSON),
        sa.Column("rules_version", sa.String(32)),
        sa.Column("po_snapshot", sa.JSON),
        sa.Column("sampro_invoice_id", sa.String(64)),
        sa.Column("decided_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("invoice_id", "invoice_version", name="uq_processscheduler_invoice_version"),
    )
    op.create_index("ix_processscheduler_po_number", "processscheduler", ["po_number"])
    op.create_index("ix_processscheduler_status", "processscheduler", ["status"])
    op.create_table(
        "processscheduler_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(200), nullable=False, unique=True),
        sa.Column("invoice_id", sa.String(64), nullable=False),
        sa.Column("invoice_version", sa.Integer, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(200)),
        sa.Column("reason", sa.Text),
    )
    op.create_index("ix_processscheduler_history_invoice_id", "processscheduler_history", ["invoice_id"])
    op.create_table(
        "rpa_sent_log",
        sa.Column("invoice_id", sa.String(64), primary_key=True),
        sa.Column("invoice_version", sa.Integer, primary_key=True),
        sa.Column("message_id", sa.String(300), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rpa_sent_log")
    op.drop_table("processscheduler_history")
    op.drop_table("processscheduler")
