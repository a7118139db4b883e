"""processscheduler in memory, for unit tests of the handlers and agents."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from connectors.ports import InvoiceVersionAt, NumberClaim, ProcessScheduler, SchedulerEntry
from connectors.scheduler.rows import entries
from rules.context import KnownInvoice
from rules.duplicates import Lookup, hand_off_refused_by, matches_lookup
from rules.lifecycle import StatusChanged
from rules.models import Verdict


class InMemoryProcessScheduler(ProcessScheduler):
    def __init__(self) -> None:
        self.table: dict[tuple[str, int], dict[str, Any]] = {}
        self.events: dict[str, dict[str, Any]] = {}
        self.numbers: dict[str, tuple[str, int]] = {}  # hand-off key -> the invoice version holding it

    def record(self, decisions: Sequence[Verdict | StatusChanged | SchedulerEntry]) -> None:
        for entry in entries(decisions):
            if entry.event["event_id"] in self.events:
                continue
            row = self.table.setdefault(entry.key, {"invoice_id": entry.key[0], "invoice_version": entry.key[1]})
            row.update(entry.fields)
            self.events[entry.event["event_id"]] = entry.event

    def decided_invoices(self, lookups: Collection[Lookup]) -> list[KnownInvoice]:
        rows = [KnownInvoice(r["invoice_id"], r["vendor_id"], r["invoice_number"], r["status"], r.get("total_amount"),
                             r.get("invoice_date"))
                for r in self.table.values() if r.get("vendor_id") and r.get("invoice_number")]
        return [known for known in rows if matches_lookup(known, lookups)]

    def versions_of(self, invoice_ids: Collection[str]) -> list[InvoiceVersionAt]:
        return [InvoiceVersionAt(key[0], key[1], row.get("po_number"), row["status"])
                for key, row in sorted(self.table.items()) if key[0] in invoice_ids]

    def recorded(self, event_ids: Collection[str]) -> set[str]:
        return set(event_ids) & self.events.keys()

    def claim_numbers(self, claims: Sequence[NumberClaim]) -> list[tuple[str, int] | None]:
        answers: list[tuple[str, int] | None] = []
        statuses = {key: row.get("status") for key, row in self.table.items()}
        for claim in claims:
            mine = (claim.invoice_id, claim.invoice_version)
            refused_by = hand_off_refused_by(mine, [self.numbers.get(key) for key in claim.keys], statuses,
                                             claim.replaces)
            if refused_by is None:
                self.numbers.update(dict.fromkeys(claim.keys, mine))
            answers.append(refused_by)
        return answers

    def rows(self, po_number: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        return [r for _, r in sorted(self.table.items())
                if (po_number is None or r.get("po_number") == po_number) and (status is None or r["status"] == status)]

    def history(self, invoice_id: str) -> list[dict[str, Any]]:
        return [e for e in self.events.values() if e["invoice_id"] == invoice_id]
