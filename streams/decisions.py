"""The decision service: what happens to a batch of work taken from the purchase-order stream.

One batch costs one Sampro query for the PO snapshots and one pair of queries for the
invoices seen before (entered in Sampro, decided by the pipeline); one more only when it has a
vendor's new version of an invoice, or a delete of one (where the older versions are). Everything else is the
pure per-PO ledger in `rules.po_ledger`, one handler per kind of work. All reads happen before
the first ledger changes, so a dependency that fails leaves the batch untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from connectors.ports import ProcessScheduler, PurchaseOrderReader
from rules.context import KnownInvoice, KnownInvoices
from rules.duplicates import GIVE_UP_THEIR_NUMBER, known_from, lookups_for
from rules.lifecycle import (
    DispatchApproved,
    InvoiceReplaced,
    InvoiceStatus,
    InvoiceSubmitted,
    InvoiceWithdrawn,
    PurchaseOrderChanged,
    ReleaseRequested,
    StatusChanged,
)
from rules.models import PurchaseOrder, RpaCompletion, UnreadablePurchaseOrder, Verdict
from rules.po_ledger import (
    DispatchMode,
    Emitted,
    Judge,
    Outcome,
    PurchaseOrderLedger,
    approve_dispatch,
    complete_rpa,
    counted_in_flight,
    may_free,
    recheck_held,
    rechecked_on_po_change,
    record_key,
    release_invoice,
    replace_invoice,
    submit_invoice,
    verdict_event_id,
    waiting_for_completion,
    withdraw_invoice,
)
from rules.policy import Policy
from streams.recently_decided import Decided, Placed, RecentlyDecided

log = logging.getLogger(__name__)
PurchaseOrderWork = (InvoiceSubmitted | InvoiceWithdrawn | InvoiceReplaced | RpaCompletion | ReleaseRequested
                     | DispatchApproved | PurchaseOrderChanged)
Handler = Callable[[PurchaseOrderLedger, Any, Judge, DispatchMode], Outcome]


# One handler per kind of work on a PO's stream: a new kind needs its ledger function and a line here.
HANDLERS: dict[type, Handler] = {
    InvoiceSubmitted: submit_invoice,
    InvoiceWithdrawn: withdraw_invoice,
    InvoiceReplaced: replace_invoice,
    RpaCompletion: complete_rpa,
    ReleaseRequested: release_invoice,
    DispatchApproved: approve_dispatch,
    PurchaseOrderChanged: recheck_held,
}
WORK_KINDS = tuple(HANDLERS)
INVOICE_WORK = tuple(kind for kind in WORK_KINDS if kind is not PurchaseOrderChanged)  # work on one invoice
# An older version of an invoice in one of these needs nothing when a newer one names another PO.
GONE = frozenset({InvoiceStatus.WITHDRAWN.value, InvoiceStatus.SUPERSEDED.value})
DECIDE = "decide-purchase-order-work"  # the PO agent's flow, under which the desk's stages are timed

# (purchase order as Sampro gave it, None when it has no such PO; invoices seen before; now) -> Judge
JudgeFactory = Callable[[PurchaseOrder | UnreadablePurchaseOrder | None, KnownInvoices, datetime], Judge]


@dataclass
class Decisions:
    """What a batch decided: the messages to send, and what the duplicate checks are to remember."""

    messages: list[Emitted | InvoiceReplaced | InvoiceWithdrawn] = field(default_factory=list)
    decided: list[Decided] = field(default_factory=list)  # each verdict made
    placed: list[Placed] = field(default_factory=list)  # each invoice version's PO and status now


@dataclass
class DecisionDesk:
    """Everything a batch needs besides the messages: Sampro, processscheduler, the rules."""

    purchase_orders: PurchaseOrderReader
    scheduler: ProcessScheduler
    judge_for: JudgeFactory
    dispatch: DispatchMode = "automatic"
    timed: Callable[[str], AbstractContextManager[None]] = lambda stage: nullcontext()  # the stage metric
    recent: RecentlyDecided = field(default_factory=RecentlyDecided)  # until the sink has recorded them
    # The rules' policy, the judge's: each vendor's duplicate window says how far back and ahead of an
    # invoice's date its same-total candidates are asked for.
    policy: Policy = field(kw_only=True)

    def decide(
        self, batch: Sequence[PurchaseOrderWork], ledgers: MutableMapping[str, PurchaseOrderLedger], now: datetime,
        partition_of: Mapping[str, int] | None = None,
    ) -> Decisions:
        """Applies the batch in order; `ledgers` is updated in place, PO by PO. Besides what the
        ledgers emit: a message to each other PO whose versions of an invoice a new one replaces, or
        whose invoice the vendor deleted where its newest version is.
        What the duplicate checks are to remember of it waits for `remember`, with the partition
        of each PO's work (`partition_of`), which a rebalance may give another worker."""
        partition_of = partition_of or {}
        rechecked = _rechecked(batch, ledgers)
        # The POs whose snapshot the rules may read: every PO with work on an invoice, and a PO that
        # Sampro changed only when it holds an invoice the change may clear. Most of Sampro's changes
        # (an invoice entered, a receipt, a new PO) are of POs with nothing held: they read nothing.
        read = {work.po_number for work in batch if not isinstance(work, PurchaseOrderChanged)} | set(rechecked)
        with self.timed("sampro read"):
            snapshots = self.purchase_orders.fetch(read)
        for unreadable in (po for po in snapshots.values() if isinstance(po, UnreadablePurchaseOrder)):
            log.warning("Sampro's PO %s cannot be read, its invoices wait as po_not_found until it changes: %s",
                        unreadable.po_number, unreadable.problem)
        known = KnownInvoices(self._invoices_seen_before(batch, ledgers, rechecked, now))
        elsewhere = self._told_elsewhere(batch, ledgers)
        decisions = Decisions()
        # Every change of a PO in the batch would judge its held invoices again against the one
        # snapshot read above: the last change does it once, for the others too (at month end the
        # bot enters dozens of invoices on a blanket PO, each a change, and hundreds may be held).
        changes: dict[str, list[PurchaseOrderChanged]] = {}
        for work in batch:
            if isinstance(work, PurchaseOrderChanged):
                changes.setdefault(work.po_number, []).append(work)
        with self.timed("rules and ledger"):
            for work in batch:
                if isinstance(work, PurchaseOrderChanged) and changes[work.po_number][-1] is not work:
                    continue
                ledger = ledgers.get(work.po_number) or PurchaseOrderLedger(po_number=work.po_number)
                judge = self.judge_for(snapshots.get(work.po_number), known, now)
                if isinstance(work, PurchaseOrderChanged):
                    outcome = recheck_held(ledger, work, judge, self.dispatch, covered=changes[work.po_number][:-1])
                else:
                    outcome = HANDLERS[type(work)](ledger, work, judge, self.dispatch)
                for why in outcome.unjudged:
                    log.error("PO %s: the rules failed on %s; the PO went on", work.po_number, why)
                ledgers[work.po_number] = outcome.ledger
                decisions.decided += _newly_known(outcome.emitted, outcome.ledger,  # the judge knows them already
                                                  partition_of.get(work.po_number, -1))
                decisions.placed += _placed(outcome.emitted, partition_of.get(work.po_number, -1))
                decisions.messages.extend(outcome.emitted)
        decisions.messages.extend(elsewhere)
        return decisions

    def remember(self, decisions: Decisions, now: datetime) -> None:
        """Once the batch's messages are out and its ledgers saved: a verdict dead-lettered instead
        (one Kafka would refuse) was never decided, and, remembered, made the next invoice of its
        vendor and number a DUPLICATE_INVOICE of it, which no clerk may release."""
        for message in decisions.messages:
            if isinstance(message, StatusChanged) and message.status in GIVE_UP_THEIR_NUMBER:
                self.recent.gave_up(message.invoice_id, message.invoice_version, message.status.value)
        self.recent.add(decisions.decided, now)
        self.recent.placed(decisions.placed, now)

    def _told_elsewhere(
        self, batch: Sequence[PurchaseOrderWork], ledgers: Mapping[str, PurchaseOrderLedger],
    ) -> list[InvoiceReplaced | InvoiceWithdrawn]:
        """A vendor's new version of an invoice may name another PO than an older one: that PO's
        agent would never hear of it, and would keep the older version in AP's queue, or release
        it to the RPA bot. So with the vendor's delete, which reaches the PO its newest version
        names: an older version the bot had on another PO was entered with nothing in its history
        for AP (no credit note asked for), one in Sampro already too. Where the older versions are:
        processscheduler; the versions this worker decided that the sink has not recorded yet
        (`self.recent`: in a burst the sink is a batch or two behind, and version 1 at the bot,
        moved to another PO and deleted there meanwhile, was entered with no credit note asked
        for); and this batch itself (after a backlog it may hold several versions). One query,
        only for a batch with new versions or deletes of one (both are few); a version its PO has
        seen already is a replay, and asks nothing, and a delete told to another PO is not told on
        from there."""
        submitted = [work for work in batch if isinstance(work, InvoiceSubmitted)]
        here = {(work.invoice_id, work.version, work.po_number) for work in submitted}
        newest: dict[str, InvoiceSubmitted | InvoiceWithdrawn] = {}
        for work in batch:
            seen = ledgers.get(work.po_number)
            if isinstance(work, InvoiceSubmitted):
                fresh = getattr(seen, "latest", {}).get(work.invoice_id, 0) < work.version
            elif isinstance(work, InvoiceWithdrawn):  # of a version this PO has (or this batch brings), not one told
                fresh = ((work.invoice_id, work.version, work.po_number) in here
                         or (seen is not None and seen.record(record_key(work.invoice_id, work.version)) is not None))
            else:
                continue
            # The delete of a version wins over its upload in the same batch (an edit, then a delete).
            before = getattr(newest.get(work.invoice_id), "version", 0)
            if fresh and work.version > 1 and (work.version > before or (
                    work.version == before and isinstance(work, InvoiceWithdrawn))):
                newest[work.invoice_id] = work
        if not newest:
            return []
        with self.timed("processscheduler read"):
            found = {(v.invoice_id, v.invoice_version): v for v in self.scheduler.versions_of(newest)}
        found |= {(v.invoice_id, v.invoice_version): v for v in self.recent.versions_of(newest)}  # newer
        older = [(v.invoice_id, v.invoice_version, v.po_number) for v in found.values() if v.status not in GONE]
        older += [(work.invoice_id, work.version, work.po_number) for work in submitted]
        told: dict[tuple[str, str], InvoiceReplaced | InvoiceWithdrawn] = {}
        for invoice_id, version, po_number in older:
            newer = newest.get(invoice_id)
            if newer is None or po_number in (None, newer.po_number) or version >= newer.version:
                continue
            if isinstance(newer, InvoiceWithdrawn):
                told[(invoice_id, po_number)] = newer.model_copy(update={"po_number": po_number})
            else:
                told[(invoice_id, po_number)] = InvoiceReplaced(
                    invoice_id=invoice_id, version=newer.version, po_number=po_number,
                    replaced_on=newer.po_number, replaced_at=newer.received_at)
        return list(told.values())

    def _invoices_seen_before(
        self, batch: Sequence[PurchaseOrderWork], ledgers: MutableMapping[str, PurchaseOrderLedger],
        rechecked: Mapping[str, list[str]], now: datetime,
    ) -> list[KnownInvoice]:
        """Entered and decided invoices that may be duplicates of anything this batch may judge:
        its submissions, the invoices parked on a PO that this batch may free (and the held ones
        waiting there for the bot's completion, or judged with its quantities in flight: judged
        without them, MP-H went to the bot though AP had keyed it into Sampro by hand), and the held
        ones that a Sampro change may clear."""
        documents = [work.document for work in batch if isinstance(work, InvoiceSubmitted)]
        for work in batch:  # a release or an approval is judged again when it is handed over (`_Update.held_anew`)
            if isinstance(work, ReleaseRequested | DispatchApproved) and work.po_number in ledgers:
                released = ledgers[work.po_number].record(record_key(work.invoice_id, work.invoice_version))
                documents.extend([released.submission.document] if released is not None else [])
        for po_number in {work.po_number for work in batch if may_free(ledgers.get(work.po_number), work)}:
            ledger = ledgers[po_number]
            documents.extend(ledger.listed(key).submission.document
                             for key in [*ledger.parked, *waiting_for_completion(ledger), *counted_in_flight(ledger)])
        for po_number, keys in rechecked.items():
            documents.extend(ledgers[po_number].listed(key).submission.document for key in keys)
        lookups = lookups_for(documents, self.policy)
        if not lookups:
            return []
        with self.timed("sampro read"):
            entered = self.purchase_orders.entered_invoices(lookups)
        with self.timed("processscheduler read"):
            recorded = self.scheduler.decided_invoices(lookups)
        return [*entered, *recorded, *self.recent.matching(lookups, now)]


