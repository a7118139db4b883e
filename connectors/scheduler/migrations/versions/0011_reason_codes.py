"""processscheduler keeps each verdict's finding codes as a short text beside its findings: the
dashboard counts and filters by code without reading every row's findings JSON

Revision ID: 0011
Revises: 0010

The column holds each code once, between spaces (` PRICE_MISMATCH TAX_MISMATCH `), as
`connectors.scheduler.rows.reason_codes_column` writes it; written out here because a migration
must keep meaning what it meant when it ran. Rows decided before get theirs from their findings.
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

CHUNK = 500
LENGTH = 500
scheduler = sa.table("processscheduler", sa.column("id", sa.Integer), sa.column("reasons", sa.JSON),
                     sa.column("reason_codes", sa.String))


def _codes(reasons: object) -> str | None:
    reasons = json.loads(reasons) if isinstance(reasons, str) else reasons
    if not isinstance(reasons, list) or not reasons:
        return None
    text = " "
    for code in dict.fromkeys(r["code"] for r in reasons if isinstance(r, dict) and isinstance(r.get("code"), str)):
        if " " in code or len(text) + len(code) + 1 > LENGTH:
            continue
        text += code + " "
    return text if text != " " else None


def upgrade() -> None:
    with op.batch_alter_table("processscheduler") as table:
        table.add_column(sa.Column("reason_codes", sa.String(LENGTH)))
    connection, after = op.get_bind(), 0
    statement = (scheduler.update().where(scheduler.c.id == sa.bindparam("row_id"))
                 .values(reason_codes=sa.bindparam("codes")))
    while True:  # CHUNK rows at a time, by id: a year of processscheduler need not fit in memory
        rows = connection.execute(sa.select(scheduler.c.id, scheduler.c.reasons).where(scheduler.c.id > after)
                                  .order_by(scheduler.c.id).limit(CHUNK)).all()
        if not rows:
            return
        after = rows[-1].id
        filled = [{"row_id": row.id, "codes": codes} for row in rows if (codes := _codes(row.reasons)) is not None]
        if filled:
            connection.execute(statement, filled)


def downgrade() -> None:
    with op.batch_alter_table("processscheduler") as table:
        table.drop_column("reason_codes")
