"""What the API's actions do, apart from HTTP: check the invoice's row, then put a command on its
purchase order's stream. processscheduler changes when the per-PO ledger applies the command."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from api.schemas import BLANKS, HoldView
from connectors.api_ports import InvoiceReadModel, PurchaseOrderCommands, RpaSentLog
from connectors.ports import ProcessScheduler, PurchaseOrderReader
from connectors.scheduler.read_model import VERDICT_EVENT_PREFIX, HistoryEntry, InvoiceDetail, is_note_at_bot
from rules.context import EvaluationContext
from rules.duplicates import lookups_for
from rules.errors import Conflict, NotFound
from rules.evaluate import evaluate
from rules.holds import RPA_FAILURE, holds_of
from rules.lifecycle import MAX_HOLDS_NAMED, MAX_SEEN_MESSAGE, DispatchApproved, InvoiceStatus, ReleaseRequested
from rules.limits import Limits
from rules.models import CompletionOutcome, RpaCompletion, UnreadablePurchaseOrder, Verdict
from rules.po_ledger import RELEASABLE, failed_at_bot
from rules.policy import Policy

Clock = Callable[[], datetime]


class UnknownInvoice(NotFound):
    """processscheduler has no row for this invoice (version)."""


class NotNow(Conflict):
    """The invoice's status does not allow the action."""

    def __init__(self, detail: str, current_status: InvoiceStatus):
        super().__init__(detail)
        self.current_status = current_status


class NotYet(Exception):
    """What was asked about is under way, and processscheduler does not show it yet: ask again."""


def find_invoice(read_model: InvoiceReadModel, invoice_id: str, version: int | None) -> InvoiceDetail:
    found = read_model.invoice(invoice_id, version)
    if found is None:
        which = f"{invoice_id} version {version}" if version is not None else invoice_id
        raise UnknownInvoice(f"processscheduler has no invoice {which}")
    return found


def holds(invoice: InvoiceDetail) -> list[HoldView]:
    """The holds of the invoice's last verdict, with the AP releases recorded after it."""
    if invoice.status not in RELEASABLE or invoice.status is InvoiceStatus.RPA_FAILED:
        return []
    released = {}
    for entry in invoice.history:  # oldest first; a verdict brings its findings as holds anew
        if entry.event_id.startswith(VERDICT_EVENT_PREFIX):
            released = {}
        for hold in entry.holds:
            released[hold] = entry
    views = []
    for hold in holds_of(invoice.reasons):
        by = released.get(hold.id)
        views.append(HoldView(id=hold.id, code=hold.finding.code, line_no=hold.finding.line_no,
                              field=hold.finding.field, message=hold.finding.message, releasable=hold.releasable,
                              cleared_by=hold.cleared_by, released_by=by and by.actor,
                              released_at=by and by.occurred_at, release_reason=by and by.reason))
    return views


def failure(invoice: InvoiceDetail) -> str | None:
    """The RPA bot's error of the failed hand-off an rpa_failed invoice is in, as a release of the
    failure names it in `seen`: the step that made it rpa_failed, the first after its last hand-off
    (the notes after it have the status too, a stale release's among them, and name their clerk)."""
    if invoice.status is not InvoiceStatus.RPA_FAILED:
        return None
    failed: HistoryEntry | None = None
    for step in invoice.history:  # oldest first
        if step.status is InvoiceStatus.SENT_TO_RPA and not is_note_at_bot(step.status, step.reason):
            failed = None
        elif step.status is InvoiceStatus.RPA_FAILED and step.actor is None and failed is None:
            failed = step
    return failed and failed.reason