def _rechecked(batch: Sequence[PurchaseOrderWork], ledgers: Mapping[str, PurchaseOrderLedger]) -> dict[str, list[str]]:
    """Per PO that Sampro changed, the held invoices the change may clear (none: left out); found
    once per PO, not once per change of it in the batch."""
    changed = {work.po_number for work in batch if isinstance(work, PurchaseOrderChanged)}
    found = {po: rechecked_on_po_change(ledgers[po]) for po in changed if po in ledgers}
    return {po: keys for po, keys in found.items() if keys}


def _placed(emitted: Sequence[Emitted], partition: int) -> list[Placed]:
    """Where each invoice version the messages decide is, and as what, with the event that says so:
    kept until the sink has recorded that event (`RecentlyDecided.recorded`)."""
    placed: list[Placed] = []
    for message in emitted:
        if isinstance(message, Verdict) and message.invoice_id and message.invoice_version is not None:
            event = verdict_event_id(message.invoice_id, message.invoice_version, message.status.value,
                                     message.rules_version, message.judged_after, message.reasons)
            placed.append((message.invoice_id, message.invoice_version, message.po_number, message.status.value,
                           event, partition))
        elif isinstance(message, StatusChanged):
            placed.append((message.invoice_id, message.invoice_version, message.po_number, message.status.value,
                           message.event_id, partition))
    return placed


def _newly_known(emitted: Sequence[Emitted], ledger: PurchaseOrderLedger, partition: int) -> list[Decided]:
    """Verdicts of this batch, with their invoice versions and events, for the duplicate checks of
    later batches until processscheduler has them (the judge knew each as it made it)."""
    known = []
    for message in emitted:
        if isinstance(message, Verdict) and message.invoice_id and message.invoice_version is not None:
            record = ledger.record(record_key(message.invoice_id, message.invoice_version))
            if record is not None and (seen := known_from(message.invoice_id, message.status.value,
                                                          record.submission.document)) is not None:
                event = verdict_event_id(message.invoice_id, message.invoice_version, message.status.value,
                                         message.rules_version, message.judged_after, message.reasons)
                known.append((message.invoice_version, seen, event, partition))
    return known
