"""the invoice numbers handed to the RPA bot: one invoice per vendor and number, whichever worker
hands it over

Revision ID: 0009
Revises: 0008

Emails sent before this revision took no number: the duplicate checks found those invoices in
processscheduler long since.
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rpa_invoice_numbers",
        sa.Column("hand_off_key", sa.String(64), nullable=False),
        sa.Column("invoice_id", sa.String(64), nullable=False),
        sa.Column("invoice_version", sa.Integer, nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("hand_off_key", name="pk_rpa_invoice_numbers"),
    )


def downgrade() -> None:
    op.drop_table("rpa_invoice_numbers")
