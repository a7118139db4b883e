"""One purchase order's work queue: which invoice holds the PO at the RPA bot, which wait behind it.

This replaces the old "PO lock": all work for a PO arrives on one ordered stream, and this
pure state machine decides what each message means. It never fetches anything; the caller
passes a `Judge` bound to a fresh PO snapshot. Every outcome is a list of messages to emit;
replaying a message that was already applied emits the same messages again (downstream sinks
are idempotent) and never changes the state twice.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from rules.checks import as_found_now
from rules.errors import DataError, RefusedEdit, Unavailable
from rules.holds import RPA_FAILURE, holds_of
from rules.lifecycle import (
    DispatchApproved,
    InvoiceReplaced,
    InvoiceStatus,
    InvoiceSubmitted,
    InvoiceWithdrawn,
    PurchaseOrderChanged,
    ReleaseRequested,
    RpaRequest,
    StatusChanged,
)
from rules.models import (
    MAX_EVENT_ID,
    CompletionOutcome,
    Finding,
    RpaCompletion,
    RpaPayload,
    Verdict,
    VerdictStatus,
)
from rules.table import RULES

Emitted = Verdict | StatusChanged | RpaRequest
DispatchMode = Literal["automatic", "approval"]

COMPLETIONS_REMEMBERED = 50
RELEASES_REMEMBERED = 20
CHANGES_REMEMBERED = 50

# Statuses after which AP may override the findings and release the invoice to the RPA bot.
RELEASABLE = frozenset({InvoiceStatus.MANUAL_REVIEW, InvoiceStatus.AWAITING_RECEIPT, InvoiceStatus.BAD_INVOICE,
                        InvoiceStatus.RPA_FAILED})
# Where an invoice version's story ends: nothing applies to it any more, so the ledger forgets it.
FINISHED = frozenset({InvoiceStatus.ENTERED, InvoiceStatus.WITHDRAWN, InvoiceStatus.SUPERSEDED})
# Verdicts that a change of rules may turn around; nothing reached the RPA bot because of them.
REJUDGEABLE = frozenset({InvoiceStatus.MANUAL_REVIEW, InvoiceStatus.AWAITING_RECEIPT, InvoiceStatus.BAD_INVOICE,
                         InvoiceStatus.PO_NOT_FOUND})
# Findings that only the goods arriving clear: an invoice held for nothing else awaits its receipt
# (3-way match), cleared by the receipt in Sampro, instead of waiting in a clerk's review queue.
AWAITING_RECEIPT_FINDINGS = frozenset({"QUANTITY_EXCEEDS_RECEIVED"})
# Findings a change of the PO in Sampro may clear: those of the rules that read the PO, and its absence.
CLEARED_BY_PO_CHANGE = frozenset({rule.code for rule in RULES if rule.needs_po} | {"PO_NOT_FOUND"})


class Judge(Protocol):
    """The rules, bound by the caller to this PO's fresh snapshot, history and tolerances."""

    @property
    def rules_version(self) -> str:
        """The rules and tolerances this judge applies."""

    def decide(self, submission: InvoiceSubmitted, in_flight: dict[str, Decimal]) -> Verdict: ...

    def payload_for(self, submission: InvoiceSubmitted) -> RpaPayload | None:
        """The RPA payload for an AP release, or None when the invoice cannot be keyed at all."""

    def could_not_judge(self, submission: InvoiceSubmitted, reason: str, dead_lettered: bool = True) -> Verdict:
        """bad_invoice for a submission whose judging failed: its record dead-lettered, or (not
        `dead_lettered`) one the ledger judged for another message, which went on."""


def change_digest(event_id: str) -> str:
    """An outside id (a Sampro change's, a long completion's or command's) inside another event id
    (a status change's, a verdict's in processscheduler): that id may be long, an event id may not."""
    return hashlib.blake2b(event_id.encode(), digest_size=8).hexdigest()


# What a finding tells AP, as a verdict judged again is told apart by (`verdict_event_id`).
FINDING_TOLD = ("code", "line_no", "field", "expected", "actual", "message")


def verdict_event_id(invoice_id: str, version: int, status: str, rules_version: str, judged_after: str | None,
                     reasons: Sequence[Finding] | Sequence[Mapping[str, Any]]) -> str:
    """A verdict's event in processscheduler's history: the same verdict again is the same event.
    `reasons`: the verdict's findings, as models or as their Avro records."""
    event = f"verdict:{invoice_id}:v{version}:{status}:{rules_version}"
    if judged_after is None:
        return event
    # The change's own id can be long; its digest keeps the event id within the column's 200. The
    # findings' digest tells apart another judgement after the same change: a Sampro change applied
    # again once the ledger forgot it (`CHANGES_REMEMBERED`), as Debezium delivers after a Connect
    # restart, judges against the PO as it is now; under the first judgement's id processscheduler
    # took the new findings for a repeat and showed the old ones for good, and refused the clerk's
    # release of what it showed. Told again, copies and all (a replay, a crash), it is the same event.
    told = [[reason[name] if isinstance(reason, Mapping) else getattr(reason, name) for name in FINDING_TOLD]
            for reason in reasons]
    findings = hashlib.blake2b(json.dumps(told).encode(), digest_size=8).hexdigest()
    return f"{event}:after:{change_digest(judged_after)}:{findings}"


def record_key(invoice_id: str, version: int) -> str:
    return f"{invoice_id}@v{version}"


class InvoiceRecord(BaseModel):
    """One invoice version on this PO and where it stands, each fact once.

    The invoice is the submission's document and the RPA payload is `payload`: the verdict and
    the last status change are kept without their copies of either (a ledger is rewritten on
    every change of its PO) and get them back when they are emitted again (`told`).
    """

    model_config = ConfigDict(extra="ignore")

    submission: InvoiceSubmitted
    status: InvoiceStatus
    verdict: Verdict | None = None
    payload: RpaPayload | None = None
    last_change: StatusChanged | None = None  # re-emitted on replay, with its original event id
    # The Sampro change it waits to be judged again for: parked, its turn; held, the completion of
    # the invoice of its PO at the RPA bot (`recheck_held`).
    recheck_for: str | None = None
    released_holds: list[str] = Field(default_factory=list)  # of its verdict's holds; a new verdict has none
    rpa_attempts: int = 0  # hand-offs to the RPA bot so far; one more each time AP releases a failure
    # The RPA bot's error of its last failed hand-off, as the API shows the failure and a release of it
    # names it (`ReleaseRequested.seen`); None in a record of a failure from before it was kept.
    rpa_error: str | None = None
    # The AP releases and approvals applied to it, the last few: one delivered again (a crash before its
    # offset was committed) released what a judgement at its hand-over had found since, which no one had
    # seen, or sent it to the bot again after a failure with no clerk's approval.
    # Also the releases and dispatches of an older version noted on it (`_not_applied_to_a_finished_version`).
    releases_seen: list[str] = Field(default_factory=list)
    # Its last turn at the RPA bot as released, behind another invoice (`drain_parked`: released, or
    # released-a2 after a failure): held anew at the clerk's approval and released again, its next
    # turn under the same cause was an event processscheduler had, and it stayed released for good.
    handed_over_as: str | None = None
    # Held by a verdict that counted the quantities of the invoice then holding the PO (ready, or at
    # the bot) in flight: judged again when that one leaves the PO without an entry (`judge_again_when_freed`),
    # else it stayed held for quantities that never reached Sampro ("only 2 still open" where 3 were).
    counted_in_flight: bool = False
    withdrawn_at_rpa: bool = False  # the vendor withdrew it while the RPA bot had it: the bot's outcome decides
    entered_before: int | None = None  # the version of this invoice Sampro has already: this one must not go too
    replaces: int | None = None  # the version of this invoice superseded for this one (`RpaRequest.replaces`)

    @model_validator(mode="after")
    def _each_fact_once(self) -> InvoiceRecord:
        # Also thins the records of ledgers written before, as they are read.
        if self.verdict is not None:
            self.verdict = _without_copies(self.verdict)
        if self.last_change is not None and self.last_change.rpa_payload is not None:
            self.last_change = self.last_change.model_copy(update={"rpa_payload": None})
        return self

    @model_validator(mode="after")
    def _counted_as_its_verdict_says(self) -> InvoiceRecord:
        # A record stored before `counted_in_flight` was kept says so by its verdict's audit: read as
        # not counted, a held invoice judged with the quantities of one at the bot stayed held for
        # them after an upgrade, when the bot failed that one. Judged again for nothing, it is as it was.
        if "counted_in_flight" not in self.model_fields_set and self.verdict is not None:
            audit = self.verdict.audit
            self.counted_in_flight = (self.verdict.status is not VerdictStatus.READY_TO_PROCESS
                                      and audit is not None and bool(audit.in_flight))
        return self

    @property
    def key(self) -> str:
        return record_key(self.submission.invoice_id, self.submission.version)

    def told(self) -> list[Emitted]:
        """The verdict and the last status change as they were emitted, copies and all."""
        told: list[Emitted] = []
        if self.verdict is not None:
            audit = self.verdict.audit
            told.append(self.verdict.model_copy(update={
                "rpa_payload": self.payload if self.verdict.status is VerdictStatus.READY_TO_PROCESS else None,
                "audit": audit and audit.model_copy(update={"invoice": self.submission.document})}))
        if self.last_change is not None:
            told.append(self.last_change.model_copy(update={
                "rpa_payload": self.payload if self.last_change.status is InvoiceStatus.SENT_TO_RPA else None}))
        return told