def release_invoice(read_model: InvoiceReadModel, commands: PurchaseOrderCommands, clock: Clock, *,
                    invoice_id: str, version: int, user: str, reason: str, named: list[str] | None = None,
                    reason_code: str = "OTHER", seen: dict[str, str] | None = None) -> ReleaseRequested:
    """Releases the named holds (none named: every hold a clerk may release); a hold that is not
    the invoice's, was released already, or may not be released by a clerk is refused by name, and
    so is one that reads otherwise than in `seen` (its message as the clerk saw it: a release names
    a hold, and a Sampro change that judged the invoice again meanwhile, the PO's price cut, left
    the name and released 6.60 over where the clerk had agreed to 0.10), and a failure whose error
    is not the one `seen` names for RPA_FAILED::. The route has checked `reason_code` against the
    configured codes (a 422 naming the field)."""
    invoice = find_invoice(read_model, invoice_id, version)
    if version != max(invoice.versions):
        raise NotNow(f"version {version} was replaced by version {max(invoice.versions)}", invoice.status)
    if invoice.status not in RELEASABLE:
        allowed = ", ".join(sorted(RELEASABLE))
        raise NotNow(f"{invoice_id} is {invoice.status.value}; only {allowed} can be released", invoice.status)
    current = {hold.id: hold for hold in holds(invoice)}
    open_holds = [hold for hold in current.values() if hold.released_by is None]
    if invoice.status is InvoiceStatus.RPA_FAILED and named:
        if named != [RPA_FAILURE]:  # a failure has no finding: its release names the failure, or nothing
            raise NotNow(f"{invoice_id} failed at the RPA bot; a release of it names {RPA_FAILURE} or no hold",
                         invoice.status)
        named = None
    for name in named or []:
        hold = current.get(name)
        if hold is None:
            raise NotNow(f"{invoice_id} has no hold {name}; its holds are {', '.join(current) or 'none'}",
                         invoice.status)
        if not hold.releasable:
            raise NotNow(f"the hold {name} may not be released by a clerk: {hold.cleared_by}", invoice.status)
        if hold.released_by is not None:
            raise NotNow(f"the hold {name} was released by {hold.released_by} already", invoice.status)
    for name, message in (seen or {}).items():
        if (hold := current.get(name)) is not None and hold.message != message:
            raise NotNow(f"the hold {name} reads otherwise now ({hold.message}) than when you looked at it: look "
                         "at the invoice again", invoice.status)
    # The failure the clerk saw, by its error: another clerk released it and the bot failed the next
    # hand-off too, with another error ("do not pay"), which this release went on to release unseen.
    failed_with = failure(invoice)
    if (saw := (seen or {}).get(RPA_FAILURE)) is not None and saw != failed_with:
        raise NotNow((f"the failed hand-off reads otherwise now ({failed_with}) than when you looked at it"
                      if invoice.status is InvoiceStatus.RPA_FAILED else
                      f"{invoice_id} is {invoice.status.value} now, no longer the failed hand-off you looked at")
                     + ": look at the invoice again", invoice.status)
    if not named and open_holds and not any(hold.releasable for hold in open_holds):
        raise NotNow(f"{invoice_id} is held only by holds a clerk may not release: "
                     + "; ".join(f"{hold.id} ({hold.cleared_by})" for hold in open_holds), invoice.status)
    # The holds the clerk saw, by name even when none was named, as the dashboard names them: a command
    # naming none releases every hold of the verdict the ledger has when it comes, and a Sampro change
    # may have judged it again meanwhile (a PO cancelled since: PO_NOT_OPEN, released unread).
    shown = [RPA_FAILURE] if invoice.status is InvoiceStatus.RPA_FAILED else [
        hold.id for hold in open_holds if hold.releasable]
    if not named and len(shown) > MAX_HOLDS_NAMED:
        raise NotNow(f"{invoice_id} has {len(shown)} holds a clerk may release, more than one release names "
                     f"({MAX_HOLDS_NAMED}): name them, {MAX_HOLDS_NAMED} a release", invoice.status)
    releasing = list(named or shown)
    # As the API shows them now, each the clerk did not send: a client that sends no `seen` (a
    # script, the README's example) released a hold judged again under the same name before the
    # worker took the command, 1.50 over where the clerk had agreed to 0.10.
    shown_now = {name: current[name].message for name in releasing
                 if name in current and len(current[name].message) <= MAX_SEEN_MESSAGE}
    if failed_with and len(failed_with) <= MAX_SEEN_MESSAGE:  # the failure likewise, by its error
        shown_now[RPA_FAILURE] = failed_with
    command = ReleaseRequested(command_id=f"release:{uuid.uuid4().hex}", invoice_id=invoice_id, invoice_version=version,
                               po_number=invoice.po_number, user=user, reason=reason.strip(BLANKS), issued_at=clock(),
                               holds=releasing, reason_code=reason_code, seen={**shown_now, **(seen or {})})
    commands.publish(command)
    return command


def send_to_rpa(read_model: InvoiceReadModel, commands: PurchaseOrderCommands, clock: Clock, *,
                invoice_id: str, version: int, user: str) -> DispatchApproved:
    invoice = find_invoice(read_model, invoice_id, version)
    if invoice.status is not InvoiceStatus.READY_TO_PROCESS:
        raise NotNow(f"{invoice_id} is {invoice.status.value}; only ready_to_process can be sent", invoice.status)
    command = DispatchApproved(command_id=f"dispatch:{uuid.uuid4().hex}", invoice_id=invoice_id,
                               invoice_version=version, po_number=invoice.po_number, user=user, issued_at=clock())
    commands.publish(command)
    return command


@dataclass(frozen=True)
class CompletionReport:
    event_id: str
    already_recorded: bool


