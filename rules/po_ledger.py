"""One purchase order's work queue: which invoice holds the PO at the RPA bot, which wait behind it.

This replaces the old "PO lock": all work for a PO arrives on one ordered stream, and this
pure state machine decides what each message means. It never fetches anything; the caller
passes a `Judge` bound to a fresh PO snapshot. Every outcome is a list of messages to emit;
replaying a message that was already applied emits the same messages again (downstream sinks
are idempotent) and never changes the state twice.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from rules.lifecycle import (
    DispatchApproved,
    InvoiceStatus,
    InvoiceSubmitted,
    InvoiceWithdrawn,
    ReleaseRequested,
    RpaRequest,
    StatusChanged,
)
from rules.models import (
    CompletionOutcome,
    RpaCompletion,
    RpaPayload,
    Verdict,
    VerdictStatus,
)

Emitted = Verdict | StatusChanged | RpaRequest
DispatchMode = Literal["automatic", "approval"]

COMPLETIONS_REMEMBERED = 50

# Statuses after which AP may override the findings and release the invoice to the RPA bot.
RELEASABLE = frozenset({InvoiceStatus.MANUAL_REVIEW, InvoiceStatus.BAD_INVOICE, InvoiceStatus.RPA_FAILED})
# Where an invoice version's story ends: nothing applies to it any more, so the ledger forgets it.
FINISHED = frozenset({InvoiceStatus.ENTERED, InvoiceStatus.WITHDRAWN, InvoiceStatus.SUPERSEDED})
# Verdicts that a change of rules may turn around; nothing reached the RPA bot because of them.
REJUDGEABLE = frozenset({InvoiceStatus.MANUAL_REVIEW, InvoiceStatus.BAD_INVOICE, InvoiceStatus.PO_NOT_FOUND})


class Judge(Protocol):
    """The rules, bound by the caller to this PO's fresh snapshot, history and tolerances."""

    @property
    def rules_version(self) -> str:
        """The rules and tolerances this judge applies."""

    def decide(self, submission: InvoiceSubmitted, in_flight: dict[str, Decimal]) -> Verdict: ...

    def payload_for(self, submission: InvoiceSubmitted) -> RpaPayload | None:
        """The RPA payload for an AP release, or None when the invoice cannot be keyed at all."""

    def could_not_judge(self, submission: InvoiceSubmitted, reason: str) -> Verdict:
        """bad_invoice for a submission whose judging failed (the record is dead-lettered)."""


def record_key(invoice_id: str, version: int) -> str:
    return f"{invoice_id}@v{version}"


class InvoiceRecord(BaseModel):
    """One invoice version on this PO and where it stands."""

    model_config = ConfigDict(extra="ignore")

    submission: InvoiceSubmitted
    status: InvoiceStatus
    verdict: Verdict | None = None
    payload: RpaPayload | None = None
    last_change: StatusChanged | None = None  # re-emitted on replay, with its original event id

    @property
    def key(self) -> str:
        return record_key(self.submission.invoice_id, self.submission.version)


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
    latest: dict[str, int] = Field(default_factory=dict)  # invoice id -> newest version seen
    completions_seen: list[str] = Field(default_factory=list)

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


def _change(
    record: InvoiceRecord, status: InvoiceStatus, cause: str, at: datetime, **extra: Any
) -> StatusChanged:
    sub = record.submission
    return StatusChanged(
        event_id=f"{sub.invoice_id}:v{sub.version}:{status.value}:{cause}",
        invoice_id=sub.invoice_id,
        invoice_version=sub.version,
        po_number=sub.po_number,
        status=status,
        occurred_at=at,
        **extra,
    )


def _rpa_request(record: InvoiceRecord, at: datetime) -> RpaRequest:
    sub = record.submission
    return RpaRequest(
        invoice_id=sub.invoice_id,
        invoice_version=sub.version,
        po_number=sub.po_number,
        payload=record.payload,
        requested_at=at,
    )