def _without_copies(verdict: Verdict) -> Verdict:
    """Only a ready verdict carries the payload, and its audit's invoice is the submission's."""
    if verdict.rpa_payload is None and (verdict.audit is None or verdict.audit.invoice is None):
        return verdict
    audit = verdict.audit and verdict.audit.model_copy(update={"invoice": None})
    return verdict.model_copy(update={"rpa_payload": None, "audit": audit})


class PurchaseOrderLedger(BaseModel):
    """Per-PO state: the invoice versions that can still change, and what is known of the rest.

    A version that reached a final status (entered, withdrawn, superseded) leaves `records`: its
    history is on the topics and in processscheduler. `latest` keeps the newest version number of
    every invoice seen, so a late or repeated version of a finished invoice changes nothing.
    """

    model_config = ConfigDict(extra="ignore")

    po_number: str
    holding: list[str] = Field(default_factory=list)  # record keys: ready or at the RPA bot
    parked: list[str] = Field(default_factory=list)  # record keys waiting for the PO, arrival order
    records: dict[str, InvoiceRecord] = Field(default_factory=dict)
    # invoice id -> newest version seen. Read only for the invoice a message names, so the ledger
    # store loads just those entries (streams/ledgers.py): a PO's history may be long.
    latest: dict[str, int] = Field(default_factory=dict)
    # invoice id -> its version the RPA bot entered in Sampro, read as `latest` is: that record is
    # gone, and a vendor's edit (its record notes it: `entered_before`) or withdrawal after the
    # entry must be neither entered nor dropped.
    entered: dict[str, int] = Field(default_factory=dict)
    # The Sampro invoice of each entry the bot named (of those in `entered`): a second one reported
    # for the version is a second entry, AP's to reverse.
    entered_as: dict[str, str] = Field(default_factory=dict)
    completions_seen: list[str] = Field(default_factory=list)
    changes_seen: list[str] = Field(default_factory=list)  # the last Sampro changes applied

    def record(self, key: str) -> InvoiceRecord | None:
        return self.records.get(key)

    def listed(self, key: str) -> InvoiceRecord:
        """The record of a key the ledger lists (parked, holding): it is there."""
        record = self.records.get(key)
        if record is None:
            raise KeyError(f"the ledger lists {key} but has no record of it")
        return record

    def in_flight(self) -> dict[str, Decimal]:
        """Quantities per PO line held by ready or dispatched invoices, not yet in Sampro."""
        totals: dict[str, Decimal] = defaultdict(Decimal)
        for key in self.holding:
            record = self.record(key)
            for line in record.payload.lines if record is not None and record.payload else ():
                totals[str(line.po_line_no)] += line.quantity
        return dict(totals)


class Outcome(BaseModel):
    ledger: PurchaseOrderLedger
    emitted: list[Any] = Field(default_factory=list)
    unjudged: list[str] = Field(default_factory=list)  # invoices the rules failed on: what became of each, why


def _change(
    record: InvoiceRecord, status: InvoiceStatus, cause: str, at: datetime, **extra: Any
) -> StatusChanged:
    sub = record.submission
    return _status_change(sub.invoice_id, sub.version, sub.po_number, status, cause, at, **extra)


def _status_change(
    invoice_id: str, version: int, po_number: str, status: InvoiceStatus, cause: str, at: datetime, **extra: Any
) -> StatusChanged:
    return StatusChanged(event_id=_event_id(invoice_id, version, status, cause), invoice_id=invoice_id,
                         invoice_version=version, po_number=po_number, status=status, occurred_at=at, **extra)


def _event_id(invoice_id: str, version: int, status: InvoiceStatus, cause: str) -> str:
    event_id = f"{invoice_id}:v{version}:{status.value}:{cause}"
    if len(event_id) > MAX_EVENT_ID:  # a completion's or command's id of up to 200 characters as the cause
        event_id = f"{invoice_id}:v{version}:{status.value}:{change_digest(cause)}"
    return event_id


# `judged_after` of a held invoice judged again when the invoice holding its PO left it without an
# entry: the event of its leaving follows.
FREED_BY = "po-freed-by:"
# `judged_after` of a held invoice reprocessed under other rules: the rules of the verdict it follows.
REPROCESSED_AFTER = "rules:"
WITHDRAWN_AT_BOT = "withdrawn-at-rpa"  # the cause of the note that the vendor withdrew a version at the bot


def withdrawn_at_bot(invoice_id: str, version: int) -> str:
    """The event in processscheduler's history that says the vendor withdrew this invoice version
    while the bot had it: then its email must not go. Withdrawn while the hand-off waited for the
    mailbox (down, or the mail flow behind), it was emailed when the mailbox came back, and the bot
    entered an invoice the vendor no longer asked to be paid."""
    return _event_id(invoice_id, version, InvoiceStatus.SENT_TO_RPA, WITHDRAWN_AT_BOT)


def _reads_otherwise(released: Finding, now: Finding) -> bool:
    """Whether a released hold's finding compares other values now than when it was released."""
    released = as_found_now(released)
    return (released.expected, released.actual) != (now.expected, now.actual)


def _otherwise(hold: str, released: Finding, now: Finding) -> str:
    return (f"{hold} (released at expected {released.expected}, actual {released.actual}; now expected "
            f"{now.expected}, actual {now.actual})")


def _last_event(record: InvoiceRecord) -> str:
    """The event in processscheduler's history of the last thing that happened to the invoice: its
    last status change (a release), or the verdict that made it ready."""
    if record.last_change is not None:
        return record.last_change.event_id
    verdict = record.verdict
    assert verdict is not None, "an invoice about to go to the bot was released or judged"
    return verdict_event_id(verdict.invoice_id or record.submission.invoice_id, record.submission.version,
                            verdict.status.value, verdict.rules_version, verdict.judged_after, verdict.reasons)


def _rpa_request(record: InvoiceRecord, at: datetime) -> RpaRequest:
    sub = record.submission
    return RpaRequest(
        invoice_id=sub.invoice_id,
        invoice_version=sub.version,
        po_number=sub.po_number,
        payload=record.payload,
        requested_at=at,
        attempt=max(record.rpa_attempts, 1),  # 0 in a ledger written before attempts were counted
        replaces=record.replaces,
    )