def completion_event_id(invoice_id: str, version: int, attempt: int, outcome: CompletionOutcome,
                        sampro_invoice_id: str | None = None) -> str:
    """The same for every report of one attempt's outcome, so a callback sent twice is applied
    once. With the outcome in it, an entry reported after a failure of the same attempt is no repeat
    of it: the PO agent records it entered, where it took it for the failure again and dropped it.
    With the Sampro invoice in it, a second entry reported before processscheduler shows the first
    is no repeat either: taken for one, it was dropped, and Sampro held an entry AP never heard of."""
    event = f"rpa:{invoice_id}:v{version}:attempt{attempt}:{outcome.value}"
    return f"{event}:{sampro_invoice_id}" if outcome is CompletionOutcome.SUCCESS and sampro_invoice_id else event


def record_rpa_outcome(read_model: InvoiceReadModel, sent_log: RpaSentLog, commands: PurchaseOrderCommands,
                       clock: Clock, *, invoice_id: str, version: int, outcome: CompletionOutcome,
                       attempt: int | None = None, sampro_invoice_id: str | None = None,
                       error: str | None = None) -> CompletionReport:
    """`attempt`: the hand-off the bot acted on, as its email's X-Invoice-Attempt says. Without it,
    the last one is taken."""
    # processscheduler is written a moment after the email goes out (longer while the worker waits
    # out an outage): a report on what it does not show yet is that hand-off's when the bot names
    # it, else it is asked again later. Refused, it was lost: a bot does not report again on a 4xx.
    emailed = sent_log.last_hand_off(invoice_id, version)
    try:
        invoice = find_invoice(read_model, invoice_id, version)
    except NotFound:
        if emailed:
            raise NotYet(f"{invoice_id} v{version} was emailed to the RPA bot, and processscheduler does not "
                         "show it yet: report it again in a few seconds") from None
        raise
    shown = _hand_offs(invoice)
    sent = emailed or shown  # the sent log has every email; processscheduler, those of a log written before it
    named = attempt  # the PO agent takes a completion that names none for the last hand-off's, as here
    if named is None and emailed > shown:
        raise NotYet(f"{invoice_id} v{version} was emailed to the RPA bot again, and processscheduler does "
                     "not show it yet: report it again in a few seconds (with the email's X-Invoice-Attempt, "
                     "it is taken at once)")
    attempt = sent if named is None else named  # past here, one that names none is the last: `sent`, `shown`
    if attempt > sent:
        raise NotNow(f"{invoice_id} v{version} went to the RPA bot {sent} time(s), not {attempt}", invoice.status)
    event_id = completion_event_id(invoice_id, version, attempt, outcome, sampro_invoice_id)
    if attempt < sent and outcome is CompletionOutcome.FAILURE:  # AP sent it again since: nothing to tell
        return CompletionReport(event_id, already_recorded=True)
    taken = _another_invoice_entered_as(read_model, invoice, outcome, sampro_invoice_id)
    if attempt > shown:  # a hand-off processscheduler does not show yet, named by the bot: taken at once
        return _publish_entry(commands, clock, invoice, outcome, named, event_id, sampro_invoice_id, error, taken)
    recorded = InvoiceStatus.ENTERED if outcome is CompletionOutcome.SUCCESS else InvoiceStatus.RPA_FAILED
    if invoice.status is recorded and not _second_entry(invoice.sampro_invoice_id, sampro_invoice_id):
        if taken is not None:  # the same answer as the report's first time, whether processscheduler shows it yet
            raise _entered_as_another_invoice(invoice, sampro_invoice_id, taken)
        return CompletionReport(event_id, already_recorded=True)
    if invoice.status is recorded:
        # Taken for a repeat, Sampro would hold an entry AP never hears of: one to pay twice. The PO
        # agent notes it in the invoice's history; the bot is told it conflicts with the entry recorded.
        _publish(commands, clock, invoice, outcome, named, event_id, sampro_invoice_id, error,
                 entered_as=invoice.sampro_invoice_id)
        raise NotNow(f"{invoice_id} v{version} was entered as Sampro invoice {invoice.sampro_invoice_id}; "
                     f"{sampro_invoice_id} is a second entry of it: reverse one in Sampro (AP sees this in the "
                     "invoice's history)", invoice.status)
    # An entry reported after a failure is taken, sent again or not yet, or given up since (superseded
    # by the vendor's newer version, withdrawn): Sampro holds it, and the PO agent records it entered.
    late_entry = outcome is CompletionOutcome.SUCCESS and (failed_at_bot(invoice.status, shown > 0) or (
        shown > 0 and invoice.status in (InvoiceStatus.SUPERSEDED, InvoiceStatus.WITHDRAWN)))
    if invoice.status is not InvoiceStatus.SENT_TO_RPA and not late_entry:
        raise NotNow(f"{invoice_id} v{version} is {invoice.status.value}, not at the RPA bot", invoice.status)
    return _publish_entry(commands, clock, invoice, outcome, named, event_id, sampro_invoice_id, error, taken)


