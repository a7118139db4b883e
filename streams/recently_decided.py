"""The invoices this worker decided lately, for the duplicate checks until processscheduler has them.

The checks ask processscheduler for the invoices decided before, and a verdict is there only once
the sink has written it: a tick after the PO agent emitted it when the worker keeps up, a second
or two in a burst (streams/back_pressure.py). An invoice and its duplicate on
another PO, in two batches close together, were both sent to the RPA bot
(tests/unit/streams/test_worker_in_memory.py). So the worker keeps its own verdicts until the
sink has recorded them, filed under the keys the lookups ask for (vendor and number, loose number
or total), as processscheduler's indexes are. A verdict is let go once the sink has recorded that
very verdict (its event) or a later version: what processscheduler holds of the invoice before
then is older. Both are shown to the checks, which count an invoice processed if either says so:
an invoice judged again (po_not_found, then ready once Sampro had its PO) read as rejected from
processscheduler while the sink caught up, and its duplicate went to the RPA bot beside it.

Another worker's verdicts are not here: with several workers, a duplicate decided in that window
on a PO of another worker's partitions is not caught (README, "Scaling out").

It keeps, in the same window, where each invoice version it decided is and as what (its PO and
status), for the PO agent that learns of a newer version on another PO, or of the vendor's
delete: it tells each older version's PO, and looked for them in processscheduler alone. Version
1 at the bot on PO-A, the vendor's version 2 on PO-B and its delete before the sink had recorded
version 1: PO-A was never told, and the bot's entry of version 1 asked for no credit note.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Collection, Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal

from connectors.ports import InvoiceVersionAt
from rules.context import KnownInvoice
from rules.duplicates import Lookup
from rules.identifiers import identifier_key, loose_number_key

# How long a verdict the sink never confirms is kept (one it dead-lettered, one of a batch undone
# and decided again by another worker): the sink confirms every other one, seconds after it was made
# when it keeps up, and after an outage of processscheduler however long it lasted. Two minutes
# were not enough: after a three-minute outage the PO agent's partition was let go before the
# sink's, and a possible duplicate of a verdict not yet recorded went to the RPA bot. What is kept
# past its time errs towards a hold (a duplicate check finds an invoice no sink recorded), and
# back-pressure keeps what waits for the sink to about two batches: `MOST` is the bound besides.
KEEP = timedelta(hours=24)
MOST = 100_000  # unconfirmed verdicts kept, the oldest let go first: some 30 MiB

Key = tuple[str, str, str | Decimal]  # (vendor key, "number" | "loose" | "total", value)
# A verdict made: its invoice version, the invoice, its event id, and the partition of its PO's work.
Decided = tuple[int, KnownInvoice, str, int]
# Where a version decided is: its invoice id and version, PO, status, the event that set it, and the
# partition of its PO's work.
Placed = tuple[str, int, str | None, str, str, int]


def _asked(vendor: str, number: str, loose: str, total: Decimal | None) -> list[Key]:
    keys: list[Key] = [(vendor, "number", number), (vendor, "loose", loose)]
    if total is not None:
        keys.append((vendor, "total", total))
    return keys


def _keys(known: KnownInvoice) -> list[Key]:
    """The keys a lookup of the same invoice would ask for: filed and asked alike."""
    number = known.invoice_number
    return _asked(identifier_key(known.vendor_id), identifier_key(number), loose_number_key(number),
                  known.total_amount)


class RecentlyDecided:
    def __init__(self, keep: timedelta = KEEP, most: int = MOST):
        self.keep, self.most = keep, most
        # invoice id -> its newest verdict: when, of which version, as the checks see it, its event
        self._latest: dict[str, tuple[datetime, int, KnownInvoice, str]] = {}
        self._partition: dict[str, int] = {}  # invoice id -> the partition of its PO's work
        self._filed: dict[Key, set[str]] = {}  # key -> the invoice ids filed under it
        self._made: deque[tuple[datetime, str]] = deque()  # (when, invoice id), oldest first
        # (invoice id, version) -> (when, PO, status, event id, partition), the oldest first
        self._versions: OrderedDict[tuple[str, int], tuple[datetime, str | None, str, str, int]] = OrderedDict()
        # invoice id -> its versions in `_versions`: a batch's edits and deletes ask for a few invoices
        # among up to `MOST` versions kept, once a batch.
        self._versions_by_invoice: dict[str, set[int]] = {}

    def add(self, decided: Iterable[Decided], now: datetime) -> None:
        for version, known, event, partition in decided:
            self._drop(known.invoice_id)  # judged again: filed under its new keys only
            self._latest[known.invoice_id] = (now, version, known, event)
            self._partition[known.invoice_id] = partition
            for key in _keys(known):
                self._filed.setdefault(key, set()).add(known.invoice_id)
            self._made.append((now, known.invoice_id))
        self._forget_before(now - self.keep)
        if len(self._made) > 2 * len(self._latest) + 1_024:  # mostly verdicts the sink has confirmed since
            self._made = deque(made for made in self._made if self._is_latest(*made))

    def placed(self, versions: Iterable[Placed], now: datetime) -> None:
        """The invoice versions a batch decided, each where it is now and as what."""
        for invoice_id, version, po_number, status, event, partition in versions:
            self._versions.pop((invoice_id, version), None)  # the newest last
            self._versions[invoice_id, version] = (now, po_number, status, event, partition)
            self._versions_by_invoice.setdefault(invoice_id, set()).add(version)
        while self._versions and (next(iter(self._versions.values()))[0] < now - self.keep
                                  or len(self._versions) > self.most):
            self._unplace(next(iter(self._versions)))

    def versions_of(self, invoice_ids: Collection[str]) -> list[InvoiceVersionAt]:
        """The versions of these invoices decided here that processscheduler does not show as they
        are now (`ProcessScheduler.versions_of`)."""
        found = []
        for invoice_id in invoice_ids:
            for version in sorted(self._versions_by_invoice.get(invoice_id, ())):
                _, po_number, status, _, _ = self._versions[invoice_id, version]
                found.append(InvoiceVersionAt(invoice_id, version, po_number, status))
        return found

    def gave_up(self, invoice_id: str, version: int, status: str) -> None:
        """The version kept was withdrawn or superseded since its verdict: the checks see it so, as
        processscheduler will (kept as ready, a vendor's upload again after its withdrawal was a
        DUPLICATE_INVOICE of it, which no clerk may release)."""
        latest = self._latest.get(invoice_id)
        if latest is not None and latest[1] == version:
            self._latest[invoice_id] = (latest[0], version, replace(latest[2], status=status), latest[3])

    def recorded(self, events: Iterable[tuple[str, int, str]]) -> None:
        """(invoice id, version, event id) of what the sink wrote to processscheduler. The sink
        writes an invoice's events in the order they were made: an earlier event of the version
        (the verdict this one replaced, a status change before it) is older than the verdict kept."""
        for invoice_id, version, event in events:
            if (placed := self._versions.get((invoice_id, version))) is not None and placed[3] == event:
                self._unplace((invoice_id, version))
            latest = self._latest.get(invoice_id)
            if latest is not None and (latest[1] < version or (latest[1] == version and latest[3] == event)):
                self._drop(invoice_id)

    def gone(self, partitions: Collection[int]) -> None:
        """The PO partitions a rebalance gave another worker: their verdicts are that worker's sink's
        to record, and this one's never confirms them. Kept for the day, a vendor's upload again
        after its withdrawal, on a PO this worker kept, was a DUPLICATE_INVOICE of the verdict left
        behind, which no clerk may release; dropped, they are processscheduler's to show, as any
        other worker's verdicts are."""
        for invoice_id in [invoice_id for invoice_id, partition in self._partition.items() if partition in partitions]:
            self._drop(invoice_id)
        for version in [version for version, placed in self._versions.items() if placed[4] in partitions]:
            self._unplace(version)

    def matching(self, lookups: Iterable[Lookup], now: datetime) -> list[KnownInvoice]:
        """What a store would return for the lookups: those of the same total only when dated within
        the lookup's window, as processscheduler's query finds them."""
        self._forget_before(now - self.keep)
        found: set[str] = set()
        for lookup in lookups:
            for key in _asked(lookup.vendor_key, lookup.number_key, lookup.loose_key, lookup.asked_total):
                filed = self._filed.get(key, ())
                if key[1] == "total":
                    found.update(invoice_id for invoice_id in filed
                                 if lookup.dated_within(self._latest[invoice_id][2].invoice_date))
                else:
                    found.update(filed)
        return [self._latest[invoice_id][2] for invoice_id in sorted(found)]

    def __len__(self) -> int:
        return len(self._latest)

    def _forget_before(self, moment: datetime) -> None:
        while self._made and (self._made[0][0] < moment or len(self._latest) > self.most):
            made_at, invoice_id = self._made.popleft()
            if self._is_latest(made_at, invoice_id):  # not judged again since, nor confirmed
                self._drop(invoice_id)

    def _is_latest(self, made_at: datetime, invoice_id: str) -> bool:
        latest = self._latest.get(invoice_id)
        return latest is not None and latest[0] == made_at

    def _unplace(self, version: tuple[str, int]) -> None:
        del self._versions[version]
        versions = self._versions_by_invoice[version[0]]
        versions.discard(version[1])
        if not versions:
            del self._versions_by_invoice[version[0]]

    def _drop(self, invoice_id: str) -> None:
        self._partition.pop(invoice_id, None)
        latest = self._latest.pop(invoice_id, None)
        if latest is None:
            return
        for key in _keys(latest[2]):
            self._filed[key].discard(invoice_id)
            if not self._filed[key]:
                del self._filed[key]