class _Update:
    """Applies one message to a copy of the ledger and collects what to emit.

    Copy on write: the ledger's containers are copied, a record only when it changes (`editable`),
    so the caller's ledger stays untouched and an unchanged record stays the same object.
    """

    def __init__(self, ledger: PurchaseOrderLedger, judge: Judge | None, dispatch: DispatchMode):
        self.ledger = ledger.model_copy(update={
            "holding": list(ledger.holding), "parked": list(ledger.parked), "records": dict(ledger.records),
            "latest": dict(ledger.latest), "entered": dict(ledger.entered), "entered_as": dict(ledger.entered_as),
            "completions_seen": list(ledger.completions_seen),
            "changes_seen": list(ledger.changes_seen),
        })
        self.judge = judge
        self.dispatch = dispatch
        self.emitted: list[Emitted] = []
        self.unjudged: list[str] = []

    def outcome(self) -> Outcome:
        return Outcome(ledger=self.ledger, emitted=self.emitted, unjudged=self.unjudged)

    def editable(self, key: str) -> InvoiceRecord | None:
        """The record, copied into this update's ledger so that it may be changed."""
        record = self.ledger.record(key)
        if record is not None:
            record = self.ledger.records[key] = record.model_copy()
        return record

    def editable_listed(self, key: str) -> InvoiceRecord:
        """`editable` for a key the ledger lists (parked, holding): its record is there."""
        record = self.editable(key)
        if record is None:
            raise KeyError(f"the ledger lists {key} but has no record of it")
        return record

    def editable_latest(self, invoice_id: str) -> InvoiceRecord | None:
        version = self.ledger.latest.get(invoice_id)
        return None if version is None else self.editable(record_key(invoice_id, version))

    def add(self, record: InvoiceRecord) -> None:
        self.ledger.records[record.key] = record
        self.ledger.latest[record.submission.invoice_id] = record.submission.version

    def dequeue(self, record: InvoiceRecord) -> None:
        for queue in (self.ledger.holding, self.ledger.parked):
            if record.key in queue:
                queue.remove(record.key)

    def change(self, record: InvoiceRecord, status: InvoiceStatus, cause: str, at: datetime, **extra: Any) -> None:
        change = _change(record, status, cause, at, **extra)
        record.status = status
        record.last_change = change.model_copy(update={"rpa_payload": None}) if change.rpa_payload else change
        self.emitted.append(change)
        if status in FINISHED:
            self.ledger.records.pop(record.key, None)

    def note_entered(self, invoice_id: str, cause: str, at: datetime, reason: str, actor: str | None = None) -> None:
        """A note in the history of the version of this invoice that is in Sampro (its record is gone)."""
        if (entered := self.ledger.entered.get(invoice_id)) is not None:
            self.emitted.append(_status_change(invoice_id, entered, self.ledger.po_number, InvoiceStatus.ENTERED,
                                               cause, at, reason=reason, actor=actor))

    def park(self, record: InvoiceRecord, at: datetime, cause: str = "parked") -> None:
        self.ledger.parked.append(record.key)
        self.change(record, InvoiceStatus.WAITING_FOR_PO, cause, at)

    def judged(self, record: InvoiceRecord) -> Verdict:
        """The judge's verdict on an invoice parked behind the PO, which this message frees. One the
        rules fail on is a bad_invoice, so that the message, and the invoices behind this one, go
        on: failing, the message was dead-lettered, and every later invoice of the PO parked for
        good. (An invoice's own message fails with it, and is dead-lettered with its verdict.)"""
        verdict, why = self._decided(record)
        if verdict is not None:
            return verdict
        assert self.judge is not None and why is not None, "_decided says why it has no verdict"
        self.unjudged.append(f"{record.key} (made bad_invoice): {why}")
        return self.judge.could_not_judge(record.submission, why, dead_lettered=False)

    def judged_again(self, record: InvoiceRecord) -> Verdict | None:
        """The judge's verdict on a held invoice, judged again for a change of its PO; None when
        the rules fail on it, which leaves it held as it was (with holds a clerk may release),
        and the message goes on."""
        verdict, why = self._decided(record)
        if why is not None:
            self.unjudged.append(f"{record.key} (held as it was): {why}")
        return verdict

    def _decided(self, record: InvoiceRecord) -> tuple[Verdict | None, str | None]:
        assert self.judge is not None, "a judgement needs a judge bound to a PO snapshot"
        try:
            return self.judge.decide(record.submission, self.ledger.in_flight()), None
        except Unavailable:
            raise
        except Exception as error:
            return None, f"{type(error).__name__}: {error}"

    def judge_now(self, record: InvoiceRecord, verdict: Verdict | None = None) -> None:
        """`verdict`: the judge's, when the caller has asked it already."""
        assert self.judge is not None, "a submission needs a judge bound to a PO snapshot"
        verdict = verdict or self.judge.decide(record.submission, self.ledger.in_flight())
        if record.recheck_for is not None:  # a new event in the invoice's history, not a replay
            verdict = verdict.model_copy(update={"judged_after": record.recheck_for})
            record.recheck_for = None
        record.released_holds = []  # a new judgement: its findings are holds anew
        record.verdict = _without_copies(verdict)
        record.payload = verdict.rpa_payload
        record.status = InvoiceStatus(verdict.status.value)
        record.counted_in_flight = (verdict.status is not VerdictStatus.READY_TO_PROCESS
                                    and bool(self.ledger.in_flight()))
        self.emitted.append(verdict)
        # A change made after the verdict is named after the judgement: judged again (after a
        # Sampro change, or by other rules) it is a new event, which processscheduler records.
        after = change_digest(f"{verdict.rules_version}|{verdict.judged_after or ''}")
        if record.entered_before is not None:
            # A vendor's edit of an invoice Sampro has: entering it too would pay the invoice twice.
            # Held whatever its findings, so that the clerk who releases it reads why.
            status = (InvoiceStatus.MANUAL_REVIEW if verdict.status is VerdictStatus.READY_TO_PROCESS
                      else record.status)
            self.change(record, status, f"edited-after-entry-{after}", verdict.evaluated_at,
                        reason=_entered_already(record.entered_before))
        elif verdict.status is VerdictStatus.READY_TO_PROCESS:  # a hand-off again after a failure: its own event
            self.hold(record, verdict.evaluated_at, cause=f"verdict-a{record.rpa_attempts + 1}" if record.rpa_attempts
                      else "verdict")
        elif verdict.status is VerdictStatus.MANUAL_REVIEW and verdict.reasons and all(
                finding.code in AWAITING_RECEIPT_FINDINGS for finding in verdict.reasons):
            self.change(record, InvoiceStatus.AWAITING_RECEIPT, f"receipt-{after}", verdict.evaluated_at)

    def hand_over_released(self, record: InvoiceRecord, at: datetime, cause: str) -> bool:
        """A released invoice's turn at the RPA bot, the PO free (`held_anew`): whether it went."""
        if self.held_anew(record, at, "handed over as released"):
            return False
        self.hold(record, at, cause)
        return True

    def held_anew(self, record: InvoiceRecord, at: datetime, what: str) -> bool:
        """Whether an invoice about to go to the RPA bot (released, or approved by a clerk after
        it waited) is held anew, judged again against the PO as Sampro has it now. A finding
        whose hold no clerk released holds it (an invoice entered since took the quantity its RPA
        failure had freed; the PO was cancelled since); else it goes, its quantities placed on
        the PO as it is now, not as it was when released (onto a PO line that the invoice then at
        the bot has filled since). A released hold whose finding reads otherwise now holds it too:
        the clerk released what they saw (a price 0.10 over the PO's), not its name (the buyer cut
        the PO's price since, and 6.60 over went to the bot). The rules failing on it, it goes as
        it stood."""
        verdict, why = self._decided(record)
        if why is not None:
            self.unjudged.append(f"{record.key} ({what}): {why}")
        seen = {hold.id: hold.finding for hold in holds_of(record.verdict.reasons if record.verdict else [])}
        unreleased = []
        for hold in holds_of(verdict.reasons if verdict else []):
            if hold.id not in record.released_holds:
                unreleased.append(hold.id)
            elif (released := seen.get(hold.id)) is not None and _reads_otherwise(released, hold.finding):
                unreleased.append(_otherwise(hold.id, released, hold.finding))
        if verdict is not None and unreleased:
            before = record.recheck_for = _last_event(record)  # a new judgement: after that
            self.judge_now(record, verdict)
            # Last, as a replay tells it: the verdict before its release would leave it `released`.
            self.change(record, record.status, f"held-at-hand-over-{change_digest(before)}", at,
                        reason=f"Judged again at its turn at the RPA bot: held by {', '.join(unreleased)}, "
                               "which no clerk has released as it reads now.")
            return True
        if verdict is not None and self.judge is not None:
            record.payload = verdict.rpa_payload or self.judge.payload_for(record.submission) or record.payload
        return False

    def hold(self, record: InvoiceRecord, at: datetime, cause: str) -> None:
        self.ledger.holding.append(record.key)
        if self.dispatch == "automatic":
            self.send_to_rpa(record, at, cause)
        elif record.status is InvoiceStatus.RELEASED:
            self.change(record, InvoiceStatus.READY_TO_PROCESS, cause, at)

    def send_to_rpa(self, record: InvoiceRecord, at: datetime, cause: str, actor: str | None = None) -> None:
        record.rpa_attempts += 1
        self.emitted.append(_rpa_request(record, at))
        self.change(record, InvoiceStatus.SENT_TO_RPA, cause, at, actor=actor, rpa_payload=record.payload)

    def admit(self, record: InvoiceRecord, at: datetime, cause: str = "parked") -> None:
        """Judge now if the PO is free, otherwise park behind the invoice that holds it."""
        if self.ledger.holding:
            self.park(record, at, cause)
        else:
            self.judge_now(record)

    def drain_parked(self, at: datetime) -> None:
        """Re-validate parked invoices in arrival order until one holds the PO again."""
        while self.ledger.parked and not self.ledger.holding:
            record = self.editable_listed(self.ledger.parked.pop(0))
            if record.status is InvoiceStatus.RELEASED:
                # One id per hand-off it is released for: released again after another failure, under
                # the same id it was the first hand-off again to processscheduler, which kept `released`.
                again = f"-a{record.rpa_attempts + 1}" if record.rpa_attempts else ""
                cause = turn = f"released{again}"
                if turn == record.handed_over_as and record.releases_seen:
                    # Ready for a clerk's approval after it, held anew then, and released again: the
                    # release applied names this turn (the first keeps its id in the history kept).
                    cause = f"released-{record.releases_seen[-1]}"
                if self.hand_over_released(record, at, cause):
                    record.handed_over_as = turn
            elif record.verdict is not None:  # held, and waiting for its turn to be judged again
                self._judge_again_or_keep(record, at)
            else:
                self.judge_now(record, self.judged(record))

    def _judge_again_or_keep(self, record: InvoiceRecord, at: datetime) -> None:
        """A held invoice a Sampro change cleared, or other rules may, judged when the PO is free.
        The rules failing on it leave it held as it was, the holds a clerk released still released;
        so do findings as they were after a Sampro change (the buyer undid it before the invoice's
        turn), as at the change itself (`_judge_held_again`): judged anew, a second verdict alike went
        into its history and took back the holds the clerk had released. A reprocess under other
        rules judges it anew, as it does an invoice it need not park."""
        verdict = self.judged_again(record)
        assert record.verdict is not None, "_judge_again_or_keep takes a record with a verdict"
        if verdict is None:
            reason = "The rules failed on it when it was judged again: it is held as it was."
        elif not (record.recheck_for or "").startswith(REPROCESSED_AFTER) and _judged_alike(record, verdict):
            record.counted_in_flight = False  # the PO is free: it reads so with nothing in flight
            reason = "Judged again at its turn, its findings are as they were: it is held as it was."
        else:
            self.judge_now(record, verdict)
            return
        cause = f"held-as-it-was-{change_digest(f'{record.recheck_for}|{at.isoformat()}')}"
        record.recheck_for = None
        self.change(record, _held_as(record.verdict), cause, at, reason=reason)

    def replay(self, record: InvoiceRecord) -> None:
        """Re-emit where this version stands, so a write lost in a crash is repaired downstream
        (every message is idempotent there: same event ids, same Message-ID)."""
        verdict_and_change = record.told()
        if record.status is InvoiceStatus.SENT_TO_RPA and record.payload is not None:
            assert record.last_change is not None, "a record sent to the RPA bot has its status change"
            verdict_and_change.insert(-1, _rpa_request(record, record.last_change.occurred_at))
        self.emitted.extend(verdict_and_change)


