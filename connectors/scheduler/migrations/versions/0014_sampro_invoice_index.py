"""index for the RPA bot's entries: invoice versions by the Sampro invoice they were entered as

Revision ID: 0014
Revises: 0013

The API looks up each entry the bot reports, to refuse one another invoice is recorded entered as
(api.services.record_rpa_outcome): without the index, each report read the whole of processscheduler.
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_processscheduler_sampro_invoice_id", "processscheduler", ["sampro_invoice_id"])


def downgrade() -> None:
    op.drop_index("ix_processscheduler_sampro_invoice_id", "processscheduler")
