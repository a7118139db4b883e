"""the RPA sent log keeps the server's answer; a row without one is an email in doubt

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("rpa_sent_log") as table:
        table.add_column(sa.Column("server_reply", sa.Text))
    # Rows from before this revision were logged after the server accepted them.
    op.execute("UPDATE rpa_sent_log SET server_reply = '250 (before revision 0003)'")


def downgrade() -> None:
    with op.batch_alter_table("rpa_sent_log") as table:
        table.drop_column("server_reply")
