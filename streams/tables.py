"""The per-PO ledger table, and writing it from a batch of events.

Faust sends a table change to the changelog partition of the *current* event. A batch taken
from the stream holds events of several partitions, so each ledger is written while its own
PO's event is the current one: the changelog stays co-partitioned with the PO's topics.
"""

from __future__ import annotations

import weakref

import faust
from faust.streams import _current_event

from rules.po_ledger import PurchaseOrderLedger
from streams.settings import Settings


def ledger_table(app: faust.App, settings: Settings) -> faust.Table:
    return app.Table(
        "po-ledgers", default=None, partitions=settings.topic_partitions,
        key_type=str, value_type=bytes,
    )


def read_ledger(table: faust.Table, po_number: str) -> PurchaseOrderLedger | None:
    raw = table.get(po_number)
    return PurchaseOrderLedger.model_validate_json(raw) if raw else None


def write_ledger(table: faust.Table, event: faust.types.EventT, ledger: PurchaseOrderLedger) -> None:
    token = _current_event.set(weakref.ref(event))
    try:
        table[ledger.po_number] = ledger.model_dump_json().encode()
    finally:
        _current_event.reset(token)
