"""polling sources keep their watermarks in processscheduler, which every worker shares

Revision ID: 0013
Revises: 0012

Each was a file in the data folder of the worker that polled: a worker on another machine that
took the polling over started afresh (the marketplace from its first row, Sampro from its newest
change, passing over what changed since the last poll). The files are read until the first
commit after this revision (connectors.watermarks).
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mssql

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None
EXACT = "Latin1_General_100_BIN2"  # as 0012 keys every id on SQL Server


def upgrade() -> None:
    op.create_table(
        "source_watermarks",
        sa.Column("source", sa.String(64).with_variant(mssql.NVARCHAR(64, collation=EXACT), "mssql"), nullable=False),
        # NVARCHAR(max), not the NTEXT SQLAlchemy gives a server it has not asked its version
        sa.Column("state", sa.UnicodeText().with_variant(mssql.NVARCHAR(), "mssql"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source", name="pk_source_watermarks"),
    )


def downgrade() -> None:
    op.drop_table("source_watermarks")