def _held_as(verdict: Verdict) -> InvoiceStatus:
    """The status a held invoice has by its verdict (`_Update.judge_now`)."""
    if verdict.status is VerdictStatus.MANUAL_REVIEW and verdict.reasons and all(
            finding.code in AWAITING_RECEIPT_FINDINGS for finding in verdict.reasons):
        return InvoiceStatus.AWAITING_RECEIPT
    if verdict.status is VerdictStatus.READY_TO_PROCESS:  # an edit of an entered invoice: held whatever
        return InvoiceStatus.MANUAL_REVIEW
    return InvoiceStatus(verdict.status.value)


def rechecked_on_po_change(ledger: PurchaseOrderLedger) -> list[str]:
    """The held invoices, in arrival order, that a change of their PO in Sampro may clear."""
    return [key for key, record in ledger.records.items() if _may_clear(record)]


def _may_clear(record: InvoiceRecord) -> bool:
    """Every finding of its verdict reads the PO. One with a finding of its own (a duplicate,
    broken arithmetic) stays held whatever Sampro says; one AP released or sent on is AP's."""
    return (record.status in REJUDGEABLE and record.verdict is not None and bool(record.verdict.reasons)
            and all(finding.code in CLEARED_BY_PO_CHANGE for finding in record.verdict.reasons))


def recheck_held(
    ledger: PurchaseOrderLedger, change: PurchaseOrderChanged, judge: Judge, dispatch: DispatchMode,
    covered: Sequence[PurchaseOrderChanged] = (),
) -> Outcome:
    """Sampro changed the PO: each held invoice it may clear is judged again against the fresh
    snapshot. One that clears goes to the RPA bot like any ready invoice (after the invoice that
    holds the PO, if one does); one that does not stays held with its new reasons, which, while an
    invoice of the PO is at the RPA bot, are found when the bot's completion comes in. One whose
    findings are as they were (the change touched nothing they read, as when the bot enters
    another invoice of the PO), by these rules or the ones before, stays as it was: no verdict
    again in its history, and the holds AP released stay released. The same change again changes
    nothing.

    `covered`: the changes of the PO before this one in the same batch, which this judgement, on
    the one snapshot read for the batch, stands for. It judges when any of them is new: one
    transaction's header and line rows are changes under one id, and a source sends what it sent
    before a crash again, so the last change may well be one applied already while an earlier one
    is not."""
    update = _Update(ledger, judge, dispatch)
    held = rechecked_on_po_change(ledger)
    new = {each.event_id: each for each in (*covered, change) if each.event_id not in update.ledger.changes_seen}
    if not held or not new:
        return update.outcome()  # a PO with nothing held keeps no ledger for the change
    update.ledger.changes_seen = [*update.ledger.changes_seen, *new][-CHANGES_REMEMBERED:]
    *_, latest = new.values()
    for key in held:
        _judge_held_again(update, key, latest.event_id, while_at_bot="wait")
    return update.outcome()


def _judge_held_again(update: _Update, key: str, change_id: str, while_at_bot: Literal["wait", "judge"]) -> None:
    """One that clears while the PO is held waits its turn, and is judged again when the PO is
    free, as any waiting invoice is. One that stays held, while an invoice of its PO is at the RPA
    bot, is judged again when the bot's completion comes in ("wait"): Sampro may have the bot's
    entry already, whose quantities are in flight too, and counted twice they make findings of
    nothing (QUANTITY_EXCEEDS_OPEN), and a verdict that takes back the holds AP released."""
    assert update.judge is not None, "a recheck needs a judge bound to the fresh snapshot"
    held = update.ledger.listed(key)
    verdict = update.judged_again(held)
    if verdict is None:
        return
    ready = verdict.status is VerdictStatus.READY_TO_PROCESS
    if not ready and while_at_bot == "wait" and any(
            update.ledger.listed(holder).status is InvoiceStatus.SENT_TO_RPA for holder in update.ledger.holding):
        if held.recheck_for is None:  # else waiting already: a change after it changes nothing more
            update.editable_listed(key).recheck_for = change_id
        return
    if _judged_alike(held, verdict):
        if held.counted_in_flight and not update.ledger.in_flight():  # it reads so with nothing in flight too
            update.editable_listed(key).counted_in_flight = False
        return
    record = update.editable_listed(key)
    record.recheck_for = change_id
    if update.ledger.holding and ready:
        # Waiting from when it was judged: Sampro's time of the change may be its local time.
        update.park(record, verdict.evaluated_at, f"recheck-{change_digest(change_id)}")
    else:
        update.judge_now(record, verdict)


def waiting_for_completion(ledger: PurchaseOrderLedger) -> list[str]:
    """The held invoices a Sampro change came for while an invoice of their PO was at the RPA bot:
    judged again when the bot's completion comes in."""
    return [key for key, record in ledger.records.items()  # the attribute first: one per record of the PO
            if record.recheck_for is not None and _may_clear(record)]  # a parked one waits for the PO


def _judge_again_after_entry(update: _Update) -> None:
    for key in waiting_for_completion(update.ledger):
        before = update.ledger.listed(key)
        assert before.recheck_for is not None, "waiting_for_completion lists those with a change"
        _judge_held_again(update, key, before.recheck_for, while_at_bot="judge")
        if update.ledger.listed(key) is before:  # judged alike (a record changes by a copy): nothing to tell
            update.editable_listed(key).recheck_for = None


def counted_in_flight(ledger: PurchaseOrderLedger) -> list[str]:
    """The held invoices judged with the quantities of the invoice holding the PO in flight."""
    return [key for key, record in ledger.records.items()  # the attribute first: one per record of the PO
            if record.counted_in_flight and _may_clear(record)]


def judge_again_when_freed(update: _Update, left: InvoiceRecord) -> None:
    """`left` held the PO (ready for a clerk's approval, or at the RPA bot) and leaves it without an
    entry in Sampro (the bot failed it, the vendor withdrew or replaced it, it was held anew): the
    held invoices judged with its quantities in flight are judged again without them, after the
    invoices parked behind it had their turn, as after an entry (`_judge_again_after_entry`)."""
    if update.judge is None:
        return
    assert left.last_change is not None, "an invoice leaves the PO by a status change"
    for key in counted_in_flight(update.ledger):
        _judge_held_again(update, key, f"{FREED_BY}{left.last_change.event_id}", while_at_bot="wait")


def _judged_alike(record: InvoiceRecord, verdict: Verdict) -> bool:
    """Whether `verdict` tells AP what the record's verdict told: the same status and findings,
    expected and actual values and all (and no payload: a held verdict has none). The snapshot may
    have moved where no finding reads it (the bot entered another invoice of the PO), and so may
    what else the rules saw; the verdict kept explains its findings as well. So may the rules: newer
    rules deployed, or a tolerance edited (the rules version carries its digest), that find what the
    kept verdict found leave it standing, and the holds AP released stay released (told anew, after
    an upgrade, the price hold a clerk had released was a hold again)."""
    assert record.verdict is not None, "a record rechecked_on_po_change lists has its verdict"
    kept = record.verdict
    return verdict.status == kept.status and ([reason.model_dump() for reason in verdict.reasons]
                                              == [as_found_now(reason).model_dump() for reason in kept.reasons])


def may_free(ledger: PurchaseOrderLedger | None, work: object) -> bool:
    """Whether this work may have invoices of the PO judged now: its parked invoices, when it can
    end what holds the PO (a completion, a withdrawal, an AP command, a new version; a new invoice
    only parks behind), the held ones waiting for the bot's completion, when it is that, and those
    judged with the quantities of the invoice holding the PO in flight (`judge_again_when_freed`)."""
    if ledger is None or isinstance(work, InvoiceSubmitted) and work.invoice_id not in ledger.latest:
        return False
    return (bool(ledger.parked) or isinstance(work, RpaCompletion) and bool(waiting_for_completion(ledger))
            or not isinstance(work, ReleaseRequested) and bool(counted_in_flight(ledger)))