class _Session:
    """Applies one message to a copy of the ledger and collects what to emit.

    Copy on write: the ledger's containers are copied, a record only when it changes (`own`),
    so the caller's ledger stays untouched and an unchanged record stays the same object.
    """

    def __init__(self, ledger: PurchaseOrderLedger, judge: Judge | None, dispatch: DispatchMode):
        self.ledger = ledger.model_copy(update={
            "holding": list(ledger.holding), "parked": list(ledger.parked), "records": dict(ledger.records),
            "latest": dict(ledger.latest), "completions_seen": list(ledger.completions_seen),
        })
        self.judge = judge
        self.dispatch = dispatch
        self.emitted: list[Emitted] = []

    def outcome(self) -> Outcome:
        return Outcome(ledger=self.ledger, emitted=self.emitted)

    def own(self, key: str) -> InvoiceRecord | None:
        """The record, copied into this session's ledger so that it may be changed."""
        record = self.ledger.record(key)
        if record is not None:
            record = self.ledger.records[key] = record.model_copy()
        return record

    def own_listed(self, key: str) -> InvoiceRecord:
        """`own` for a key the ledger lists (parked, holding): its record is there."""
        record = self.own(key)
        if record is None:
            raise KeyError(f"the ledger lists {key} but has no record of it")
        return record

    def own_latest(self, invoice_id: str) -> InvoiceRecord | None:
        version = self.ledger.latest.get(invoice_id)
        return None if version is None else self.own(record_key(invoice_id, version))

    def add(self, record: InvoiceRecord) -> None:
        self.ledger.records[record.key] = record
        self.ledger.latest[record.submission.invoice_id] = record.submission.version

    def let_go(self, record: InvoiceRecord) -> None:
        for queue in (self.ledger.holding, self.ledger.parked):
            if record.key in queue:
                queue.remove(record.key)

    def change(self, record: InvoiceRecord, status: InvoiceStatus, cause: str, at: datetime, **extra: Any) -> None:
        record.status = status
        record.last_change = _change(record, status, cause, at, **extra)
        self.emitted.append(record.last_change)
        if status in FINISHED:
            self.ledger.records.pop(record.key, None)

    def park(self, record: InvoiceRecord, at: datetime, cause: str = "parked") -> None:
        self.ledger.parked.append(record.key)
        self.change(record, InvoiceStatus.WAITING_FOR_PO, cause, at)

    def judge_now(self, record: InvoiceRecord) -> None:
        assert self.judge is not None, "a submission needs a judge bound to a PO snapshot"
        verdict = self.judge.decide(record.submission, self.ledger.in_flight())
        record.verdict = verdict
        record.payload = verdict.rpa_payload
        record.status = InvoiceStatus(verdict.status.value)
        self.emitted.append(verdict)
        if verdict.status is VerdictStatus.READY_TO_PROCESS:
            self.hold(record, verdict.evaluated_at, cause="verdict")

    def hold(self, record: InvoiceRecord, at: datetime, cause: str) -> None:
        self.ledger.holding.append(record.key)
        if self.dispatch == "automatic":
            self.send_to_rpa(record, at, cause)
        elif record.status is InvoiceStatus.RELEASED:
            self.change(record, InvoiceStatus.READY_TO_PROCESS, cause, at)

    def send_to_rpa(self, record: InvoiceRecord, at: datetime, cause: str, actor: str | None = None) -> None:
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
            record = self.own_listed(self.ledger.parked.pop(0))
            if record.status is InvoiceStatus.RELEASED:
                self.hold(record, at, cause="released")
            else:
                self.judge_now(record)

    def replay(self, record: InvoiceRecord) -> None:
        """Re-emit where this version stands, so a write lost in a crash is repaired downstream
        (every message is idempotent there: same event ids, same Message-ID)."""
        if record.verdict is not None:
            self.emitted.append(record.verdict)
        if record.status is InvoiceStatus.SENT_TO_RPA and record.payload is not None:
            assert record.last_change is not None, "a record sent to the RPA bot has its status change"
            self.emitted.append(_rpa_request(record, record.last_change.occurred_at))
        if record.last_change is not None:
            self.emitted.append(record.last_change)


def may_free(ledger: PurchaseOrderLedger | None, work: object) -> bool:
    """Whether this work can end what holds the PO, so that its parked invoices may be judged now:
    a completion, a withdrawal, an AP command, a new version; a new invoice only parks behind."""
    if ledger is None or not ledger.parked:
        return False
    return not isinstance(work, InvoiceSubmitted) or work.invoice_id in ledger.latest


def submit_invoice(
    ledger: PurchaseOrderLedger, submission: InvoiceSubmitted, judge: Judge, dispatch: DispatchMode
) -> Outcome:
    """A new invoice or a vendor's new version of one. The same version again is a replay: it
    re-emits where the invoice stands, or, after a change of rules, is judged again unless it
    already went to the RPA bot. A version no newer than a finished one changes nothing."""
    s = _Session(ledger, judge, dispatch)
    at = submission.received_at
    known = s.own_latest(submission.invoice_id)
    newest = s.ledger.latest.get(submission.invoice_id)
    if known is None and newest is not None and newest >= submission.version:
        return s.outcome()  # that version, or a newer one, already finished
    if known is not None and known.submission.version > submission.version:
        return s.outcome()  # an older version arriving late changes nothing
    if known is not None and known.submission.version == submission.version:
        if known.status in REJUDGEABLE and known.verdict and known.verdict.rules_version != judge.rules_version:
            # Reprocessed after a change of rules: judged again by the rules now in force.
            s.admit(known, at, cause=f"parked-for-{judge.rules_version}")
        else:
            s.replay(known)
        return s.outcome()
    record = InvoiceRecord(submission=submission, status=InvoiceStatus.WAITING_FOR_PO)
    s.add(record)
    if known is not None and known.status not in (InvoiceStatus.SENT_TO_RPA, InvoiceStatus.ENTERED):
        s.let_go(known)
        s.change(known, InvoiceStatus.SUPERSEDED, f"v{submission.version}", at)
        s.drain_parked(at)
    s.admit(record, at)
    return s.outcome()


