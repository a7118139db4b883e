"""processscheduler on SQLAlchemy Core: a batch is a handful of statements in one transaction.

Idempotent by construction: rows are keyed by (invoice_id, invoice_version) and history rows by
event id, so the same batch applied twice leaves the tables exactly as once.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, func, insert, or_, select, update

from connectors.ports import InvoiceVersionAt, NumberClaim, ProcessScheduler, SchedulerEntry
from connectors.scheduler.invoice_numbers import claim_numbers, recorded, versions_of
from connectors.scheduler.rows import entries, stored_key
from connectors.scheduler.tables import history, processscheduler
from connectors.sql import among, mapped_errors, same_total
from rules.context import KnownInvoice
from rules.duplicates import Lookup, matches_lookup
from rules.lifecycle import StatusChanged
from rules.models import Verdict

CHUNK = 500
LOOKUP_CHUNK = 300  # six parameters a lookup at most: under SQL Server's 2,100 a statement


class SqlProcessScheduler(ProcessScheduler):
    def __init__(self, engine: Engine):
        self.engine = engine

    def record(self, decisions: Sequence[Verdict | StatusChanged | SchedulerEntry]) -> None:
        """A message whose history event is already recorded changes nothing, so a replayed
        verdict cannot pull a row back from `entered` to `ready_to_process`."""
        events: dict[str, SchedulerEntry] = {}
        for entry in entries(decisions):
            events.setdefault(entry.event["event_id"], entry)
        if not events:
            return
        now = datetime.now(UTC)
        with mapped_errors("processscheduler"), self.engine.begin() as conn:
            seen = self._existing_events(conn, list(events))
            fresh = [entry for event_id, entry in events.items() if event_id not in seen]
            if not fresh:
                return
            rows: dict[tuple[str, int], dict[str, Any]] = {}
            for entry in fresh:  # later messages of the batch win, as they would one by one
                rows.setdefault(entry.key, {}).update(entry.fields)
            existing = self._existing_keys(conn, list(rows))
            inserts = [{"invoice_id": k[0], "invoice_version": k[1], "created_at": now, "updated_at": now, **fields}
                       for k, fields in rows.items() if k not in existing]
            if inserts:
                columns = set().union(*(row.keys() for row in inserts))
                conn.execute(insert(processscheduler), [{c: row.get(c) for c in columns} for row in inserts])
            t = processscheduler
            updates: dict[frozenset[str], list[dict[str, Any]]] = {}  # one executemany per set of columns changed
            for k, fields in rows.items():
                if k in existing:
                    updates.setdefault(frozenset(fields), []).append({"_id": k[0], "_version": k[1], **fields})
            for changed, params in updates.items():
                statement = (update(t)
                             .where(t.c.invoice_id == bindparam("_id"), t.c.invoice_version == bindparam("_version"))
                             .values(updated_at=now, **{c: bindparam(c) for c in changed}))
                conn.execute(statement, params)
            conn.execute(insert(history), [entry.event for entry in fresh])

    def _existing_keys(self, conn: Connection, keys: list[tuple[str, int]]) -> set[tuple[str, int]]:
        found: set[tuple[str, int]] = set()
        t = processscheduler
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start : start + CHUNK]
            ids = {invoice_id for invoice_id, _ in chunk}
            query = select(t.c.invoice_id, t.c.invoice_version).where(among(t.c.invoice_id, ids, self.engine.dialect))
            found.update((row.invoice_id, row.invoice_version) for row in conn.execute(query))
        return found & set(keys)

    def _existing_events(self, conn: Connection, event_ids: list[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(event_ids), CHUNK):
            chunk = event_ids[start : start + CHUNK]
            query = select(history.c.event_id).where(among(history.c.event_id, chunk, self.engine.dialect))
            found.update(conn.execute(query).scalars())
        return found

    def decided_invoices(self, lookups: Collection[Lookup]) -> list[KnownInvoice]:
        """One indexed query per chunk: the vendor keys, and the number keys, loose keys or totals,
        these dated within the lookups' windows (the index's third column): from all time, each
        invoice of a flat-fee vendor read every invoice of it ever decided."""
        wanted = sorted(lookups, key=lambda lookup: (lookup.vendor_key, lookup.number_key))
        t, dialect = processscheduler, self.engine.dialect
        found: dict[tuple[str, int], KnownInvoice] = {}
        with mapped_errors("processscheduler"), self.engine.connect() as conn:
            for start in range(0, len(wanted), LOOKUP_CHUNK):
                chunk = wanted[start: start + LOOKUP_CHUNK]
                query = (select(t.c.invoice_id, t.c.invoice_version, t.c.vendor_id, t.c.invoice_number, t.c.status,
                                t.c.total_amount, t.c.invoice_date)
                         .where(among(t.c.vendor_key, {stored_key(lookup.vendor_key) for lookup in chunk}, dialect),
                                or_(among(t.c.number_key, {stored_key(lookup.number_key) for lookup in chunk}, dialect),
                                    among(t.c.loose_number_key, {stored_key(lookup.loose_key) for lookup in chunk},
                                          dialect),
                                    *same_total(t.c.total_amount, t.c.invoice_date, chunk, dialect))))
                for r in conn.execute(query):
                    known = KnownInvoice(r.invoice_id, r.vendor_id, r.invoice_number, r.status, r.total_amount,
                                         r.invoice_date)
                    if matches_lookup(known, chunk):
                        found[(r.invoice_id, r.invoice_version)] = known
        return list(found.values())

    def versions_of(self, invoice_ids: Collection[str]) -> list[InvoiceVersionAt]:
        with mapped_errors("processscheduler"), self.engine.connect() as conn:
            return versions_of(conn, invoice_ids, self.engine.dialect)

    def recorded(self, event_ids: Collection[str]) -> set[str]:
        with mapped_errors("processscheduler"), self.engine.connect() as conn:
            return recorded(conn, event_ids, self.engine.dialect)

    def claim_numbers(self, claims: Sequence[NumberClaim]) -> list[tuple[str, int] | None]:
        return claim_numbers(self.engine, claims)

    # -- reads for the demo, the API and the tests ---------------------------------------------
    def rows(self, po_number: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        t = processscheduler
        query = select(t).order_by(t.c.invoice_id, t.c.invoice_version)
        if po_number:
            query = query.where(t.c.po_number == po_number)
        if status:
            query = query.where(t.c.status == status)
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]

    def history(self, invoice_id: str) -> list[dict[str, Any]]:
        query = select(history).where(history.c.invoice_id == invoice_id).order_by(history.c.id)
        with self.engine.connect() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]

    def counts_by_status(self) -> dict[str, int]:
        t = processscheduler
        with self.engine.connect() as conn:
            return dict(conn.execute(select(t.c.status, func.count()).group_by(t.c.status)).all())