def submit_invoice(
    ledger: PurchaseOrderLedger, submission: InvoiceSubmitted, judge: Judge, dispatch: DispatchMode
) -> Outcome:
    """A new invoice or a vendor's new version of one. The same version again is a replay: it
    re-emits where the invoice stands, or, after a change of rules, is judged again unless it
    already went to the RPA bot. A version no newer than a finished one changes nothing."""
    update = _Update(ledger, judge, dispatch)
    at = submission.received_at
    known = update.editable_latest(submission.invoice_id)
    newest = update.ledger.latest.get(submission.invoice_id)
    if known is None and newest is not None and newest >= submission.version:
        return update.outcome()  # that version, or a newer one, already finished
    if known is not None and known.submission.version > submission.version:
        return update.outcome()  # an older version arriving late changes nothing
    if known is not None and known.submission.version == submission.version:
        if _as_text(known.submission.document) != _as_text(submission.document):
            # Taken for a replay, the edit was dropped without a word: the clerk could release the old
            # content to the bot while the marketplace showed the new.
            why = (f"Version {submission.version} of invoice {submission.invoice_id!r} arrived again with other "
                   "content: the marketplace changed it without a new version. The first content stands; the vendor "
                   "must upload the change as a new version")
            # Told as a bad_invoice verdict, the version judged already showed bad_invoice in
            # processscheduler, at the bot or held, while the ledger went on with the first content.
            edit = change_digest(_as_text(submission.document))  # each edit told once, however often it comes
            raise RefusedEdit(why, _change(known, known.status, f"edit-refused-{edit}", at, reason=why))
        if known.status in REJUDGEABLE and known.verdict and known.verdict.rules_version != judge.rules_version:
            # Reprocessed after a change of rules: judged again by the rules now in force, as an event
            # after the verdict it follows. Rules rolled back (A, then B, then A again) judge as A did
            # once: under that verdict's event id, processscheduler took it for a repeat, and kept B's.
            before = f"{known.verdict.rules_version}@{known.verdict.evaluated_at.isoformat()}"
            known.recheck_for = f"{REPROCESSED_AFTER}{before}"
            update.admit(known, at, cause=f"parked-for-{judge.rules_version}-{change_digest(known.recheck_for)}")
        else:
            update.replay(known)
        return update.outcome()
    record = InvoiceRecord(submission=submission, status=InvoiceStatus.WAITING_FOR_PO,
                           entered_before=update.ledger.entered.get(submission.invoice_id))
    update.add(record)
    if known is not None and known.status not in (InvoiceStatus.SENT_TO_RPA, InvoiceStatus.ENTERED):
        record.replaces = known.submission.version
        held_the_po = known.key in update.ledger.holding
        update.dequeue(known)
        update.change(known, InvoiceStatus.SUPERSEDED, f"v{submission.version}", at)
        update.drain_parked(at)
        if held_the_po:
            judge_again_when_freed(update, known)
    update.admit(record, at)
    return update.outcome()


def withdraw_invoice(
    ledger: PurchaseOrderLedger, withdrawal: InvoiceWithdrawn, judge: Judge | None, dispatch: DispatchMode
) -> Outcome:
    """The vendor deleted the invoice: drop it. One the RPA bot has cannot be called back: the
    withdrawal is noted in its history, and the bot's report decides (a failure is not retried).
    One with a version in Sampro already gets a note there: AP asks the vendor for a credit note."""
    update = _Update(ledger, judge, dispatch)
    if withdrawal.version < update.ledger.latest.get(withdrawal.invoice_id, 0):
        # The deletion of an older version, delivered again (CDC is at least once) after the vendor
        # sent a newer one: the newer version stands.
        return update.outcome()
    # A version is in Sampro: nothing to stop there, but AP must hear of it (it stays entered).
    update.note_entered(withdrawal.invoice_id, "withdrawn-after-entry", withdrawal.withdrawn_at,
                        "The vendor withdrew this invoice after it was entered in Sampro: ask the vendor for a "
                        "credit note.")
    at_bot = _at_bot(update, withdrawal.invoice_id)
    if at_bot is not None and not at_bot.withdrawn_at_rpa:
        at_bot.withdrawn_at_rpa = True
        update.change(at_bot, InvoiceStatus.SENT_TO_RPA, WITHDRAWN_AT_BOT, withdrawal.withdrawn_at,
                      reason="The vendor withdrew this invoice while the RPA bot has it. If the bot enters "
                             "it, ask the vendor for a credit note; if it fails, the invoice is withdrawn.")
    record = update.editable_latest(withdrawal.invoice_id)
    if record is None or record.status in (InvoiceStatus.WITHDRAWN, InvoiceStatus.ENTERED,
                                           InvoiceStatus.SENT_TO_RPA):
        return update.outcome()
    held_the_po = record.key in update.ledger.holding
    update.dequeue(record)
    update.change(record, InvoiceStatus.WITHDRAWN, "deleted", withdrawal.withdrawn_at)
    if judge is not None:
        update.drain_parked(withdrawal.withdrawn_at)
    if held_the_po:
        judge_again_when_freed(update, record)
    return update.outcome()


def _as_text(document: Any) -> str:
    """A document as text, its numbers as written: a record stored by an older release holds a
    number of a vendor's own field as text ('2.5') where the topic now carries Decimal('2.5')."""
    return json.dumps(document, sort_keys=True, default=str)


def _at_bot(update: _Update, invoice_id: str) -> InvoiceRecord | None:
    """The version of the invoice the RPA bot has, if any: the newest, or an older one that the
    vendor's edit waits behind (a withdrawal or a replacement names the edit, and must reach it)."""
    for key in update.ledger.holding:
        record = update.ledger.record(key)
        if (record is not None and record.submission.invoice_id == invoice_id
                and record.status is InvoiceStatus.SENT_TO_RPA):
            return update.editable(key)
    return None


def replace_invoice(
    ledger: PurchaseOrderLedger, replaced: InvoiceReplaced, judge: Judge | None, dispatch: DispatchMode
) -> Outcome:
    """A newer version of the invoice names another PO. Its versions here are superseded; one the
    RPA bot has is noted, and superseded if the bot fails it; one in Sampro gets a note (the hand-off
    stops the newer version). Newer than any version here: a version that arrives late changes nothing."""
    update = _Update(ledger, judge, dispatch)
    invoice_id, at = replaced.invoice_id, replaced.replaced_at
    newest = update.ledger.latest.get(invoice_id)
    if newest is None or newest >= replaced.version:
        return update.outcome()  # never here, or replaced already
    record = update.editable_latest(invoice_id)
    update.ledger.latest[invoice_id] = replaced.version
    why = f"Version {replaced.version} of this invoice names PO {replaced.replaced_on} and replaces this one"
    update.note_entered(invoice_id, f"replaced-v{replaced.version}", at,
                        f"{why}; this one is in Sampro, so that one is not handed to the RPA bot.")
    if (at_bot := _at_bot(update, invoice_id)) is not None:  # the bot's report decides (`complete_rpa`)
        update.change(at_bot, InvoiceStatus.SENT_TO_RPA, f"replaced-v{replaced.version}", at,
                      reason=f"{why} if the RPA bot fails it.")
    if record is None or record.status in FINISHED or record.status is InvoiceStatus.SENT_TO_RPA:
        return update.outcome()
    held_the_po = record.key in update.ledger.holding
    update.dequeue(record)
    update.change(record, InvoiceStatus.SUPERSEDED, f"replaced-v{replaced.version}", at, reason=f"{why}.")
    if judge is not None:
        update.drain_parked(at)
    if held_the_po:
        judge_again_when_freed(update, record)
    return update.outcome()


