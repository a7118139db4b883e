"""The per-PO ledgers in the PO agent's keyed state: one value per purchase order.

A ledger holds only the invoice versions that can still change (see `rules.po_ledger`), so a
value stays small however long the PO's history grows. Its partition is the PO's partition of
the work topics, and its changelog partition the same number: the state moves with the PO.
"""

from __future__ import annotations

from rules.po_ledger import PurchaseOrderLedger
from streams.settings import Settings
from streams.state import StateWrites, Store


def changelog_topic(settings: Settings) -> str:
    return f"{settings.app_id}-po-ledgers-changelog"


class LedgerStore:
    def __init__(self, settings: Settings):
        self.store = Store("po-ledgers", changelog_topic(settings), settings.store, settings.data_dir)

    @staticmethod
    def load(state: StateWrites, po_number: str) -> tuple[PurchaseOrderLedger | None, bytes | None]:
        """The ledger, and the bytes it was read from (to tell whether it changed)."""
        raw = state.get(po_number)
        return (PurchaseOrderLedger.model_validate_json(raw) if raw else None), raw

    @staticmethod
    def save(state: StateWrites, ledger: PurchaseOrderLedger, before: bytes | None) -> None:
        raw = ledger.model_dump_json().encode()
        if raw != before:  # a replayed message leaves the ledger as it was: nothing to write
            state.set(ledger.po_number, raw)
