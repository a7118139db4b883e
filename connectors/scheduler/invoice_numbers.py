"""The invoice numbers handed to the RPA bot, on SQLAlchemy Core (`ProcessScheduler.claim_numbers`).

Each hand-off takes two keys: its vendor's invoice number and its invoice id. The table's primary
key is where two workers' hand-offs of one number, or of two versions of one invoice, meet: the
one whose insert loses reads the batch again and finds the key taken. A batch costs one query and
one insert when no other invoice version holds its keys; the rules say which holder keeps its key.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Dialect, Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from connectors.ports import InvoiceVersionAt, NumberClaim
from connectors.scheduler.tables import history, invoice_numbers, processscheduler
from connectors.sql import among, mapped_errors
from rules.duplicates import hand_off_refused_by
from rules.errors import Unavailable

InvoiceVersion = tuple[str, int]
TRIES = 3
CHUNK = 1000  # keys or invoice ids a query: SQL Server takes 2,100 parameters a statement


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
    wanted = sorted({key for claim in claims for key in claim.keys})
    held: dict[str, InvoiceVersion] = {}
    for start in range(0, len(wanted), CHUNK):
        rows = conn.execute(select(t.c.hand_off_key, t.c.invoice_id, t.c.invoice_version)
                            .where(among(t.c.hand_off_key, wanted[start:start + CHUNK], dialect)))
        held.update((row.hand_off_key, (row.invoice_id, row.invoice_version)) for row in rows)
    # Only a hold by another invoice version needs its status: a replayed batch finds its own and asks nothing.
    others = {held[key][0] for c in claims for key in c.keys
              if key in held and held[key] != (c.invoice_id, c.invoice_version)}
    statuses = _statuses(conn, others, dialect)
    now = datetime.now(UTC)
    answers: list[InvoiceVersion | None] = []
    fresh: dict[str, dict[str, Any]] = {}  # inserted at the end; a later claim of the batch may take one over
    for claim in claims:
        mine = (claim.invoice_id, claim.invoice_version)
        holders = [held.get(key) for key in claim.keys]
        refused_by = hand_off_refused_by(mine, holders, statuses, claim.replaces)
        if refused_by is not None:
            answers.append(refused_by)
            continue
        for key, holder in zip(claim.keys, holders, strict=True):
            if holder == mine:
                continue
            row = {"hand_off_key": key, "invoice_id": mine[0], "invoice_version": mine[1], "claimed_at": now}
            if holder is None or key in fresh:
                fresh[key] = row
            else:
                given_up = conn.execute(update(t).where(t.c.hand_off_key == key, t.c.invoice_id == holder[0],
                                                        t.c.invoice_version == holder[1])
                                        .values(invoice_id=mine[0], invoice_version=mine[1], claimed_at=now))
                if given_up.rowcount != 1:
                    raise _Raced
            held[key] = mine  # a later claim of this batch finds it taken
        answers.append(None)
    if fresh:
        conn.execute(insert(t), list(fresh.values()))
    return answers


def versions_of(conn: Connection, invoice_ids: Collection[str], dialect: Dialect) -> list[InvoiceVersionAt]:
    """Every version of these invoices in processscheduler (`ProcessScheduler.versions_of`)."""
    t, ids = processscheduler, sorted(invoice_ids)
    found: list[InvoiceVersionAt] = []
    for start in range(0, len(ids), CHUNK):
        query = (select(t.c.invoice_id, t.c.invoice_version, t.c.po_number, t.c.status)
                 .where(among(t.c.invoice_id, ids[start:start + CHUNK], dialect))
                 .order_by(t.c.invoice_id, t.c.invoice_version))
        found += [InvoiceVersionAt(*row) for row in conn.execute(query)]
    return found


def recorded(conn: Connection, event_ids: Collection[str], dialect: Dialect) -> set[str]:
    """Those of these events that the history has (`ProcessScheduler.recorded`): its unique index
    on event_id answers it."""
    ids, found = sorted(event_ids), set()
    for start in range(0, len(ids), CHUNK):
        found |= set(conn.scalars(select(history.c.event_id).where(among(history.c.event_id, ids[start:start + CHUNK],
                                                                               dialect))))
    return found


def _statuses(conn: Connection, invoice_ids: Collection[str], dialect: Dialect) -> dict[InvoiceVersion, str]:
    """The status in processscheduler of every version of these invoices."""
    return {(v.invoice_id, v.invoice_version): v.status for v in versions_of(conn, invoice_ids, dialect)}