def complete_rpa(
    ledger: PurchaseOrderLedger, completion: RpaCompletion, judge: Judge, dispatch: DispatchMode
) -> Outcome:
    """The RPA bot entered (or failed to enter) an invoice: the PO goes to the next one."""
    update = _Update(ledger, judge, dispatch)
    record = update.editable(record_key(completion.invoice_id, completion.invoice_version))
    if record is None and completion.invoice_version > (held := ledger.latest.get(completion.invoice_id, 0)):
        # Dropped, the invoice it names would stay at the bot for good, wherever its ledger is.
        raise DataError(f"RpaCompletion {completion.event_id[:80]!r} names {completion.invoice_id!r} version "
                        f"{completion.invoice_version}, which PO {ledger.po_number!r} never held "
                        f"({f'the newest version it has seen is {held}' if held else 'nor any version of it'}): "
                        "the bot's po_number is not the invoice's, or it reports a version never sent")
    repeated = completion.event_id in update.ledger.completions_seen
    if record is None or record.status is not InvoiceStatus.SENT_TO_RPA or repeated:
        if completion.outcome is CompletionOutcome.SUCCESS and not repeated:
            _entered_while_not_at_bot(update, record, completion)
        return update.outcome()
    _remember(update, completion)
    earlier = completion.attempt is not None and completion.attempt < record.rpa_attempts
    if earlier and completion.outcome is CompletionOutcome.FAILURE:
        return update.outcome()  # a hand-off AP sent again since: its failure tells nothing of this one
    update.dequeue(record)
    at = completion.occurred_at
    if completion.outcome is CompletionOutcome.SUCCESS:
        reason = None
        if record.withdrawn_at_rpa:
            reason = "Entered although the vendor had withdrawn it: ask the vendor for a credit note."
        elif earlier:
            reason = (f"Entered by hand-off {completion.attempt}, reported after hand-off {record.rpa_attempts} was "
                      "handed to the RPA mailbox (not emailed once processscheduler shows this entry): if the bot "
                      "enters that one too, reverse one of the two in Sampro.")
        elif (other := update.ledger.entered.get(completion.invoice_id)) not in (None, record.submission.version):
            reason = (f"Version {other} of this invoice is in Sampro too (reported entered after a failure): reverse "
                      "one of the two in Sampro.")
        elif (replacing := _replaced_from_another_po(update.ledger, record)) is not None:
            # An older version, failed on a PO of its own, may be entered there after all, out of this one's sight.
            reason = (f"Version {replacing} of this invoice, on another PO, replaced it while the RPA bot had it: "
                      f"{_IF_ANOTHER_IS_ENTERED}")
        update.change(record, InvoiceStatus.ENTERED, completion.event_id, at,
                      sampro_invoice_id=completion.sampro_invoice_id, reason=_with_note(reason, completion))
        _entered(update, completion)
        _hold_back_edit_of(update, record, at)
    elif record.withdrawn_at_rpa:  # nothing to try again: the vendor no longer asks for it
        update.change(record, InvoiceStatus.WITHDRAWN, completion.event_id, at,
                      reason=f"The vendor had withdrawn it; the RPA bot did not enter it ({completion.error}).")
    elif (newest := update.ledger.latest.get(record.submission.invoice_id, 0)) > record.submission.version:
        # The vendor's newer version, parked behind it, replaces it: released, it would be entered too.
        if (newer := update.editable(record_key(record.submission.invoice_id, newest))) is not None:
            newer.replaces = record.submission.version
        update.change(record, InvoiceStatus.SUPERSEDED, completion.event_id, at,
                      reason=f"The RPA bot did not enter it ({completion.error}); version {newest} replaces it.")
    else:
        record.rpa_error = completion.error
        update.change(record, InvoiceStatus.RPA_FAILED, completion.event_id, at, reason=completion.error)
    update.drain_parked(at)
    _judge_again_after_entry(update)
    if completion.outcome is not CompletionOutcome.SUCCESS:  # an entry: Sampro's change of it judges them
        judge_again_when_freed(update, record)
    return update.outcome()


_IF_ANOTHER_IS_ENTERED = "if another version of this invoice is entered too, reverse one of the two in Sampro."


def _replaced_from_another_po(ledger: PurchaseOrderLedger, record: InvoiceRecord) -> int | None:
    """The newer version of the record's invoice another PO told this one of (`replace_invoice`): a
    newer version here has a record."""
    invoice_id, version = record.submission.invoice_id, record.submission.version
    newest = ledger.latest.get(invoice_id, version)
    return newest if newest > version and ledger.record(record_key(invoice_id, newest)) is None else None


def _not_applied_to_a_finished_version(
    update: _Update, command: ReleaseRequested | DispatchApproved, not_applied: str
) -> None:
    """A clerk's release or dispatch of a version this PO finished after the clerk looked at it (the
    vendor's newer version replaced it, the vendor withdrew it, the bot entered it) is noted in the
    history, the status kept: dropped without a word, the clerk took the invoice for released,
    and the vendor's newer version sat in manual review. The note goes on the newest version, the
    one the clerk must act on (the dashboard opens it), where this PO has its record; else on the
    version in Sampro, or on the one named. A note, not a verdict: statuses, holds and the PO's
    queue stay as they were, and the record noted remembers the command (`releases_seen`), so that
    one delivered again is noted once."""
    invoice_id, version, at = command.invoice_id, command.invoice_version, command.issued_at
    newest = update.ledger.latest.get(invoice_id)
    if newest is None or newest < version:
        return  # no version of it is on this PO: nothing AP looks at here
    replaced = f"{not_applied}, which version {newest} replaced"
    if newest > version and (newer := update.ledger.record(record_key(invoice_id, newest))) is not None:
        if command.command_id in newer.releases_seen:
            return  # noted already: the command delivered again is applied once
        newer = update.editable_listed(newer.key)
        newer.releases_seen = [*newer.releases_seen[-(RELEASES_REMEMBERED - 1):], command.command_id]
        update.change(newer, newer.status, command.command_id, at, actor=command.user,
                      reason=f"{replaced}: look at version {newest} again.")
        return
    # A finished version's status never changes again: the same note again is the same event.
    if (entered := update.ledger.entered.get(invoice_id)) in (version, newest):
        update.note_entered(invoice_id, command.command_id, at, f"{not_applied}: it is entered in Sampro."
                            if entered == version else f"{replaced}, which is entered in Sampro.", command.user)
        return
    if newest == version:  # no record and not entered: the vendor withdrew it (a newer version supersedes)
        status, why = InvoiceStatus.WITHDRAWN, f"{not_applied}: the vendor had withdrawn it."
    else:  # the newer version names another PO, or finished here as well: the one named was superseded
        status, why = InvoiceStatus.SUPERSEDED, f"{replaced}: look at version {newest} again."
    update.emitted.append(_status_change(invoice_id, version, update.ledger.po_number, status, command.command_id,
                                         at, actor=command.user, reason=why))


def latest_hand_offs(requests: Sequence[RpaRequest]) -> list[RpaRequest]:
    """The requests but those a later hand-off of their version among them follows: a hand-off is
    made only when the one before it failed, and rpa.requests read again, with two refused ones
    of a version in one batch, emailed both."""
    last = last_hand_off_of((r.invoice_id, r.invoice_version, r.attempt) for r in requests)
    return [r for r in requests if r.attempt == last[r.invoice_id, r.invoice_version]]


def last_hand_off_of(hand_offs: Iterable[tuple[str, int, int]]) -> dict[tuple[str, int], int]:
    """Each invoice version's last hand-off (`RpaRequest.attempt`) among these (invoice id, version, attempt)."""
    last: dict[tuple[str, int], int] = {}
    for invoice_id, version, attempt in hand_offs:
        last[invoice_id, version] = max(attempt, last.get((invoice_id, version), attempt))
    return last


def finished_already(requests: Sequence[RpaRequest], versions: Iterable[Any]) -> dict[tuple[str, int], str]:
    """The versions of these requests that `versions` (processscheduler's, with their `status`) show
    finished, with that status: their email must not go. A hand-off after a failure AP released
    waits for the mail flow while the mailbox is down, or the flow lags: meanwhile the bot may
    report the earlier hand-off entered after all (its screen had timed out after the entry), and
    the waiting one was emailed, to be entered twice. One processscheduler does not show finished
    yet goes (the entry's note says so)."""
    wanted = {(request.invoice_id, request.invoice_version) for request in requests}
    return {(v.invoice_id, v.invoice_version): v.status for v in versions
            if (v.invoice_id, v.invoice_version) in wanted and v.status in _FINISHED_VALUES}


_FINISHED_VALUES = frozenset(status.value for status in FINISHED)


def withdrawal_notes(requests: Sequence[RpaRequest], versions: Iterable[Any]) -> dict[tuple[str, int], str]:
    """The events that would say the vendor withdrew a version at the bot (`withdrawn_at_bot`), of each
    request's version and of the newest version of its invoice that `versions` (processscheduler's)
    show at the bot: one query asks which processscheduler has."""
    notes = {(r.invoice_id, r.invoice_version): withdrawn_at_bot(r.invoice_id, r.invoice_version) for r in requests}
    asked = {r.invoice_id for r in requests}
    for version, status in _newest_versions(versions).items():
        if version[0] in asked and status == InvoiceStatus.SENT_TO_RPA.value:
            notes[version] = withdrawn_at_bot(*version)
    return notes


def withdrawn_in_a_newer_version(
    requests: Sequence[RpaRequest], versions: Iterable[Any], withdrawn_at_the_bot: Collection[tuple[str, int]]
) -> set[tuple[str, int]]:
    """The versions of these requests whose invoice's newest version, a newer one, the vendor
    withdrew: `versions` (processscheduler's) show it withdrawn, or it is among `withdrawn_at_the_bot`
    (its note recorded, or its own hand-off in this batch failed so): their email must not go.
    The vendor's delete reaches the PO its newest version names, not another PO an older version
    waits on at the bot (`withdraw_invoice` notes it only there): emailed, the bot entered an
    invoice the vendor no longer asked to be paid. Looking only for a newest version shown
    withdrawn, the mail flow failed version 2 as withdrawn at the bot and emailed version 1 in
    the same batch."""
    newest = _newest_versions(versions)
    latest = {version[0]: version for version in newest}
    for request in requests:  # a hand-off processscheduler does not show yet
        if request.invoice_version > latest.get(request.invoice_id, (request.invoice_id, 0))[1]:
            latest[request.invoice_id] = (request.invoice_id, request.invoice_version)
    return {(r.invoice_id, r.invoice_version) for r in requests
            if (last := latest[r.invoice_id])[1] > r.invoice_version
            and (newest.get(last) == InvoiceStatus.WITHDRAWN.value or last in withdrawn_at_the_bot)}


