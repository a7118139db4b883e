"""The decision service: what happens to a batch of work taken from the purchase-order stream.

One batch costs one Sampro query for the PO snapshots and one pair of queries for the
invoices seen before (entered in Sampro, decided by the pipeline). Everything else is the
pure per-PO ledger in `rules.po_ledger`, one handler per kind of work. All reads happen before
the first ledger changes, so a dependency that fails leaves the batch untouched.
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from connectors.ports import ProcessScheduler, PurchaseOrderReader
from rules.context import KnownInvoice
from rules.lifecycle import (
    DispatchApproved,
    InvoiceSubmitted,
    InvoiceWithdrawn,
    ReleaseRequested,
)
from rules.models import PurchaseOrder, RpaCompletion, Verdict
from rules.po_ledger import (
    DispatchMode,
    Emitted,
    Judge,
    Outcome,
    PurchaseOrderLedger,
    approve_dispatch,
    complete_rpa,
    record_key,
    release_invoice,
    submit_invoice,
    withdraw_invoice,
)

PurchaseOrderWork = InvoiceSubmitted | InvoiceWithdrawn | RpaCompletion | ReleaseRequested | DispatchApproved
Handler = Callable[[PurchaseOrderLedger, Any, Judge, DispatchMode], Outcome]


# One handler per kind of work on a PO's stream: a new kind needs its ledger function and a line here.
HANDLERS: dict[type, Handler] = {
    InvoiceSubmitted: submit_invoice,
    InvoiceWithdrawn: withdraw_invoice,
    RpaCompletion: complete_rpa,
    ReleaseRequested: release_invoice,
    DispatchApproved: approve_dispatch,
}
WORK_KINDS = tuple(HANDLERS)

# (purchase order or None when Sampro has no such PO, invoices seen before, now) -> Judge
JudgeFactory = Callable[[PurchaseOrder | None, list[KnownInvoice], datetime], Judge]


@dataclass
class DecisionDesk:
    """Everything a batch needs besides the messages: Sampro, processscheduler, the rules."""

    purchase_orders: PurchaseOrderReader
    scheduler: ProcessScheduler
    judge_for: JudgeFactory
    dispatch: DispatchMode = "automatic"

    def decide(
        self, batch: Sequence[PurchaseOrderWork], ledgers: MutableMapping[str, PurchaseOrderLedger], now: datetime
    ) -> list[Emitted]:
        """Applies the batch in order; `ledgers` is updated in place, PO by PO."""
        touched = {work.po_number for work in batch}
        snapshots = self.purchase_orders.fetch(touched)
        known = self._invoices_seen_before(batch, ledgers)
        emitted: list[Emitted] = []
        for work in batch:
            ledger = ledgers.get(work.po_number) or PurchaseOrderLedger(po_number=work.po_number)
            judge = self.judge_for(snapshots.get(work.po_number), known, now)
            outcome = HANDLERS[type(work)](ledger, work, judge, self.dispatch)
            ledgers[work.po_number] = outcome.ledger
            known.extend(_newly_known(outcome.emitted, outcome.ledger))
            emitted.extend(outcome.emitted)
        return emitted

    def _invoices_seen_before(
        self, batch: Sequence[PurchaseOrderWork], ledgers: MutableMapping[str, PurchaseOrderLedger]
    ) -> list[KnownInvoice]:
        """Entered and decided invoices sharing a vendor + number with anything this batch may judge:
        its submissions, and the invoices parked on a PO that this batch may free."""
        documents = [work.document for work in batch if isinstance(work, InvoiceSubmitted)]
        for po_number in _pos_it_may_free(batch, ledgers):
            ledger = ledgers[po_number]
            documents.extend(ledger.record(key).submission.document for key in ledger.parked)
        pairs = {
            (str(doc["vendor_id"]).strip(), str(doc["invoice_number"]).strip())
            for doc in documents
            if isinstance(doc, dict) and doc.get("vendor_id") and doc.get("invoice_number")
        }
        if not pairs:
            return []
        return [*self.purchase_orders.entered_invoices(pairs), *self.scheduler.decided_invoices(pairs)]


def _pos_it_may_free(batch: Sequence[PurchaseOrderWork], ledgers: MutableMapping[str, PurchaseOrderLedger]) -> set[str]:
    """POs with parked invoices and work that can end the one holding the PO: a completion, a
    withdrawal, a new version. A new invoice on a held PO only parks behind it."""
    pos = set()
    for work in batch:
        ledger = ledgers.get(work.po_number)
        if ledger is None or not ledger.parked:
            continue
        if not isinstance(work, InvoiceSubmitted) or work.invoice_id in ledger.latest:
            pos.add(work.po_number)
    return pos


def _newly_known(emitted: Sequence[Emitted], ledger: PurchaseOrderLedger) -> list[KnownInvoice]:
    """Verdicts of this batch, so a duplicate later in the same batch is caught too."""
    known = []
    for message in emitted:
        if isinstance(message, Verdict) and message.invoice_id and message.invoice_version is not None:
            record = ledger.record(record_key(message.invoice_id, message.invoice_version))
            doc = record.submission.document if record is not None else {}
            if doc.get("vendor_id") and doc.get("invoice_number"):
                known.append(
                    KnownInvoice(
                        invoice_id=message.invoice_id,
                        vendor_id=str(doc["vendor_id"]).strip(),
                        invoice_number=str(doc["invoice_number"]).strip(),
                        status=message.status.value,
                    )
                )
    return known
