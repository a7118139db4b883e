"""The per-PO ledgers in the PO agent's keyed state: one value per purchase order.

A ledger holds only the invoice versions that can still change (see `rules.po_ledger`), so a
value stays small however long the PO's history grows. Its partition is the PO's partition of
the work topics, and its changelog partition the same number: the state moves with the PO.
"""

from __future__ import annotations

from collections import OrderedDict

from rules.errors import DataError
from rules.po_ledger import PurchaseOrderLedger
from streams.settings import Settings
from streams.state import StateWrites, Store


def changelog_topic(settings: Settings) -> str:
    return f"{settings.app_id}-po-ledgers-changelog"


CACHED_LEDGERS = 1_000
# A ledger is one changelog record: past Kafka's message size the whole batch could never commit.
MAX_LEDGER_BYTES = 1_000_000


class LedgerStore:
    """Reads and writes ledgers as JSON in the store. The ledgers of the POs at work are kept
    decoded too, by the bytes they were read from: a busy PO is not parsed again on every batch,
    and the rules never change a ledger they were given (they copy on write)."""

    def __init__(self, settings: Settings):
        self.store = Store("po-ledgers", changelog_topic(settings), settings.store, settings.data_dir)
        self._decoded: OrderedDict[str, tuple[bytes, PurchaseOrderLedger]] = OrderedDict()

    def load(self, state: StateWrites, po_number: str) -> tuple[PurchaseOrderLedger | None, bytes | None]:
        """The ledger, and the bytes it was read from (to tell whether it changed)."""
        raw = state.get(po_number)
        if not raw:
            return None, raw
        cached = self._decoded.get(po_number)
        if cached is not None and cached[0] == raw:
            self._decoded.move_to_end(po_number)
            return cached[1], raw
        ledger = PurchaseOrderLedger.model_validate_json(raw)
        self._keep(po_number, raw, ledger)
        return ledger, raw

    def save(self, state: StateWrites, ledger: PurchaseOrderLedger, before: bytes | None) -> None:
        if before is None and ledger == PurchaseOrderLedger(po_number=ledger.po_number):
            return  # work that left no trace (a Sampro change of a PO with nothing held) keeps no ledger
        raw = ledger.model_dump_json().encode()
        if len(raw) > MAX_LEDGER_BYTES:  # the message that made it so is dead-lettered, the rest goes on
            raise DataError(f"PO {ledger.po_number} would hold {len(ledger.records):,} invoice versions in "
                            f"{len(raw):,} bytes, more than its ledger can keep ({MAX_LEDGER_BYTES:,}); "
                            f"send it again once the PO's waiting invoices are entered")
        if raw != before:  # a replayed message leaves the ledger as it was: nothing to write
            state.set(ledger.po_number, raw)
            self._keep(ledger.po_number, raw, ledger)

    def _keep(self, po_number: str, raw: bytes, ledger: PurchaseOrderLedger) -> None:
        self._decoded[po_number] = (raw, ledger)
        self._decoded.move_to_end(po_number)
        if len(self._decoded) > CACHED_LEDGERS:
            self._decoded.popitem(last=False)
