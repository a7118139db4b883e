"""Per-PO state in one Faust table: a header per PO, and each invoice record under its own key.

Split so that a message reads and writes what it touches, not the PO's whole history: a PO
with many invoices would otherwise rewrite every earlier verdict on every message. Records
are fetched lazily through the ledger's shelf.

A crash must never leave a header beside records it does not describe. Record values are
therefore never overwritten: each change is a new revision under a new key (`R:<key>#<n>`),
the header names the revision it stands on, and the old revision is deleted after the
header is written. Everything of one PO goes to one changelog partition in that order, and a
crash loses only a suffix of a partition, so what survives is either the old header with its
old records, or the new header with its new ones (plus, at worst, a few unreferenced keys).

Faust sends a table change to the changelog partition of the *current* event. A batch taken
from the stream holds events of several partitions, so each PO's state is written while its
own event is the current one: the changelog stays co-partitioned with the PO's topics.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import faust
from faust.streams import _current_event

from rules.po_ledger import InvoiceRecord, PurchaseOrderLedger
from streams.settings import Settings


class LedgerStore:
    def __init__(self, app: faust.App, settings: Settings):
        self.table = app.Table("po-ledgers", default=None, partitions=settings.topic_partitions, key_type=str,
                               value_type=bytes)

    def load(self, event: faust.types.EventT, po_number: str) -> LoadedLedger | None:
        with _as_current(event):
            raw = self.table.get(f"H:{po_number}")
        if not raw:
            return None
        header = json.loads(raw)
        return LoadedLedger(self.table, event, PurchaseOrderLedger.model_validate(header["ledger"]),
                            header["revisions"])

    def save(self, event: faust.types.EventT, ledger: PurchaseOrderLedger, before: LoadedLedger | None) -> None:
        revisions = dict(before.revisions) if before else {}
        loaded = before.loaded if before else {}
        replaced = []
        with _as_current(event):
            for key, record in ledger.records.items():
                old = loaded.get(key)
                if record is old or record == old:
                    continue
                if key in revisions:
                    replaced.append(f"R:{key}#{revisions[key]}")
                revisions[key] = revisions.get(key, 0) + 1
                self.table[f"R:{key}#{revisions[key]}"] = record.model_dump_json().encode()
            header = {"ledger": ledger.model_dump(mode="json", exclude={"records"}), "revisions": revisions}
            self.table[f"H:{ledger.po_number}"] = json.dumps(header).encode()
            for key in replaced:
                del self.table[key]


async def hand_over_changelog(app: faust.App) -> None:
    """Waits until every table change is with the Kafka client, before the batch is acked.

    Table writes wait in Faust's producer buffer, and the flush Faust does before committing
    offsets gives up on it after 0.1 s without progress: a commit could then cover a ledger
    change that a crash loses. Draining here ties each batch's state to its offsets.
    """
    buffer = app.producer.buffer
    while buffer.size:
        await buffer.flush()


class LoadedLedger:
    """A PO's header as stored, and the records fetched for it so far (to tell what changed)."""

    def __init__(self, table: faust.Table, event: faust.types.EventT, ledger: PurchaseOrderLedger,
                 revisions: dict[str, int]):
        self.table, self.event, self.revisions = table, event, revisions
        self.loaded: dict[str, InvoiceRecord] = {}
        self.ledger = ledger.with_shelf(self._fetch)

    def _fetch(self, key: str) -> InvoiceRecord | None:
        if key not in self.loaded:
            revision = self.revisions.get(key)
            if not revision:
                return None
            with _as_current(self.event):
                raw = self.table.get(f"R:{key}#{revision}")
            if raw is None:
                return None
            self.loaded[key] = InvoiceRecord.model_validate_json(raw)
        return self.loaded[key]


@contextmanager
def _as_current(event: faust.types.EventT) -> Iterator[None]:
    """Reads and writes go to the PO's own partition of the store and of the changelog."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)