def withdraw_invoice(
    ledger: PurchaseOrderLedger, withdrawal: InvoiceWithdrawn, judge: Judge | None, dispatch: DispatchMode
) -> Outcome:
    """The vendor deleted the invoice: drop it unless the RPA bot already has it."""
    s = _Session(ledger, judge, dispatch)
    record = s.own_latest(withdrawal.invoice_id)
    final = (InvoiceStatus.WITHDRAWN, InvoiceStatus.ENTERED, InvoiceStatus.SENT_TO_RPA)
    if record is None or record.status in final:
        return s.outcome()
    s.let_go(record)
    s.change(record, InvoiceStatus.WITHDRAWN, "deleted", withdrawal.withdrawn_at)
    if judge is not None:
        s.drain_parked(withdrawal.withdrawn_at)
    return s.outcome()


def complete_rpa(
    ledger: PurchaseOrderLedger, completion: RpaCompletion, judge: Judge, dispatch: DispatchMode
) -> Outcome:
    """The RPA bot entered (or failed to enter) an invoice: the PO goes to the next one."""
    s = _Session(ledger, judge, dispatch)
    record = s.own(record_key(completion.invoice_id, completion.invoice_version))
    if (
        record is None
        or record.status is not InvoiceStatus.SENT_TO_RPA
        or completion.event_id in s.ledger.completions_seen
    ):
        return s.outcome()
    # A resent invoice gets a new completion; remembering the last few catches a repeated old one.
    s.ledger.completions_seen = [*s.ledger.completions_seen[-(COMPLETIONS_REMEMBERED - 1):], completion.event_id]
    s.let_go(record)
    at = completion.occurred_at
    if completion.outcome is CompletionOutcome.SUCCESS:
        s.change(record, InvoiceStatus.ENTERED, completion.event_id, at, sampro_invoice_id=completion.sampro_invoice_id)
        _hold_back_edit_of(s, record, at)
    else:
        s.change(record, InvoiceStatus.RPA_FAILED, completion.event_id, at, reason=completion.error)
    s.drain_parked(at)
    return s.outcome()


def _hold_back_edit_of(s: _Session, entered: InvoiceRecord, at: datetime) -> None:
    """A vendor edit parked behind its own entered version must not be entered a second time."""
    version = s.ledger.latest.get(entered.submission.invoice_id)
    if version is None or version == entered.submission.version:
        return
    newer_key = record_key(entered.submission.invoice_id, version)
    if newer_key not in s.ledger.parked:
        return
    newer = s.own_listed(newer_key)
    s.ledger.parked.remove(newer.key)
    reason = f"Version {entered.submission.version} of this invoice was already entered in Sampro."
    s.change(newer, InvoiceStatus.MANUAL_REVIEW, "edited-after-entry", at, reason=reason)


def release_invoice(
    ledger: PurchaseOrderLedger, command: ReleaseRequested, judge: Judge, dispatch: DispatchMode
) -> Outcome:
    """An AP override: the invoice becomes ready to process despite its findings."""
    s = _Session(ledger, judge, dispatch)
    record = s.own(record_key(command.invoice_id, command.invoice_version))
    if (record is None or record.status not in RELEASABLE
            or s.ledger.latest[command.invoice_id] != command.invoice_version):
        return s.outcome()
    payload = record.payload or judge.payload_for(record.submission)
    if payload is None:
        return s.outcome()
    record.payload = payload
    at = command.issued_at
    s.change(record, InvoiceStatus.RELEASED, command.command_id, at, actor=command.user, reason=command.reason)
    if s.ledger.holding:
        s.ledger.parked.append(record.key)
    else:
        s.hold(record, at, cause=command.command_id)
    return s.outcome()


def approve_dispatch(
    ledger: PurchaseOrderLedger,
    command: DispatchApproved,
    judge: Judge | None = None,
    dispatch: DispatchMode = "approval",
) -> Outcome:
    """Manual dispatch: an AP clerk sends the ready invoice that holds the PO to the RPA bot."""
    s = _Session(ledger, judge, dispatch)
    key = record_key(command.invoice_id, command.invoice_version)
    record = s.own(key)
    if record is None or key not in s.ledger.holding or record.status is InvoiceStatus.SENT_TO_RPA:
        return s.outcome()
    s.send_to_rpa(record, command.issued_at, command.command_id, actor=command.user)
    return s.outcome()
