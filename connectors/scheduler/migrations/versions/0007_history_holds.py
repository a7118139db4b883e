"""processscheduler's history keeps which holds an AP release released

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("processscheduler_history") as table:
        table.add_column(sa.Column("holds", sa.JSON))


def downgrade() -> None:
    with op.batch_alter_table("processscheduler_history") as table:
        table.drop_column("holds")
