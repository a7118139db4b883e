"""the RPA sent log keeps each hand-off of an invoice version: a release of an RPA failure is a new
email, not one the log already knows

Revision ID: 0008
Revises: 0007

A primary key cannot be altered in place on every database processscheduler runs on (SQL Server
named the old one itself), so the log is copied into a table with the new key: the emails sent
before this revision are each version's first hand-off.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_COLUMNS = ("invoice_id", "invoice_version", "message_id", "sent_at", "server_reply")


def _log(name: str, *, with_attempt: bool) -> sa.Table:
    key = ("invoice_id", "invoice_version", "attempt") if with_attempt else ("invoice_id", "invoice_version")
    return op.create_table(
        name,
        sa.Column("invoice_id", sa.String(64), nullable=False),
        sa.Column("invoice_version", sa.Integer, nullable=False),
        *([sa.Column("attempt", sa.Integer, nullable=False)] if with_attempt else []),
        sa.Column("message_id", sa.String(300), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("server_reply", sa.Text),
        # Named for its key, not the copy's name: the name stays when the copy is renamed.
        sa.PrimaryKeyConstraint(*key, name="pk_rpa_sent_log_attempt" if with_attempt else "pk_rpa_sent_log_version"),
    )


def _as_it_is(name: str, *extra: str) -> sa.TableClause:
    return sa.table(name, *[sa.column(column) for column in (*_COLUMNS, *extra)])


def upgrade() -> None:
    log = _log("rpa_sent_log_by_attempt", with_attempt=True)
    before = _as_it_is("rpa_sent_log")
    op.execute(log.insert().from_select([*_COLUMNS, "attempt"], sa.select(*before.c, sa.literal(1))))
    op.drop_table("rpa_sent_log")
    op.rename_table("rpa_sent_log_by_attempt", "rpa_sent_log")


def downgrade() -> None:
    """Back to one row per version: the first hand-off's, as the log before this revision had it."""
    log = _log("rpa_sent_log_by_version", with_attempt=False)
    after = _as_it_is("rpa_sent_log", "attempt")
    op.execute(log.insert().from_select(list(_COLUMNS), sa.select(*[after.c[name] for name in _COLUMNS])
                                        .where(after.c.attempt == 1)))
    op.drop_table("rpa_sent_log")
    op.rename_table("rpa_sent_log_by_version", "rpa_sent_log")
