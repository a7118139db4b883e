"""rpa.requests -> the RPA bot's mailbox. An unreachable mailbox holds the partition; an email that
can never be sent fails the hand-off, so the PO goes on to its next invoice. Each invoice takes its
vendor's invoice number first: one whose number went to the bot with another invoice (a duplicate
that two workers passed at the same moment) fails its hand-off for good instead of being emailed (the
sent log keeps it failed, as a refusal by the mailbox: rpa.requests read again fails it again). One held
back by an older version of its invoice on another PO also tells that PO it is replaced. One the
vendor withdrew while it waited for the mailbox (it, or the newest version of its invoice, on
another PO maybe) fails its hand-off, which withdraws it."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from connectors.ports import NumberClaim
from rules.duplicates import hand_off_key, handed_over_already
from rules.lifecycle import InvoiceReplaced, RpaRequest
from rules.models import CompletionOutcome, RpaCompletion
from rules.po_ledger import (
    entered_as_another_version,
    finished_already,
    latest_hand_offs,
    withdrawal_notes,
    withdrawn_in_a_newer_version,
)
from streams.failures import describe
from streams.runtime import Batch, Flow

if TYPE_CHECKING:
    from streams.bootstrap import Pipeline

log = logging.getLogger(__name__)


def _failed(request: RpaRequest, why: str, error: str) -> RpaCompletion:
    # Named by the hand-off, so that the failure of a hand-off again after a release is news too.
    return RpaCompletion(event_id=f"mail:{request.invoice_id}:v{request.invoice_version}:a{request.attempt}:{why}",
                         invoice_id=request.invoice_id, invoice_version=request.invoice_version,
                         po_number=request.po_number, outcome=CompletionOutcome.FAILURE, error=error,
                         occurred_at=datetime.now(UTC), attempt=request.attempt)


def _hand_off(request: RpaRequest) -> tuple[str, int, int]:
    return request.invoice_id, request.invoice_version, request.attempt


def register(pipeline: Pipeline) -> None:
    topics, codec, mailer, scheduler = pipeline.topics, pipeline.codec, pipeline.mailer, pipeline.scheduler
    identifiers = pipeline.policy.identifiers

    def send(batch: Batch) -> None:
        # Those emailed already (rpa.requests read again: a new consumer group, an offset reset) take
        # no number: one whose number a newer version has taken since was reported "not handed to the
        # RPA bot", a FAILURE on the audit topic for an email the bot had.
        unsent, kept_failed = mailer.unsent(batch.messages)
        requests = latest_hand_offs(unsent)
        # Failed at the gate below before (rpa.requests read again): failed again, not asked again. Asked
        # again once the number was free, each was emailed while processscheduler showed it rpa_failed.
        for request in requests:
            if (why := kept_failed.get(_hand_off(request))) is not None:
                batch.emit(topics.completions, request.po_number, _failed(request, "duplicate", why))
        requests = [r for r in requests if _hand_off(r) not in kept_failed]
        # Every invoice's versions, one read a batch: a first hand-off of a first version may have a
        # newer version withdrawn since, on another PO.
        versions = scheduler.versions_of({request.invoice_id for request in requests}) if requests else []
        finished = finished_already(requests, versions)
        for version, status in finished.items():
            log.warning("RPA email for %s v%s not sent: processscheduler shows the version %s", *version, status)
        requests = [r for r in requests if (r.invoice_id, r.invoice_version) not in finished]
        # Withdrawn at the bot: this version, or the newest of its invoice (on another PO, its hand-off
        # maybe in this very batch): the vendor's delete reached that one's PO first.
        notes = withdrawal_notes(requests, versions)
        noted = scheduler.recorded(set(notes.values())) if notes else set()
        at_the_bot = {version for version, note in notes.items() if note in noted}
        withdrawn = {(r.invoice_id, r.invoice_version) for r in requests} & at_the_bot
        withdrawn |= withdrawn_in_a_newer_version(requests, versions, at_the_bot)
        for request in (r for r in requests if (r.invoice_id, r.invoice_version) in withdrawn):
            batch.emit(topics.completions, request.po_number, _failed(request, "withdrawn", (
                "Not handed to the RPA bot: the vendor withdrew this invoice before its email went")))
        requests = [r for r in requests if (r.invoice_id, r.invoice_version) not in withdrawn]
        elsewhere = entered_as_another_version(requests, versions)
        for request in (r for r in requests if (r.invoice_id, r.invoice_version) in elsewhere):
            batch.emit(topics.completions, request.po_number, _failed(request, "duplicate", (
                f"Not handed to the RPA bot: version {elsewhere[request.invoice_id, request.invoice_version]} of this "
                "invoice is entered in Sampro, and this one would be entered beside it. It cannot go to the bot "
                "while that entry stands; if this one is to replace it, reverse that entry and enter this one in "
                "Sampro by hand")))
        requests = [r for r in requests if (r.invoice_id, r.invoice_version) not in elsewhere]
        if not requests:
            return
        holders = scheduler.claim_numbers([NumberClaim(hand_off_key(r.payload, identifiers), r.invoice_id,
                                                       r.invoice_version, r.replaces) for r in requests])
        due, behind_older, failed_at_gate = [], [], []
        for request, holder in zip(requests, holders, strict=True):
            if holder is None:
                due.append(request)
                continue
            why = handed_over_already(request.payload, holder)
            failed_at_gate.append((request, why))
            batch.emit(topics.completions, request.po_number, _failed(request, "duplicate", why))
            if holder[0] == request.invoice_id and holder[1] < request.invoice_version:
                behind_older.append((request, holder))
        mailer.keep_failed(failed_at_gate)  # for good, as a refusal by the mailbox is: a release is a new hand-off
        mailer.send(due)
        if behind_older:  # rare: tell the older version's PO, if its agent may not know (the PO agent tells it too)
            po_of = {(v.invoice_id, v.invoice_version): v.po_number
                     for v in scheduler.versions_of({request.invoice_id for request, _ in behind_older})}
            for request, holder in behind_older:
                if (po_number := po_of.get(holder)) not in (None, request.po_number):
                    batch.emit(topics.invoices, po_number, InvoiceReplaced(
                        invoice_id=request.invoice_id, version=request.invoice_version, po_number=po_number,
                        replaced_on=request.po_number, replaced_at=datetime.now(UTC)))

    def failed_hand_off(record, request, error):
        if not isinstance(request, RpaRequest):
            return []
        completion = _failed(request, "undeliverable", f"The RPA email could not be sent: {describe(error)[:300]}")
        return [(topics.completions, request.po_number, completion)]

    pipeline.mail_runtime.add_flow(Flow("send-to-rpa-mailbox", (topics.rpa_requests,),
                                   decode=lambda record: codec.decode(record.value), handle=send,
                                   kinds=(RpaRequest,), stage="mail", on_dead_letter=failed_hand_off))
