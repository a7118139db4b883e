"""index for the dashboard's last hour: history by the time a status was entered

Revision ID: 0004
Revises: 0003
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_processscheduler_history_occurred_at", "processscheduler_history", ["occurred_at"])


def downgrade() -> None:
    op.drop_index("ix_processscheduler_history_occurred_at", "processscheduler_history")