def _newest_versions(versions: Iterable[Any]) -> dict[tuple[str, int], str]:
    """(invoice id, version) -> status of each invoice's newest version among `versions`."""
    newest: dict[str, Any] = {}
    for version in versions:
        if version.invoice_version > getattr(newest.get(version.invoice_id), "invoice_version", 0):
            newest[version.invoice_id] = version
    return {(v.invoice_id, v.invoice_version): v.status for v in newest.values()}


def entered_as_another_version(requests: Sequence[RpaRequest], versions: Iterable[Any]) -> dict[tuple[str, int], int]:
    """The versions of these requests of an invoice that `versions` (processscheduler's) show
    entered as another version, with that version: their email must not go. The bot's late word
    that it entered a version given up after its failure is taken (`_entered_after_it_was_given_up`),
    and the newer version held the invoice's number by then: failed at the bot and released, it
    was emailed again and entered beside it."""
    entered = {v.invoice_id: v.invoice_version for v in versions if v.status == InvoiceStatus.ENTERED.value}
    return {(r.invoice_id, r.invoice_version): entered[r.invoice_id] for r in requests
            if entered.get(r.invoice_id, r.invoice_version) != r.invoice_version}


def failed_at_bot(status: InvoiceStatus, sent_before: bool) -> bool:
    """Whether a version in `status` is one the bot reported as failed, not sent again since (released,
    or judged again and held at its next turn): its entry reported after all is taken
    (`_entered_while_not_at_bot`; the API publishes it)."""
    return status is InvoiceStatus.RPA_FAILED or (
        sent_before and status is not InvoiceStatus.SENT_TO_RPA and status not in FINISHED)


def _entered(update: _Update, completion: RpaCompletion) -> None:
    update.ledger.entered[completion.invoice_id] = completion.invoice_version
    if completion.sampro_invoice_id is not None:
        update.ledger.entered_as[completion.invoice_id] = completion.sampro_invoice_id
    else:
        update.ledger.entered_as.pop(completion.invoice_id, None)


def _with_note(reason: str | None, completion: RpaCompletion) -> str | None:
    """The reason an entry is recorded with, and the API's note on the report (its `error`): the
    Sampro invoice reported is one another invoice is recorded entered as. Taken for a failure, the
    version the bot had most likely entered (it misread the id) was given up: the vendor's newer
    version parked behind it was emailed to the bot and paid twice, a withdrawn one lost its
    credit-note note."""
    return " ".join(text for text in (reason, completion.error) if text) or None


def _remember(update: _Update, completion: RpaCompletion) -> None:
    # A resent invoice gets a new completion; remembering the last few catches a repeated old one.
    seen = update.ledger.completions_seen
    update.ledger.completions_seen = [*seen[-(COMPLETIONS_REMEMBERED - 1):], completion.event_id]


def _entered_while_not_at_bot(update: _Update, record: InvoiceRecord | None, completion: RpaCompletion) -> None:
    """The bot's word that it entered a version that was not at the bot. One it had reported as
    failed (a screen that timed out after the entry went through) is entered, whether failed
    still or released by AP to be sent again and not sent yet: it would be entered twice. Any
    other is refused naming it: dropped, Sampro would hold an entry AP never hears of, one to pay
    beside the vendor's newer version."""
    if update.ledger.entered.get(completion.invoice_id) == completion.invoice_version:
        # The entry reported again under another id; or, under another Sampro invoice than the one
        # recorded (the ledger's, or the API's where processscheduler showed it), a second entry,
        # AP's to reverse.
        second = completion.sampro_invoice_id
        first = completion.entered_as or update.ledger.entered_as.get(completion.invoice_id)
        if first is not None and second is not None and second != first:
            _remember(update, completion)
            update.note_entered(completion.invoice_id, completion.event_id, completion.occurred_at,
                                f"The RPA bot reported entering it a second time, as Sampro invoice {second}, "
                                f"beside {first}: reverse one of the two in Sampro.")
        return
    if record is not None and failed_at_bot(record.status, record.rpa_attempts > 0):
        _remember(update, completion)
        held_the_po = record.key in update.ledger.holding  # awaiting AP's approval to be sent again
        update.dequeue(record)
        update.change(record, InvoiceStatus.ENTERED, completion.event_id, completion.occurred_at,
                      sampro_invoice_id=completion.sampro_invoice_id,
                      reason=_with_note("The RPA bot reported this entry after it had reported a failure.",
                                        completion))
        _entered(update, completion)
        # Else the PO went on at the failure; the change Sampro makes of the entry judges its held
        # invoices again (after the invoice at the bot now, if one is).
        if held_the_po:
            update.drain_parked(completion.occurred_at)
        return
    if record is None:
        _entered_after_it_was_given_up(update, completion)
        return
    raise DataError(f"RpaCompletion {completion.event_id[:80]!r} says the bot entered {completion.invoice_id!r} "
                    f"version {completion.invoice_version} in Sampro, which was not at the bot for PO "
                    f"{update.ledger.po_number!r} (it is {record.status.value}): look in Sampro for an entry to "
                    "reverse")


def _entered_after_it_was_given_up(update: _Update, completion: RpaCompletion) -> None:
    """The bot's late word that it entered a version the PO gave up after the bot had reported it
    failed: superseded by the vendor's newer version, or withdrawn by the vendor (the API takes it
    only for a version processscheduler shows handed to the bot). Refused, Sampro held an entry AP
    never heard of, and the newer version was entered beside it: paid twice. It is entered (the RPA
    mail flow then emails no other version of the invoice: `entered_as_another_version`); the newer
    version here, not at the bot, is held for AP, and one at the bot gets a note (the bot may still
    enter it); one the vendor withdrew while the bot had it makes the entry ask for a credit note."""
    _remember(update, completion)
    invoice_id, version, at = completion.invoice_id, completion.invoice_version, completion.occurred_at
    entry = f" as Sampro invoice {completion.sampro_invoice_id}" if completion.sampro_invoice_id else ""
    if (other := update.ledger.entered.get(invoice_id)) is not None:  # another version is in Sampro
        # This one is entered too, with its Sampro invoice, as when the two reports come the other way
        # round: left superseded, its entry was known only to the other's history. The ledger keeps the
        # other as the one entered, as it would after that order (the later report recorded last).
        update.emitted.append(_status_change(
            invoice_id, version, update.ledger.po_number, InvoiceStatus.ENTERED, completion.event_id, at,
            sampro_invoice_id=completion.sampro_invoice_id, reason=_with_note(
                f"The RPA bot reported this entry after it had reported a failure, and version {other} of this "
                "invoice is in Sampro too: reverse one of the two in Sampro.", completion)))
        update.note_entered(invoice_id, completion.event_id, at,
                            f"The RPA bot reported entering version {version} of this invoice too{entry}, after it "
                            "had reported it failed: reverse one of the two in Sampro.")
        return
    newest = update.ledger.latest.get(invoice_id, version)
    newer = update.editable_latest(invoice_id) if newest > version else None
    after = "The RPA bot reported this entry after it had reported a failure"
    # A version between the two may name another PO, out of this one's sight: entered there, the
    # invoice was in Sampro twice with no note to reverse one.
    between = f"; {_IF_ANOTHER_IS_ENTERED}" if newest > version + 1 else "."
    if newer is not None and newer.withdrawn_at_rpa:  # the vendor no longer asks to be paid for either
        reason = (f"{after}, and version {newest} had replaced it, which the vendor withdrew while the RPA bot had "
                  f"it: ask the vendor for a credit note{between}")
    elif newer is not None:
        reason = f"{after}, and version {newest} had replaced it: that one is not to be entered too{between}"
    elif newest > version:  # the ledger keeps no record of it: withdrawn since, or on another PO
        reason = (f"{after}, and version {newest} had replaced it, which the vendor withdrew since or which names "
                  "another PO: if withdrawn, ask the vendor for a credit note; if entered too, reverse one of the "
                  "two in Sampro.")
    else:
        reason = f"{after}, and the vendor had withdrawn it: ask the vendor for a credit note."
    update.emitted.append(_status_change(
        invoice_id, version, update.ledger.po_number, InvoiceStatus.ENTERED, completion.event_id, at,
        sampro_invoice_id=completion.sampro_invoice_id, reason=_with_note(reason, completion)))
    _entered(update, completion)
    if newer is None:  # the hand-off gate stops a newer version's email (`entered_as_another_version`)
        return
    if newer.status is InvoiceStatus.SENT_TO_RPA:
        update.change(newer, InvoiceStatus.SENT_TO_RPA, f"entered-v{version}", at,
                      reason=f"Version {version} of this invoice was entered in Sampro{entry} after the RPA bot had "
                             "reported it failed: if the bot enters this one too, reverse one of the two in Sampro.")
        return
    held_the_po = newer.key in update.ledger.holding
    _hold_for_entry_of(update, newer, version, f"entered-v{version}", at)
    if held_the_po:
        update.drain_parked(at)
        judge_again_when_freed(update, newer)


