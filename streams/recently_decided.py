"""The invoices this worker decided lately, for the duplicate checks until processscheduler has them.

The checks ask processscheduler for the invoices decided before, and a verdict is there only once
the sink has written it: a batch or more after the PO agent emitted it. An invoice and its
duplicate on another PO, in two batches close together, were both sent to the RPA bot
(tests/unit/streams/test_worker_in_memory.py). So the worker keeps its own verdicts for `keep`
after making them, filed by vendor as the lookups ask. What processscheduler holds of the same
invoice wins: it knows a withdrawal or a new judgement that came later.

Another worker's verdicts are not here: with several workers, a duplicate decided in that window
on a PO of another worker's partitions is not caught (README, "Scaling out").
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Iterable
from datetime import datetime, timedelta

from rules.context import KnownInvoice
from rules.duplicates import Lookup, matches_lookup
from rules.identifiers import identifier_key

# The sink runs in the PO agent's loop and writes a verdict a tick or two after it is made. At 600
# verdicts a second this keeps some 36,000, about 20 MiB.
KEEP = timedelta(seconds=60)


class RecentlyDecided:
    def __init__(self, keep: timedelta = KEEP):
        self.keep = keep
        self._by_vendor: dict[str, dict[str, tuple[datetime, KnownInvoice]]] = {}  # vendor key -> invoice id ->
        self._made: deque[tuple[datetime, str, str]] = deque()  # (decided at, vendor key, invoice id), oldest first

    def add(self, decided: Iterable[KnownInvoice], now: datetime) -> None:
        for known in decided:
            vendor = identifier_key(known.vendor_id)
            self._by_vendor.setdefault(vendor, {})[known.invoice_id] = (now, known)
            self._made.append((now, vendor, known.invoice_id))
        self._forget_before(now - self.keep)

    def matching(self, lookups: Iterable[Lookup], recorded: Collection[str], now: datetime) -> list[KnownInvoice]:
        """Those a store would return for the lookups, but for the invoice ids it has recorded."""
        self._forget_before(now - self.keep)
        found: dict[str, KnownInvoice] = {}
        for lookup in lookups:
            for invoice_id, (_, known) in self._by_vendor.get(lookup.vendor_key, {}).items():
                if invoice_id not in recorded and matches_lookup(known, (lookup,)):
                    found[invoice_id] = known
        return list(found.values())

    def __len__(self) -> int:
        return sum(map(len, self._by_vendor.values()))

    def _forget_before(self, moment: datetime) -> None:
        while self._made and self._made[0][0] < moment:
            made_at, vendor, invoice_id = self._made.popleft()
            invoices = self._by_vendor.get(vendor, {})
            if invoice_id in invoices and invoices[invoice_id][0] == made_at:  # not decided again since
                del invoices[invoice_id]
                if not invoices:
                    del self._by_vendor[vendor]
