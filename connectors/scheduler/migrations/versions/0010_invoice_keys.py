"""each invoice handed to the RPA bot holds its invoice id beside its number: another version of
it under another number, on another PO, finds it taken

Revision ID: 0010
Revises: 0009

The versions handed over since 0009 give their invoice its key here: for each invoice, the version
the RPA bot entered, else one it has, else the newest that still keeps its number
(processscheduler shows it neither rejected, withdrawn nor superseded), else the newest: a key
held by a version that gives it up later must not free an invoice that is in Sampro. The key is
`rules.duplicates.invoice_key`, written out because a migration must keep meaning what it meant
when it ran.
"""

import hashlib
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

CHUNK = 500
GAVE_UP = ("bad_invoice", "po_not_found", "withdrawn", "superseded")  # rules.context.NOT_PROCESSED
RANK = {"entered": 3, "sent_to_rpa": 2}  # then 1: keeps its number; 0: gave it up
numbers = sa.table("rpa_invoice_numbers", sa.column("hand_off_key", sa.String), sa.column("invoice_id", sa.String),
                   sa.column("invoice_version", sa.Integer), sa.column("claimed_at", sa.DateTime(timezone=True)))
scheduler = sa.table("processscheduler", sa.column("invoice_id", sa.String), sa.column("invoice_version", sa.Integer),
                     sa.column("status", sa.String))


def _key(invoice_id: str) -> str:
    return hashlib.sha256(f"\x00invoice\x00{invoice_id}".encode()).hexdigest()


def upgrade() -> None:
    connection, now = op.get_bind(), datetime.now(UTC)
    holding = connection.execute(
        sa.select(numbers.c.invoice_id, numbers.c.invoice_version, scheduler.c.status)
        .select_from(numbers.outerjoin(scheduler, sa.and_(scheduler.c.invoice_id == numbers.c.invoice_id,
                                                          scheduler.c.invoice_version == numbers.c.invoice_version)))
    ).all()
    chosen: dict[str, tuple[int, int]] = {}  # invoice id -> (rank, version): the greatest wins
    for invoice_id, version, status in holding:
        rank = RANK.get(status, 0 if status in GAVE_UP else 1)
        chosen[invoice_id] = max(chosen.get(invoice_id, (-1, 0)), (rank, version))
    rows = [{"hand_off_key": _key(invoice_id), "invoice_id": invoice_id, "invoice_version": version,
             "claimed_at": now} for invoice_id, (_, version) in chosen.items()]
    for start in range(0, len(rows), CHUNK):
        connection.execute(sa.insert(numbers), rows[start:start + CHUNK])


def downgrade() -> None:
    connection = op.get_bind()
    invoice_ids = connection.execute(sa.select(numbers.c.invoice_id).distinct()).scalars().all()
    keys = [_key(invoice_id) for invoice_id in invoice_ids]
    for start in range(0, len(keys), CHUNK):
        connection.execute(sa.delete(numbers).where(numbers.c.hand_off_key.in_(keys[start:start + CHUNK])))
