"""index for the duplicate check: decided invoices by vendor and invoice number

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_processscheduler_vendor_invoice_number", "processscheduler", ["vendor_id", "invoice_number"])


def downgrade() -> None:
    op.drop_index("ix_processscheduler_vendor_invoice_number", "processscheduler")
