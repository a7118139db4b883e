"""each invoice's duplicate-lookup keys and hand-off key as identifiers are compared since rules
2026.12.12: without the characters that show nothing, every kind of space a space

Revision ID: 0016
Revises: 0015

Rules 2026.12.12 compare identifiers without Hangul fillers, variation selectors, the grapheme
joiner and the like, and read other spaces as a space (`rules.identifiers.identifier_key`). The
rows decided before kept the keys the rules made then: an invoice entered as "INV-4" and a Hangul
filler was looked up by no key a resend of "INV-4" asks for, and went to the RPA bot again. Only
a vendor id or number with a character beyond ASCII can key otherwise now: those rows are keyed
again, and each version that holds its vendor's number at the RPA bot takes that number's new
hand-off key too, unless another invoice version holds it already.
"""

import hashlib
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

from connectors.scheduler.rows import stored_key
from rules.duplicates import lookup_for
from rules.identifiers import identifier_key

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

CHUNK = 1000
# Text as the tables have it since 0012, NVARCHAR(64) on SQL Server, which pyodbc is then told to
# send wide: as sa.String it went as VARCHAR, in the database's code page, and the keys of a Cyrillic
# vendor or a CJK number were written as `?`s, which no lookup of a resend asks for (nor were the
# hand-offs of such an invoice id found to be keyed again).
TEXT = sa.Unicode(64)
scheduler = sa.table("processscheduler", sa.column("id", sa.Integer), sa.column("invoice_id", TEXT),
                     sa.column("invoice_version", sa.Integer), sa.column("vendor_id", TEXT),
                     sa.column("invoice_number", TEXT), sa.column("vendor_key", TEXT),
                     sa.column("number_key", TEXT), sa.column("loose_number_key", TEXT))
numbers = sa.table("rpa_invoice_numbers", sa.column("hand_off_key", TEXT), sa.column("invoice_id", TEXT),
                   sa.column("invoice_version", sa.Integer), sa.column("claimed_at", sa.DateTime(timezone=True)))


def _hand_off_key(vendor_id: str, invoice_number: str) -> str:
    """`rules.duplicates.hand_off_key` under the default identifier rules (letter case folded)."""
    return hashlib.sha256(f"{identifier_key(vendor_id)}\x00{identifier_key(invoice_number)}".encode()).hexdigest()


def upgrade() -> None:
    connection, after = op.get_bind(), 0
    while True:
        rows = connection.execute(
            sa.select(scheduler).where(scheduler.c.id > after).order_by(scheduler.c.id).limit(CHUNK)).all()
        if not rows:
            return
        after = rows[-1].id
        rekeyed = [row for row in rows if not f"{row.vendor_id or ''}{row.invoice_number or ''}".isascii()]
        for row in rekeyed:
            found = lookup_for({"vendor_id": row.vendor_id, "invoice_number": row.invoice_number})
            if found is None:
                continue
            keys = {"vendor_key": stored_key(found.vendor_key), "number_key": stored_key(found.number_key),
                    "loose_number_key": stored_key(found.loose_key)}
            if keys != {name: getattr(row, name) for name in keys}:
                connection.execute(scheduler.update().where(scheduler.c.id == row.id).values(**keys))
        _hand_off_keys(connection, rekeyed)


def _hand_off_keys(connection: sa.Connection, rows: list[sa.Row[Any]]) -> None:
    versions = {(row.invoice_id, row.invoice_version): row for row in rows if row.vendor_id and row.invoice_number}
    if not versions:
        return
    holding = connection.execute(sa.select(numbers.c.invoice_id, numbers.c.invoice_version).distinct().where(
        numbers.c.invoice_id.in_({invoice_id for invoice_id, _ in versions}))).all()
    wanted = {_hand_off_key(versions[held].vendor_id, versions[held].invoice_number): held
              for held in map(tuple, holding) if held in versions}
    if not wanted:
        return
    taken = set(connection.execute(sa.select(numbers.c.hand_off_key).where(
        numbers.c.hand_off_key.in_(list(wanted)))).scalars())
    now = datetime.now(UTC)
    fresh = [{"hand_off_key": key, "invoice_id": held[0], "invoice_version": held[1], "claimed_at": now}
             for key, held in wanted.items() if key not in taken]
    if fresh:
        connection.execute(sa.insert(numbers), fresh)


def downgrade() -> None:
    """Nothing is undone: the older rules find every row as before but the few keyed here (a vendor
    id or number with a character that shows nothing), which they find only by the same total
    within the duplicate window."""