def _another_invoice_entered_as(read_model: InvoiceReadModel, invoice: InvoiceDetail, outcome: CompletionOutcome,
                                sampro_invoice_id: str | None) -> str | None:
    """The other invoice's version ("MP-1 v1") processscheduler records entered as the Sampro invoice
    an entry is reported as, if any."""
    if outcome is not CompletionOutcome.SUCCESS or sampro_invoice_id is None:
        return None
    return next((f"{other} v{version}" for other, version in read_model.entered_as(sampro_invoice_id)
                 if other != invoice.invoice_id), None)


def _publish_entry(commands: PurchaseOrderCommands, clock: Clock, invoice: InvoiceDetail, outcome: CompletionOutcome,
                   attempt: int | None, event_id: str, sampro_invoice_id: str | None, error: str | None,
                   taken: str | None) -> CompletionReport:
    """Publishes the report as it is. An entry as a Sampro invoice another invoice is recorded
    entered as is taken too, the conflict in its `error` for the PO agent to write in its history,
    and the bot's operator is told (409): the bot says it entered this version, so it most likely
    is in Sampro under an id misread. Taken for a failure, as it was, the vendor's newer version
    parked behind it was emailed to the bot (paid twice), and a withdrawn one was recorded "the RPA
    bot did not enter it", its credit note never asked for. Unnoted, processscheduler showed two
    invoices entered as one Sampro invoice, and AP never heard of it."""
    if taken is None:
        return _publish(commands, clock, invoice, outcome, attempt, event_id, sampro_invoice_id, error)
    _publish(commands, clock, invoice, outcome, attempt, event_id, sampro_invoice_id,
             f"The RPA bot reported entering it as Sampro invoice {sampro_invoice_id}, which {taken} is recorded "
             "entered as: one of the two is recorded under the wrong Sampro invoice; find both in Sampro and "
             "correct the one the bot misread.")
    raise _entered_as_another_invoice(invoice, sampro_invoice_id, taken)


def _entered_as_another_invoice(invoice: InvoiceDetail, sampro_invoice_id: str | None, taken: str) -> NotNow:
    return NotNow(f"{invoice.invoice_id} v{invoice.invoice_version} was reported entered as Sampro invoice "
                  f"{sampro_invoice_id}, which {taken} is recorded entered as: it is recorded entered all the same, "
                  "with a note for AP to find both in Sampro and correct the one misread (AP sees this in the "
                  "invoice's history)", invoice.status)


def _hand_offs(invoice: InvoiceDetail) -> int:
    """The hand-offs processscheduler shows: its sent_to_rpa steps but the notes on one (the vendor
    withdrew or replaced the invoice while the bot had it)."""
    return sum(1 for step in invoice.history
               if step.status is InvoiceStatus.SENT_TO_RPA and not is_note_at_bot(step.status, step.reason))


def _publish(commands: PurchaseOrderCommands, clock: Clock, invoice: InvoiceDetail, outcome: CompletionOutcome,
             attempt: int | None, event_id: str, sampro_invoice_id: str | None, error: str | None,
             entered_as: str | None = None) -> CompletionReport:
    commands.publish(RpaCompletion(event_id=event_id, invoice_id=invoice.invoice_id,
                                   invoice_version=invoice.invoice_version, po_number=invoice.po_number,
                                   outcome=outcome, sampro_invoice_id=sampro_invoice_id, error=error,
                                   occurred_at=clock(), attempt=attempt, entered_as=entered_as))
    return CompletionReport(event_id, already_recorded=False)


def _second_entry(recorded: str | None, reported: str | None) -> bool:
    return recorded is not None and reported is not None and reported != recorded


def dry_run(document: dict[str, Any], purchase_orders: PurchaseOrderReader, scheduler: ProcessScheduler,
            policy: Policy, limits: Limits, now: datetime) -> Verdict:
    """The verdict the pipeline would give now, writing nothing. Quantities at the RPA bot for
    the same PO are not known here, so they are not counted against what is open."""
    po_number = document.get("po_number")
    storable = isinstance(po_number, str) and 0 < len(po_number) <= 64 and "\x00" not in po_number
    sampro_po = purchase_orders.fetch([po_number]).get(po_number) if storable else None
    lookups = lookups_for([document], policy)
    known = [*purchase_orders.entered_invoices(lookups), *scheduler.decided_invoices(lookups)] if lookups else []
    po, problem = (None, sampro_po.problem) if isinstance(sampro_po, UnreadablePurchaseOrder) else (sampro_po, None)
    return evaluate(document, po, EvaluationContext(history=known, policy=policy, now=now, limits=limits,
                                                    po_problem=problem))