def _hold_back_edit_of(update: _Update, entered: InvoiceRecord, at: datetime) -> None:
    """A vendor edit parked behind its own entered version must not be entered a second time."""
    version = update.ledger.latest.get(entered.submission.invoice_id)
    if version is None or version == entered.submission.version:
        return
    newer_key = record_key(entered.submission.invoice_id, version)
    if newer_key not in update.ledger.parked:
        return
    _hold_for_entry_of(update, update.editable_listed(newer_key), entered.submission.version, "edited-after-entry", at)


def _hold_for_entry_of(update: _Update, newer: InvoiceRecord, version: int, cause: str, at: datetime) -> None:
    """A newer version of an invoice whose `version` is in Sampro, held for AP: one waiting (parked,
    ready, released) is taken out of the PO's queue into manual review; one held already says why
    too. Judged again (a Sampro change, a reprocess), it is held again (`judge_now`); released by a
    clerk, the mail flow refuses its email (`entered_as_another_version`)."""
    newer.entered_before = version
    # Its turn for a Sampro change is over (else judged again at the next completion, it was parked
    # again under the event id it was parked under: processscheduler showed manual review).
    newer.recheck_for = None
    waiting = newer.status in (InvoiceStatus.READY_TO_PROCESS, InvoiceStatus.RELEASED, InvoiceStatus.WAITING_FOR_PO)
    update.dequeue(newer)
    update.change(newer, InvoiceStatus.MANUAL_REVIEW if waiting else newer.status, cause, at,
                  reason=_entered_already(version))


def _entered_already(version: int) -> str:
    return f"Version {version} of this invoice was already entered in Sampro."


def release_invoice(
    ledger: PurchaseOrderLedger, command: ReleaseRequested, judge: Judge, dispatch: DispatchMode
) -> Outcome:
    """AP releases holds of a held invoice; once none is left, it becomes ready to process despite
    its findings. A hold a clerk may not release (`rules.holds`) keeps the invoice held whatever the
    command says; an RPA failure, which has no findings, is released whole."""
    update = _Update(ledger, judge, dispatch)
    key = record_key(command.invoice_id, command.invoice_version)
    if (found := update.ledger.record(key)) is not None and command.command_id in found.releases_seen:
        return update.outcome()  # the same command again: applied once, and nothing to write
    reason = f"{command.reason_code}: {command.reason}" if command.reason_code else command.reason
    record = update.editable(key)
    if record is None:
        _not_applied_to_a_finished_version(
            update, command, f"Not released: {command.user} released version {command.invoice_version} ({reason})")
        return update.outcome()
    if record.status not in RELEASABLE or update.ledger.latest[command.invoice_id] != command.invoice_version:
        return update.outcome()
    record.releases_seen = [*record.releases_seen[-(RELEASES_REMEMBERED - 1):], command.command_id]
    at = command.issued_at
    failed = record.status is InvoiceStatus.RPA_FAILED
    held = holds_of(record.verdict.reasons) if record.verdict and not failed else []
    still = [hold for hold in held if hold.id not in record.released_holds]
    named = set(command.holds) or {hold.id for hold in still if hold.releasable}
    releasing = [hold.id for hold in still if hold.id in named and hold.releasable]
    # Judged again since the clerk looked, under the same name (a Sampro change: the PO's price cut):
    # released, what the clerk never saw went to the bot. The API refuses it as processscheduler
    # shows it; this, what processscheduler did not show yet.
    if otherwise := [hold for hold in still if hold.id in releasing and command.seen.get(hold.id, hold.finding.message)
                     != hold.finding.message]:
        update.change(record, record.status, command.command_id, at, actor=command.user, reason=(
            f"Not released: {reason}; judged again since {command.user} looked, it reads "
            + "; ".join(f"{hold.id}: {hold.finding.message}" for hold in otherwise)))
        return update.outcome()
    # Judged again since the clerk saw it: what the command names that the verdict no longer has
    # (the RPA failure it releases too, held at its next turn at the bot; the holds of a verdict
    # that went to the bot and failed there since), said in the history.
    gone = sorted(set(command.holds) - {hold.id for hold in held} - ({RPA_FAILURE} if failed else set()))
    if gone:
        reason = f"{reason} (judged again since, it has no hold {', '.join(gone)})"
    # A failure's release names the failure, or nothing (a command from before it was named).
    stale = RPA_FAILURE not in command.holds if failed and command.holds else (
        (bool(still) and not releasing) or RPA_FAILURE in gone)
    if stale:
        if gone:
            holds_now = (f"hold is {RPA_FAILURE}, the failure" if failed
                         else f"holds are {', '.join(hold.id for hold in still) or 'none a clerk may release'}")
            update.change(record, record.status, command.command_id, at, actor=command.user,
                          reason=f"Not released: {reason}; its {holds_now}.")
        return update.outcome()  # else nothing it names can be released (or it was, by this very command)
    # Failed again since the clerk looked, with another error: another clerk released the failure the
    # clerk saw, and the bot failed that hand-off too ("vendor blocked for payment"); released, a third
    # hand-off went that no one who read its failure had decided on. The API refuses it as
    # processscheduler shows it; this, what processscheduler did not show yet. A command from before
    # names no failure in `seen`.
    if failed and record.rpa_error is not None and command.seen.get(RPA_FAILURE, record.rpa_error) != record.rpa_error:
        update.change(record, record.status, command.command_id, at, actor=command.user,
                      reason=f"Not released: {reason}; the RPA bot failed it again since {command.user} looked: "
                             f"{record.rpa_error}")
        return update.outcome()
    left = [hold for hold in still if hold.id not in releasing]
    if left:  # released, but held still: the history says who released which hold, and why
        record.released_holds = [*record.released_holds, *releasing]
        update.change(record, record.status, command.command_id, at, actor=command.user, reason=reason,
                      holds=releasing)
        return update.outcome()
    payload = record.payload or judge.payload_for(record.submission)
    if payload is None:  # the history says so: dropped without a word, the clerk took it for released
        update.change(record, record.status, command.command_id, at, actor=command.user,
                      reason=f"Not released ({reason}): the RPA bot could not be given this invoice under rules "
                             f"{judge.rules_version} (its PO cannot be read from Sampro now, a line is on no PO "
                             "line, or these rules cannot read it); it stays held.")
        return update.outcome()
    if record.status is InvoiceStatus.RPA_FAILED:  # it went to the bot once at least, in any ledger
        record.rpa_attempts = max(record.rpa_attempts, 1)
    record.payload = payload
    record.released_holds = [*record.released_holds, *releasing]
    update.change(record, InvoiceStatus.RELEASED, command.command_id, at, actor=command.user, reason=reason,
                  holds=releasing)
    if update.ledger.holding:
        update.ledger.parked.append(record.key)
    else:
        update.hand_over_released(record, at, cause=command.command_id)
    return update.outcome()


def approve_dispatch(
    ledger: PurchaseOrderLedger,
    command: DispatchApproved,
    judge: Judge | None = None,
    dispatch: DispatchMode = "approval",
) -> Outcome:
    """Manual dispatch: an AP clerk sends the ready invoice that holds the PO to the RPA bot. It
    may have waited days for the clerk: judged again against the PO as Sampro has it now, it is
    held anew by what changed (the PO cancelled, its price cut, its quantity entered by hand), and
    the PO goes on to the next invoice; Sampro's changes re-judge held invoices only."""
    update = _Update(ledger, judge, dispatch)
    key = record_key(command.invoice_id, command.invoice_version)
    if (found := update.ledger.record(key)) is not None and command.command_id in found.releases_seen:
        # The same approval again (a crash before its offset was committed): after the bot failed
        # the hand-off it approved and AP released it, it sent the invoice again with no clerk's word.
        return update.outcome()
    record = update.editable(key)
    if record is None:
        _not_applied_to_a_finished_version(
            update, command, f"Not sent to the RPA bot: {command.user} sent version {command.invoice_version}")
        return update.outcome()
    if key not in update.ledger.holding or record.status is InvoiceStatus.SENT_TO_RPA:
        return update.outcome()
    record.releases_seen = [*record.releases_seen[-(RELEASES_REMEMBERED - 1):], command.command_id]
    if judge is not None:
        place = update.ledger.holding.index(key)
        update.ledger.holding.pop(place)  # out of the quantities in flight while it is judged again
        if update.held_anew(record, command.issued_at, "approved for the RPA bot"):
            update.drain_parked(command.issued_at)
            judge_again_when_freed(update, record)
            return update.outcome()
        update.ledger.holding.insert(place, key)
    # A hand-off after a failure is an event of its own even under an approval's id seen before.
    cause = f"{command.command_id}-a{record.rpa_attempts + 1}" if record.rpa_attempts else command.command_id
    update.send_to_rpa(record, command.issued_at, cause, actor=command.user)
    return update.outcome()
