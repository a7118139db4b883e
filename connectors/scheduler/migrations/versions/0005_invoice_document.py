"""processscheduler keeps the invoice as judged, for AP's side-by-side view with the PO

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("processscheduler") as table:
        table.add_column(sa.Column("invoice_document", sa.JSON))


def downgrade() -> None:
    with op.batch_alter_table("processscheduler") as table:
        table.drop_column("invoice_document")
