"""The invoice numbers handed to the RPA bot, on SQLAlchemy Core (`ProcessScheduler.claim_numbers`).

The table's primary key is where two workers' hand-offs of one number meet: the one whose insert
loses reads the batch again and finds the number taken. A batch costs two queries and one insert
when nothing collides; the rules say which holder still keeps its number.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime

from sqlalchemy import Connection, Dialect, Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from connectors.ports import NumberClaim
from connectors.scheduler.tables import invoice_numbers, processscheduler
from connectors.sql import among, mapped_errors
from rules.duplicates import holder_status, keeps_its_number
from rules.errors import Unavailable

InvoiceVersion = tuple[str, int]
TRIES = 3


class _Raced(Exception):
    """Another worker changed a number this batch read, between the read and the write."""


def claim_numbers(engine: Engine, claims: Sequence[NumberClaim]) -> list[InvoiceVersion | None]:
    if not claims:
        return []
    with mapped_errors("processscheduler"):
        for _ in range(TRIES):
            try:
                with engine.begin() as conn:
                    return _claim(conn, claims, engine.dialect)
            except (IntegrityError, _Raced):
                continue  # rolled back: read again, and the other worker's number is seen
    raise Unavailable("processscheduler", f"invoice numbers were taken by other workers {TRIES} times meanwhile")


def _claim(conn: Connection, claims: Sequence[NumberClaim], dialect: Dialect) -> list[InvoiceVersion | None]:
    t = invoice_numbers
    rows = conn.execute(select(t.c.hand_off_key, t.c.invoice_id, t.c.invoice_version)
                        .where(among(t.c.hand_off_key, {claim.key for claim in claims}, dialect)))
    held: dict[str, InvoiceVersion] = {row.hand_off_key: (row.invoice_id, row.invoice_version) for row in rows}
    # Only a hold by another invoice version needs its status: a replayed batch finds its own and asks nothing.
    others = {held[c.key][0] for c in claims if c.key in held and held[c.key] != (c.invoice_id, c.invoice_version)}
    statuses = _statuses(conn, others, dialect)
    now = datetime.now(UTC)
    answers: list[InvoiceVersion | None] = []
    fresh = []
    for claim in claims:
        holder, mine = held.get(claim.key), (claim.invoice_id, claim.invoice_version)
        if holder is None:
            fresh.append({"hand_off_key": claim.key, "invoice_id": mine[0], "invoice_version": mine[1],
                          "claimed_at": now})
            held[claim.key] = mine  # a later claim of this batch finds it taken
        elif holder != mine:
            if keeps_its_number(holder_status(holder, claim.invoice_id, statuses, claim.replaces)):
                answers.append(holder)
                continue
            given_up = conn.execute(update(t).where(t.c.hand_off_key == claim.key, t.c.invoice_id == holder[0],
                                                    t.c.invoice_version == holder[1])
                                    .values(invoice_id=mine[0], invoice_version=mine[1], claimed_at=now))
            if given_up.rowcount != 1:
                raise _Raced
            held[claim.key] = mine
        answers.append(None)
    if fresh:
        conn.execute(insert(t), fresh)
    return answers


def _statuses(conn: Connection, invoice_ids: Collection[str], dialect: Dialect) -> dict[InvoiceVersion, str]:
    """The status in processscheduler of every version of these invoices."""
    if not invoice_ids:
        return {}
    t = processscheduler
    rows = conn.execute(select(t.c.invoice_id, t.c.invoice_version, t.c.status)
                        .where(among(t.c.invoice_id, invoice_ids, dialect)))
    return {(row.invoice_id, row.invoice_version): row.status for row in rows}
