"""The per-PO queue: parking behind the invoice at the RPA bot, completions, edits, releases, replays."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from rules.context import KnownInvoice
from rules.errors import DataError, RefusedEdit
from rules.holds import RPA_FAILURE, holds_of
from rules.judge import RulesJudge
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
    CompletionOutcome,
    Finding,
    PurchaseOrder,
    RpaCompletion,
    RpaPayload,
    RpaPayloadLine,
    Severity,
    Verdict,
    VerdictAudit,
    VerdictStatus,
)
from rules.po_ledger import (
    CHANGES_REMEMBERED,
    PurchaseOrderLedger,
    approve_dispatch,
    change_digest,
    complete_rpa,
    failed_at_bot,
    may_free,
    recheck_held,
    release_invoice,
    replace_invoice,
    submit_invoice,
    verdict_event_id,
    withdraw_invoice,
)
from rules.policy import Policy, Tolerance
from tests.unit.rules.builders import NOW, PO, invoice

AT = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)


def payload(invoice_id: str, version: int, qty: str = "1") -> RpaPayload:
    return RpaPayload(
        invoice_id=invoice_id, invoice_version=version, vendor_id="V1", invoice_number=f"N-{invoice_id}",
        invoice_date="2026-11-20", po_number="PO-1", currency="USD",
        lines=[RpaPayloadLine(invoice_line_no=1, po_line_no=1, part_number="P1", quantity=Decimal(qty),
                              unit_price=Decimal("2.00"), amount=Decimal("2.00"))],
        tax_amount=Decimal(0), total_amount=Decimal("2.00"),
    )


class FakeJudge:
    """Decides by the document's `expect` field; records what it saw in flight."""

    def __init__(self, rules_version: str = "test", lets_pass: frozenset[str] = frozenset(),
                 fails_on: frozenset[str] = frozenset()) -> None:
        self.seen_in_flight: list[dict] = []
        self.rules_version = rules_version
        self.lets_pass = lets_pass  # invoices these rules find ready whatever the document expects
        self.fails_on = fails_on  # invoices these rules raise on, as a bug would

    def decide(self, submission: InvoiceSubmitted, in_flight: dict[str, Decimal]) -> Verdict:
        if submission.invoice_id in self.fails_on:
            raise ArithmeticError(f"no rule foresaw {submission.invoice_id}")
        self.seen_in_flight.append(in_flight)
        status = VerdictStatus(submission.document.get("expect", "ready_to_process"))
        if submission.invoice_id in self.lets_pass:
            status = VerdictStatus.READY_TO_PROCESS
        ready = status is VerdictStatus.READY_TO_PROCESS
        return Verdict(
            invoice_id=submission.invoice_id, invoice_version=submission.version, po_number=submission.po_number,
            status=status, http_status=status.http_status, rules_version=self.rules_version,
            rpa_payload=payload(submission.invoice_id, submission.version) if ready else None,
            evaluated_at=submission.received_at,
        )

    def payload_for(self, submission: InvoiceSubmitted) -> RpaPayload | None:
        return payload(submission.invoice_id, submission.version)

    def could_not_judge(self, submission: InvoiceSubmitted, reason: str, dead_lettered: bool = True) -> Verdict:
        status = VerdictStatus.BAD_INVOICE
        finding = Finding(code="INVALID_INVOICE", severity=Severity.ERROR, field="invoice",
                          message=f"{reason} (dead-lettered: {dead_lettered})")
        return Verdict(invoice_id=submission.invoice_id, invoice_version=submission.version,
                       po_number=submission.po_number, status=status, http_status=status.http_status,
                       reasons=[finding], rules_version=self.rules_version, evaluated_at=submission.received_at)


def submission(invoice_id: str, version: int = 1, expect: str = "ready_to_process") -> InvoiceSubmitted:
    return InvoiceSubmitted(invoice_id=invoice_id, version=version, po_number="PO-1",
                            document={"expect": expect}, received_at=AT)


def completion(invoice_id: str, version: int = 1, ok: bool = True, event_id: str | None = None) -> RpaCompletion:
    return RpaCompletion(
        event_id=event_id or f"c-{invoice_id}-{version}-{ok}", invoice_id=invoice_id, invoice_version=version,
        po_number="PO-1", outcome=CompletionOutcome.SUCCESS if ok else CompletionOutcome.FAILURE,
        sampro_invoice_id="S-1" if ok else None, error=None if ok else "Sampro timed out", occurred_at=AT,
    )


def statuses(emitted) -> list[tuple[str, str]]:
    out = []
    for m in emitted:
        if isinstance(m, Verdict):
            out.append((m.invoice_id, m.status.value))
        elif isinstance(m, StatusChanged):
            out.append((m.invoice_id, m.status.value))
        elif isinstance(m, RpaRequest):
            out.append((m.invoice_id, "rpa_request"))
    return out


@pytest.fixture
def judge() -> FakeJudge:
    return FakeJudge()


def run(ledger, *steps):
    emitted = []
    for step in steps:
        outcome = step(ledger)
        ledger = outcome.ledger
        emitted.extend(outcome.emitted)
    return ledger, emitted


def test_ready_invoice_is_sent_to_rpa_and_holds_the_po(judge):
    ledger, emitted = run(PurchaseOrderLedger(po_number="PO-1"),
                          lambda ledger: submit_invoice(ledger, submission("A"), judge, "automatic"))
    assert statuses(emitted) == [("A", "ready_to_process"), ("A", "rpa_request"), ("A", "sent_to_rpa")]
    assert ledger.holding == ["A@v1"]


def test_second_invoice_is_parked_then_decided_after_success(judge):
    ledger, emitted = run(
        PurchaseOrderLedger(po_number="PO-1"),
        lambda ledger: submit_invoice(ledger, submission("A"), judge, "automatic"),
        lambda ledger: submit_invoice(ledger, submission("B"), judge, "automatic"),
    )
    assert statuses(emitted)[-1] == ("B", "waiting_for_po")
    assert ledger.parked == ["B@v1"]
    ledger, emitted = run(ledger, lambda ledger: complete_rpa(ledger, completion("A"), judge, "automatic"))
    assert statuses(emitted) == [("A", "entered"), ("B", "ready_to_process"), ("B", "rpa_request"),
                                 ("B", "sent_to_rpa")]
    assert ledger.holding == ["B@v1"] and ledger.parked == []


def test_failure_completion_also_frees_the_po(judge):
    ledger, _ = run(
        PurchaseOrderLedger(po_number="PO-1"),
        lambda ledger: submit_invoice(ledger, submission("A"), judge, "automatic"),
        lambda ledger: submit_invoice(ledger, submission("B", expect="manual_review"), judge, "automatic"),
    )
    ledger, emitted = run(ledger, lambda ledger: complete_rpa(ledger, completion("A", ok=False), judge, "automatic"))
    assert statuses(emitted) == [("A", "rpa_failed"), ("B", "manual_review")]
    assert ledger.holding == [] and ledger.parked == []


def test_parked_invoices_are_decided_in_arrival_order_until_one_holds(judge):
    ledger, _ = run(
        PurchaseOrderLedger(po_number="PO-1"),
        lambda ledger: submit_invoice(ledger, submission("A"), judge, "automatic"),
        lambda ledger: submit_invoice(ledger, submission("B", expect="bad_invoice"), judge, "automatic"),
        lambda ledger: submit_invoice(ledger, submission("C"), judge, "automatic"),
        lambda ledger: submit_invoice(ledger, submission("D"), judge, "automatic"),
    )
    ledger, emitted = run(ledger, lambda ledger: complete_rpa(ledger, completion("A"), judge, "automatic"))
    assert [s for s in statuses(emitted) if s[1] != "rpa_request"] == [
        ("A", "entered"), ("B", "bad_invoice"), ("C", "ready_to_process"), ("C", "sent_to_rpa")]
    assert ledger.parked == ["D@v1"]


def test_a_repeated_completion_changes_nothing(judge):
    ledger, _ = run(
        PurchaseOrderLedger(po_number="PO-1"),
        lambda ledger: submit_invoice(ledger, submission("A"), judge, "automatic"),
        lambda ledger: complete_rpa(ledger, completion("A"), judge, "automatic"),
    )
    again = complete_rpa(ledger, completion("A"), judge, "automatic")
    assert again.emitted == [] and again.ledger == ledger


@pytest.mark.parametrize("invoice_id, version, why", [
    ("B", 1, "names 'B' version 1, which PO 'PO-1' never held (nor any version of it)"),
    ("A", 2, "names 'A' version 2, which PO 'PO-1' never held (the newest version it has seen is 1)"),
])
def test_a_completion_for_an_invoice_version_its_po_never_held_is_refused_naming_it(judge, invoice_id, version, why):
    ledger, _ = run(PurchaseOrderLedger(po_number="PO-1"),
                    lambda ledger: submit_invoice(ledger, submission("A"), judge, "automatic"))
    with pytest.raises(DataError) as refused:
        complete_rpa(ledger, completion(invoice_id, version), judge, "automatic")
    assert why in str(refused.value)


def test_an_entry_reported_again_under_another_event_id_changes_nothing(judge):
    ledger, _ = run(PurchaseOrderLedger(po_number="PO-1"),
                    lambda ledger: submit_invoice(ledger, submission("A"), judge, "automatic"),
                    lambda ledger: complete_rpa(ledger, completion("A"), judge, "automatic"))
    again = complete_rpa(ledger, completion("A", event_id="c-A-resent"), judge, "automatic")
    assert again.emitted == [] and again.ledger == ledger
    alike = completion("A", event_id="c-A-alike").model_copy(update={"entered_as": "S-1"})  # the API found S-1 twice
    assert complete_rpa(ledger, alike, judge, "automatic").emitted == []


def test_a_second_entry_the_api_found_under_another_sampro_invoice_is_noted_for_ap_naming_both(judge):
    """Sampro holds two entries of one invoice version (the bot reported S-9 where S-1 was
    recorded): AP must reverse one, or pay the invoice twice."""
    ledger, _ = run(PurchaseOrderLedger(po_number="PO-1"),
                    lambda ledger: submit_invoice(ledger, submission("A"), judge, "automatic"),
                    lambda ledger: complete_rpa(ledger, completion("A"), judge, "automatic"))
    second = completion("A", event_id="c-A-second").model_copy(update={"sampro_invoice_id": "S-9",
                                                                       "entered_as": "S-1"})
    again = complete_rpa(ledger, second, judge, "automatic")
    (noted,) = again.emitted
    assert isinstance(noted, StatusChanged) and noted.status is InvoiceStatus.ENTERED
    assert "S-9" in noted.reason and "S-1" in noted.reason and noted.invoice_version == 1
    assert again.ledger.holding == [] and complete_rpa(again.ledger, second, judge, "automatic").emitted == []


def test_the_first_entry_delivered_again_after_a_second_version_was_entered_changes_nothing(judge):
    """AP released the vendor's edit of an entered invoice (a second delivery): both are in Sampro."""
    second = ReleaseRequested(command_id="r1", invoice_id="A", invoice_version=2, po_number="PO-1", user="ana",
                              reason="a second delivery", issued_at=AT, holds=[], reason_code="PRICE_AGREED")
    ledger, _ = run(PurchaseOrderLedger(po_number="PO-1"),
                    lambda ledger: submit_invoice(ledger, submission("A"), judge, "automatic"),
                    lambda ledger: complete_rpa(ledger, completion("A"), judge, "automatic"),
                    lambda ledger: submit_invoice(ledger, submission("A", version=2), judge, "automatic"),
                    lambda ledger: release_invoice(ledger, second, judge, "automatic"),
                    lambda ledger: complete_rpa(ledger, completion("A", version=2), judge, "automatic"))
    assert ledger.entered == {"A": 2}
    again = complete_rpa(ledger, completion("A"), judge, "automatic")
    assert again.emitted == [] and again.ledger == ledger


def test_an_entry_of_a_version_held_for_ap_is_refused_naming_it_and_a_failure_changes_nothing(judge):
    """Never sent to the bot: an entry of it is not the bot's to report."""
    ledger, _ = run(PurchaseOrderLedger(po_number="PO-1"),
                    lambda ledger: submit_invoice(ledger, submission("A", expect="manual_review"), judge, "automatic"))
    with pytest.raises(DataError) as refused:
        complete_rpa(ledger, completion("A", event_id="c-late"), judge, "automatic")
    assert ("says the bot entered 'A' version 1 in Sampro, which was not at the bot for PO 'PO-1' (it is "
            "manual_review): look in Sampro for an entry to reverse") in str(refused.value)
    failed = complete_rpa(ledger, completion("A", ok=False, event_id="c-late-failure"), judge, "automatic")
    assert failed.emitted == [] and failed.ledger == ledger


def test_an_entry_reported_after_the_failure_of_a_version_since_replaced_is_entered_and_the_newer_held(judge):
    """The bot failed version 1 (its screen timed out after the entry went through), the vendor's
    version 2 replaced it; the bot's late word that version 1 was entered was refused, and version 2
    was entered beside it: the invoice paid twice, and AP never heard of the first entry."""
    ledger, _ = run(PurchaseOrderLedger(po_number="PO-1"),  # approval: version 2 waits for a clerk
                    lambda ledger: submit_invoice(ledger, submission("A"), judge, "approval"),
                    lambda ledger: approve_dispatch(ledger, DispatchApproved(
                        command_id="d1", invoice_id="A", invoice_version=1, po_number="PO-1", user="ana",
                        issued_at=AT), judge, "approval"),
                    lambda ledger: complete_rpa(ledger, completion("A", ok=False), judge, "approval"),
                    lambda ledger: submit_invoice(ledger, submission("A", version=2), judge, "approval"),
                    lambda ledger: submit_invoice(ledger, submission("B"), judge, "approval"))
    assert (ledger.holding, ledger.parked) == (["A@v2"], ["B@v1"])
    late = complete_rpa(ledger, completion("A", event_id="c-late"), judge, "approval")
    entered, held, b_ready = late.emitted
    assert (entered.invoice_version, entered.status, entered.sampro_invoice_id) == (1, InvoiceStatus.ENTERED, "S-1")
    assert entered.reason == ("The RPA bot reported this entry after it had reported a failure, and version 2 had "
                              "replaced it: that one is not to be entered too.")
    assert (held.invoice_version, held.status, held.reason) == (
        2, InvoiceStatus.MANUAL_REVIEW, "Version 1 of this invoice was already entered in Sampro.")
    assert (b_ready.invoice_id, b_ready.status.value) == ("B", "ready_to_process")  # the PO goes on
    assert late.ledger.entered == {"A": 1} and late.ledger.holding == ["B@v1"]
    assert complete_rpa(late.ledger, completion("A", event_id="c-late"), judge, "approval").emitted == []


def test_an_entry_reported_late_of_a_version_replaced_at_the_bot_notes_it_and_its_entry_says_both_are_in(judge):
    ledger, _ = run(PurchaseOrderLedger(po_number="PO-1"),
                    lambda ledger: submit_invoice(ledger, submission("A"), judge, "automatic"),
                    lambda ledger: complete_rpa(ledger, completion("A", ok=False), judge, "automatic"),
                    lambda ledger: submit_invoice(ledger, submission("A", version=2), judge, "automatic"))
    late = complete_rpa(ledger, completion("A", event_id="c-late"), judge, "automatic")
    assert [(m.invoice_version, m.status.value) for m in late.emitted] == [(1, "entered"), (2, "sent_to_rpa")]
    assert late.emitted[1].reason == ("Version 1 of this invoice was entered in Sampro as Sampro invoice S-1 after "
                                      "the RPA bot had reported it failed: if the bot enters this one too, reverse "
                                      "one of the two in Sampro.")
    second = complete_rpa(late.ledger, completion("A", version=2), judge, "automatic")
    assert [(m.invoice_version, m.status.value, m.reason) for m in second.emitted] == [
        (2, "entered", "Version 1 of this invoice is in Sampro too (reported entered after a failure): reverse one "
                       "of the two in Sampro.")]


def test_an_entry_reported_late_of_a_version_whose_newer_one_the_vendor_withdrew_at_the_bot_asks_for_a_credit_note(
        judge):
    """Version 1 failed at the bot, version 2 replaced it and went to the bot, and the vendor deleted
    the invoice while the bot had it: the bot's late word that it had entered version 1 said only
    that version 2 "is not to be entered too", and nothing asked the vendor for a credit note of an
    invoice it had taken back."""
    ledger, _ = run(PurchaseOrderLedger(po_number="PO-1"),
                    lambda ledger: submit_invoice(ledger, submission("A"), judge, "automatic"),
                    lambda ledger: complete_rpa(ledger, completion("A", ok=False), judge, "automatic"),
                    lambda ledger: submit_invoice(ledger, submission("A", version=2), judge, "automatic"),
                    lambda ledger: withdraw_invoice(ledger, InvoiceWithdrawn(
                        invoice_id="A", version=2, po_number="PO-1", withdrawn_at=AT), judge, "automatic"))
    late = complete_rpa(ledger, completion("A", event_id="c-late"), judge, "automatic")
    entered, noted = late.emitted
    assert (entered.invoice_version, entered.status.value, entered.reason) == (1, "entered", (
        "The RPA bot reported this entry after it had reported a failure, and version 2 had replaced it, which the "
        "vendor withdrew while the RPA bot had it: ask the vendor for a credit note."))
    assert (noted.invoice_version, noted.status.value) == (2, "sent_to_rpa")
    assert "if the bot enters this one too, reverse one of the two in Sampro" in noted.reason


def test_an_entry_reported_late_with_a_version_between_on_another_po_says_to_reverse_one_if_both_are_entered(judge):
    """Version 1 failed on PO-1, version 2 on PO-2 went to the bot, version 3 came back to PO-1; the
    bot's late word that it had entered version 1 named only version 3 ("not to be entered too"),
    and the bot's entry of version 2 on PO-2 said nothing: two versions in Sampro, no note to
    reverse one."""
    ledger, _ = run(PurchaseOrderLedger(po_number="PO-1"),
                    lambda ledger: submit_invoice(ledger, submission("A"), judge, "automatic"),
                    lambda ledger: complete_rpa(ledger, completion("A", ok=False), judge, "automatic"),
                    lambda ledger: replace_invoice(ledger, replaced("A"), judge, "automatic"),
                    lambda ledger: submit_invoice(ledger, submission("A", version=3, expect="manual_review"), judge,
                                                  "automatic"))
    entered, _held = complete_rpa(ledger, completion("A", event_id="c-late"), judge, "automatic").emitted
    assert (entered.invoice_version, entered.reason) == (1, (
        "The RPA bot reported this entry after it had reported a failure, and version 3 had replaced it: that one "
        "is not to be entered too; if another version of this invoice is entered too, reverse one of the two in "
        "Sampro."))


def test_an_entry_of_a_version_another_po_replaced_while_the_bot_had_it_says_to_reverse_one_if_another_is_entered(
        judge):
    """Version 2 at the bot on PO-1, the vendor's version 3 on PO-2 replaced it: its entry said
    nothing, where version 1 (on a PO of its own, failed, then entered after all) may be in Sampro too."""
    ledger, _ = run(PurchaseOrderLedger(po_number="PO-1"),
                    lambda ledger: submit_invoice(ledger, submission("A", version=2), judge, "automatic"),
                    lambda ledger: replace_invoice(ledger, replaced("A", version=3), judge, "automatic"))
    (entered,) = complete_rpa(ledger, completion("A", version=2), judge, "automatic").emitted
    assert (entered.invoice_version, entered.status.value, entered.reason) == (2, "entered", (
        "Version 3 of this invoice, on another PO, replaced it while the RPA bot had it: if another version of this "
        "invoice is entered too, reverse one of the two in Sampro."))


@pytest.mark.parametrize(("given_up", "reason"), [
    (lambda ledger, judge: withdraw_invoice(ledger, InvoiceWithdrawn(
        invoice_id="A", version=1, po_number="PO-1", withdrawn_at=AT), judge, "automatic"),
     "and the vendor had withdrawn it: ask the vendor for a credit note."),
    # This PO keeps no record of a newer version on another PO (or withdrawn since): said either way.
    (lambda ledger, judge: replace_invoice(ledger, replaced("A"), judge, "automatic"),
     "and version 2 had replaced it, which the vendor withdrew since or which names another PO: if withdrawn, ask "
     "the vendor for a credit note; if entered too, reverse one of the two in Sampro."),
], ids=["withdrawn", "replaced-on-another-po"])
def test_an_entry_reported_late_of_a_version_given_up_at_the_bot_says_what_ap_is_to_do(judge, given_up, reason):
    ledger, _ = run(PurchaseOrderLedger(po_number="PO-1"),
                    lambda ledger: submit_invoice(ledger, submission("A"), judge, "automatic"),
                    lambda ledger: given_up(ledger, judge),
                    lambda ledger: complete_rpa(ledger, completion("A", ok=False), judge, "automatic"))
    late = complete_rpa(ledger, completion("A", event_id="c-late"), judge, "automatic")
    assert [(m.status.value, m.reason) for m in late.emitted] == [
        ("entered", f"The RPA bot reported this entry after it had reported a failure, {reason}")]
    assert late.ledger.entered == {"A": 1}


def test_an_entry_reported_late_of_a_version_given_up_beside_the_one_entered_is_a_second_entry(judge):
    """Version 1 itself is recorded entered, with its Sampro invoice, as it is when the two reports
    come the other way round: it stayed superseded, its Sampro invoice known to nothing but a note
    in version 2's history."""
    ledger, _ = run(PurchaseOrderLedger(po_number="PO-1"),
                    lambda ledger: submit_invoice(ledger, submission("A"), judge, "automatic"),
                    lambda ledger: complete_rpa(ledger, completion("A", ok=False), judge, "automatic"),
                    lambda ledger: submit_invoice(ledger, submission("A", version=2), judge, "automatic"),
                    lambda ledger: complete_rpa(ledger, completion("A", version=2), judge, "automatic"))
    late = complete_rpa(ledger, completion("A", event_id="c-late"), judge, "automatic")
    entered, note = late.emitted
    assert (entered.invoice_version, entered.status.value, entered.sampro_invoice_id) == (1, "entered", "S-1")
    assert entered.reason == ("The RPA bot reported this entry after it had reported a failure, and version 2 of "
                              "this invoice is in Sampro too: reverse one of the two in Sampro.")
    assert (note.invoice_version, note.status.value) == (2, "entered")
    assert note.reason == ("The RPA bot reported entering version 1 of this invoice too as Sampro invoice S-1, after "
                           "it had reported it failed: reverse one of the two in Sampro.")
    assert late.ledger.entered == {"A": 2}  # as after the other order: the later entry recorded last
    assert complete_rpa(late.ledger, completion("A", event_id="c-late"), judge, "automatic").emitted == []


def test_an_entry_reported_after_a_failure_is_entered_so_that_ap_cannot_have_it_entered_twice(judge):
    """A screen that timed out after the entry went through: the bot reported a failure, then the entry."""
    ledger, _ = run(PurchaseOrderLedger(po_number="PO-1"),
                    lambda ledger: submit_invoice(ledger, submission("A"), judge, "automatic"),
                    lambda ledger: complete_rpa(ledger, completion("A", ok=False), judge, "automatic"),
                    lambda ledger: submit_invoice(ledger, submission("B"), judge, "automatic"))
    assert ledger.holding == ["B@v1"]
    late = complete_rpa(ledger, completion("A", event_id="c-late"), judge, "automatic")
    (entered,) = late.emitted
    assert (entered.invoice_id, entered.status, entered.sampro_invoice_id) == ("A", InvoiceStatus.ENTERED, "S-1")
    assert entered.reason == "The RPA bot reported this entry after it had reported a failure."
    assert late.ledger.entered == {"A": 1} and "A@v1" not in late.ledger.records
    assert late.ledger.holding == ["B@v1"]  # B stays at the bot
    assert complete_rpa(late.ledger, completion("A", event_id="c-late"), judge, "automatic").emitted == []
    retry = ReleaseRequested(command_id="r1", invoice_id="A", invoice_version=1, po_number="PO-1", user="ana",
                             reason="retry", issued_at=AT, holds=[], reason_code=None)
    (note,) = release_invoice(late.ledger, retry, judge, "automatic").emitted  # nothing left to send again
    assert (note.status, note.sampro_invoice_id, note.actor) == (InvoiceStatus.ENTERED, None, "ana")
    assert note.reason == "Not released: ana released version 1 (retry): it is entered in Sampro."


def test_an_entry_reported_after_ap_released_the_failure_takes_it_off_the_po_before_it_is_sent_again(judge):
    """Released to be sent again, it waits: behind B at the bot (automatic), or for AP's approval,
    holding the PO, with C behind it (approval). Entered after all, it is not sent again."""
    retry = ReleaseRequested(command_id="r1", invoice_id="A", invoice_version=1, po_number="PO-1", user="ana",
                             reason="retry", issued_at=AT, holds=[], reason_code=None)
    automatic, _ = run(PurchaseOrderLedger(po_number="PO-1"),
                       lambda ledger: submit_invoice(ledger, submission("A"), judge, "automatic"),
                       lambda ledger: complete_rpa(ledger, completion("A", ok=False), judge, "automatic"),
                       lambda ledger: submit_invoice(ledger, submission("B"), judge, "automatic"),
                       lambda ledger: release_invoice(ledger, retry, judge, "automatic"))
    assert (automatic.holding, automatic.parked) == (["B@v1"], ["A@v1"])
    late = complete_rpa(automatic, completion("A", event_id="c-late"), judge, "automatic")
    assert statuses(late.emitted) == [("A", "entered")] and (late.ledger.holding, late.ledger.parked) == (["B@v1"], [])
    after_b = complete_rpa(late.ledger, completion("B"), judge, "automatic")
    assert statuses(after_b.emitted) == [("B", "entered")]  # A is not sent again

    sent = DispatchApproved(command_id="d1", invoice_id="A", invoice_version=1, po_number="PO-1", user="ana",
                            issued_at=AT)
    approval, _ = run(PurchaseOrderLedger(po_number="PO-1"),
                      lambda ledger: submit_invoice(ledger, submission("A"), judge, "approval"),
                      lambda ledger: approve_dispatch(ledger, sent),
                      lambda ledger: complete_rpa(ledger, completion("A", ok=False), judge, "approval"),
                      lambda ledger: release_invoice(ledger, retry, judge, "approval"),
                      lambda ledger: submit_invoice(ledger, submission("C"), judge, "approval"))
    assert (approval.holding, approval.parked) == (["A@v1"], ["C@v1"])
    late = complete_rpa(approval, completion("A", event_id="c-late"), judge, "approval")
    assert statuses(late.emitted) == [("A", "entered"), ("C", "ready_to_process")]
    assert (late.ledger.holding, late.ledger.parked) == (["C@v1"], [])


def test_a_replayed_submission_re_emits_the_same_verdict_and_changes_no_state(judge):
    ledger, first = run(PurchaseOrderLedger(po_number="PO-1"),
                        lambda ledger: submit_invoice(ledger, submission("A"), judge, "automatic"))
    again = submit_invoice(ledger, submission("A"), judge, "automatic")
    assert again.ledger == ledger
    assert [m for m in again.emitted if isinstance(m, Verdict)] == [m for m in first if isinstance(m, Verdict)]
    assert len(judge.seen_in_flight) == 1  # not judged twice


def test_vendor_edit_supersedes_an_undecided_version(judge):
    ledger, emitted = run(
        PurchaseOrderLedger(po_number="PO-1"),
        lambda ledger: submit_invoice(ledger, submission("A", expect="manual_review"), judge, "automatic"),
        lambda ledger: submit_invoice(ledger, submission("A", version=2), judge, "automatic"),
    )
    assert statuses(emitted) == [("A", "manual_review"), ("A", "superseded"), ("A", "ready_to_process"),
                                 ("A", "rpa_request"), ("A", "sent_to_rpa")]
    assert submit_invoice(ledger, submission("A", version=1), judge, "automatic").emitted == []


def test_vendor_edit_of_an_invoice_at_the_bot_waits_and_is_never_entered_twice(judge):
    ledger, emitted = run(
        PurchaseOrderLedger(po_number="PO-1"),
        lambda ledger: submit_invoice(ledger, submission("A"), judge, "automatic"),
        lambda ledger: submit_invoice(ledger, submission("A", version=2), judge, "automatic"),
        lambda ledger: complete_rpa(ledger, completion("A", version=1), judge, "automatic"),
    )
    assert statuses(emitted)[-2:] == [("A", "entered"), ("A", "manual_review")]
    assert ledger.holding == [] and ledger.parked == []


def test_a_version_the_bot_fails_to_enter_is_superseded_by_the_edit_waiting_behind_it(judge):
    ledger, emitted = run(
        PurchaseOrderLedger(po_number="PO-1"),
        lambda ledger: submit_invoice(ledger, submission("A"), judge, "automatic"),
        lambda ledger: submit_invoice(ledger, submission("A", version=2), judge, "automatic"),
        lambda ledger: complete_rpa(ledger, completion("A", version=1, ok=False), judge, "automatic"),
    )
    # Not rpa_failed: released by AP after the edit went, it would be entered too.
    assert [(m.invoice_version, s) for m, (_, s) in zip(emitted[-4:], statuses(emitted)[-4:], strict=True)] == [
        (1, "superseded"), (2, "ready_to_process"), (2, "rpa_request"), (2, "sent_to_rpa")]
    assert "version 2 replaces it" in emitted[-4].reason and "A@v1" not in ledger.records
    # The hand-off says so: the gate gives it version 1's number before processscheduler shows v1 superseded.
    assert [(m.invoice_version, m.replaces) for m in emitted if isinstance(m, RpaRequest)] == [(1, None), (2, 1)]


def test_an_edit_after_the_bot_failed_the_first_version_replaces_it_at_the_hand_off(judge):
    ledger, emitted = run(
        PurchaseOrderLedger(po_number="PO-1"),
        lambda ledger: submit_invoice(ledger, submission("A"), judge, "automatic"),
        lambda ledger: complete_rpa(ledger, completion("A", version=1, ok=False), judge, "automatic"),
        lambda ledger: submit_invoice(ledger, submission("A", version=2), judge, "automatic"),
    )
    assert statuses(emitted)[-4:] == [("A", "superseded"), ("A", "ready_to_process"), ("A", "rpa_request"),
                                      ("A", "sent_to_rpa")]
    assert [(m.invoice_version, m.replaces) for m in emitted if isinstance(m, RpaRequest)] == [(1, None), (2, 1)]
    replayed = submit_invoice(ledger, submission("A", version=2), judge, "automatic")  # after a crash: the same
    assert [(m.invoice_version, m.replaces) for m in replayed.emitted if isinstance(m, RpaRequest)] == [(2, 1)]


def replaced(invoice_id: str, version: int = 2) -> InvoiceReplaced:
    return InvoiceReplaced(invoice_id=invoice_id, version=version, po_number="PO-1", replaced_on="PO-2",
                           replaced_at=AT)


def test_a_version_the_vendor_replaced_on_another_po_is_superseded_and_the_po_goes_on(judge):
    ledger, _ = run(  # A waits for a clerk's approval, holding the PO; B waits behind it
        PurchaseOrderLedger(po_number="PO-1"),
        lambda ledger: submit_invoice(ledger, submission("A"), judge, "approval"),
        lambda ledger: submit_invoice(ledger, submission("B"), judge, "approval"),
    )
    outcome = replace_invoice(ledger, replaced("A"), judge, "approval")
    ledger, (change, *after) = outcome.ledger, outcome.emitted
    assert (change.invoice_id, change.invoice_version, change.status.value) == ("A", 1, "superseded")
    assert change.reason == "Version 2 of this invoice names PO PO-2 and replaces this one."
    assert statuses(after) == [("B", "ready_to_process")] and ledger.holding == ["B@v1"]
    assert "A@v1" not in ledger.records and ledger.latest["A"] == 2
    assert replace_invoice(ledger, replaced("A"), judge, "automatic").emitted == []  # the same again
    assert submit_invoice(ledger, submission("A"), judge, "automatic").emitted == []  # v1 arriving late


def test_a_version_replaced_elsewhere_while_the_bot_has_it_is_superseded_only_if_the_bot_fails_it(judge):
    ledger, emitted = run(PurchaseOrderLedger(po_number="PO-1"),
                          lambda ledger: submit_invoice(ledger, submission("A"), judge, "automatic"),
                          lambda ledger: replace_invoice(ledger, replaced("A"), judge, "automatic"))
    assert statuses(emitted)[-1] == ("A", "sent_to_rpa") and "if the RPA bot fails it" in emitted[-1].reason
    assert ledger.holding == ["A@v1"]
    failed = complete_rpa(ledger, completion("A", ok=False), judge, "automatic")
    assert statuses(failed.emitted) == [("A", "superseded")] and "version 2 replaces it" in failed.emitted[0].reason
    entered = complete_rpa(ledger, completion("A"), judge, "automatic")
    assert statuses(entered.emitted) == [("A", "entered")]


def test_a_version_in_sampro_replaced_elsewhere_gets_a_note_and_nothing_newer_is_touched(judge):
    ledger, _ = run(PurchaseOrderLedger(po_number="PO-1"),
                    lambda ledger: submit_invoice(ledger, submission("A"), judge, "automatic"),
                    lambda ledger: complete_rpa(ledger, completion("A"), judge, "automatic"))
    (note,) = replace_invoice(ledger, replaced("A"), judge, "automatic").emitted
    assert (note.invoice_version, note.status.value) == (1, "entered")
    assert note.reason.endswith("this one is in Sampro, so that one is not handed to the RPA bot.")
    assert replace_invoice(ledger, replaced("B"), judge, "automatic").emitted == []  # never on this PO
    newer, _ = run(ledger, lambda ledger: submit_invoice(ledger, submission("C", version=3), judge, "automatic"))
    assert replace_invoice(newer, replaced("C", version=2), judge, "automatic").emitted == []


def test_a_vendor_edit_of_an_entered_invoice_is_judged_but_held_for_ap_not_entered_twice(judge):
    ledger, emitted = run(
        PurchaseOrderLedger(po_number="PO-1"),
        lambda ledger: submit_invoice(ledger, submission("A"), judge, "automatic"),
        lambda ledger: complete_rpa(ledger, completion("A", version=1), judge, "automatic"),
        lambda ledger: submit_invoice(ledger, submission("A", version=2), judge, "automatic"),
    )
    assert statuses(emitted)[-3:] == [("A", "entered"), ("A", "ready_to_process"), ("A", "manual_review")]
    assert emitted[-1].reason == "Version 1 of this invoice was already entered in Sampro."
    assert ledger.holding == [] and ledger.entered == {"A": 1}
    # A release hands it on; the hand-off gate then refuses it while version 1 is in Sampro (tests/contracts).
    release = ReleaseRequested(command_id="r1", invoice_id="A", invoice_version=2, po_number="PO-1",
                               user="ana", reason="v1 voided in Sampro", issued_at=AT)
    assert ("A", "rpa_request") in statuses(release_invoice(ledger, release, judge, "automatic").emitted)


def test_an_edit_of_an_entered_invoice_parked_behind_another_is_held_when_its_turn_comes(judge):
    ledger, _ = run(PurchaseOrderLedger(po_number="PO-1"),
                    lambda ledger: submit_invoice(ledger, submission("A"), judge, "automatic"),
                    lambda ledger: complete_rpa(ledger, completion("A"), judge, "automatic"),
                    lambda ledger: submit_invoice(ledger, submission("B"), judge, "automatic"),
                    lambda ledger: submit_invoice(ledger, submission("A", version=2), judge, "automatic"))
    assert ledger.parked == ["A@v2"]
    ledger.entered.clear()  # B's completion names B only: the store reads no `entered` of A for it
    ledger, emitted = run(ledger, lambda ledger: complete_rpa(ledger, completion("B"), judge, "automatic"))
    assert statuses(emitted)[-2:] == [("A", "ready_to_process"), ("A", "manual_review")]
    assert ("A", "rpa_request") not in statuses(emitted)


def test_an_edit_of_an_entered_invoice_with_findings_of_its_own_says_why_too_and_again_under_new_rules(judge):
    ledger, emitted = run(PurchaseOrderLedger(po_number="PO-1"),
                          lambda ledger: submit_invoice(ledger, submission("A"), judge, "automatic"),
                          lambda ledger: complete_rpa(ledger, completion("A"), judge, "automatic"),
                          lambda ledger: submit_invoice(ledger, submission("A", 2, expect="manual_review"), judge,
                                                        "automatic"))
    noted = emitted[-1]
    assert statuses(emitted)[-2:] == [("A", "manual_review"), ("A", "manual_review")]
    assert noted.reason == "Version 1 of this invoice was already entered in Sampro."
    # Reprocessed under other rules: judged and held again, as new events processscheduler records.
    again = submission("A", 2, expect="manual_review")
    later = submit_invoice(ledger, again, FakeJudge(rules_version="next"), "automatic").emitted
    assert statuses(later) == [("A", "manual_review"), ("A", "manual_review")]  # verdict, then the note
    assert later[-1].event_id != noted.event_id and later[-1].reason == noted.reason


def test_a_version_an_older_release_stored_with_a_number_as_text_arriving_again_is_a_replay(judge):
    """That release kept a number of a vendor's own field as text ('2.5'), where the topic now
    carries Decimal('2.5'): the redelivery was dead-lettered as an edit of the version."""
    stored = InvoiceSubmitted(invoice_id="A", version=1, po_number="PO-1", received_at=AT,
                              document={"expect": "manual_review", "discount_pct": "2.5"})
    ledger, _ = run(PurchaseOrderLedger(po_number="PO-1"), lambda ledger: submit_invoice(ledger, stored, judge,
                                                                                           "automatic"))
    again = stored.model_copy(update={"document": {"expect": "manual_review", "discount_pct": Decimal("2.5")}})
    assert statuses(submit_invoice(ledger, again, judge, "automatic").emitted) == [("A", "manual_review")]
    edited = stored.model_copy(update={"document": {"expect": "manual_review", "discount_pct": "3"}})
    with pytest.raises(RefusedEdit, match="Version 1 of invoice 'A' arrived again with other content") as refused:
        submit_invoice(ledger, edited, judge, "automatic")
    assert (refused.value.note.status.value, refused.value.note.invoice_version) == ("manual_review", 1)


def test_a_withdrawal_of_an_entered_invoice_tells_ap_to_ask_for_a_credit_note(judge):
    withdrawal = InvoiceWithdrawn(invoice_id="A", version=1, po_number="PO-1", withdrawn_at=AT)
    ledger, _ = run(PurchaseOrderLedger(po_number="PO-1"),
                    lambda ledger: submit_invoice(ledger, submission("A"), judge, "automatic"),
                    lambda ledger: complete_rpa(ledger, completion("A", version=1), judge, "automatic"))
    outcome = withdraw_invoice(ledger, withdrawal, judge, "automatic")
    [noted] = outcome.emitted
    assert isinstance(noted, StatusChanged) and noted.status is InvoiceStatus.ENTERED  # it stays entered
    assert "credit note" in noted.reason and noted.invoice_version == 1
    assert outcome.ledger == ledger
    # A withdrawn invoice withdrawn again, or one never seen, is nothing to tell.
    gone, _ = run(PurchaseOrderLedger(po_number="PO-1"),
                  lambda ledger: submit_invoice(ledger, submission("B", expect="manual_review"), judge, "automatic"),
                  lambda ledger: withdraw_invoice(ledger, withdrawal.model_copy(update={"invoice_id": "B"}), judge,
                                                  "automatic"))
    assert withdraw_invoice(gone, withdrawal.model_copy(update={"invoice_id": "B"}), judge, "automatic").emitted == []
    assert withdraw_invoice(gone, withdrawal.model_copy(update={"invoice_id": "Z"}), judge, "automatic").emitted == []
    # The vendor's later version, held, is withdrawn, and the entered one still needs its credit note.
    edited, _ = run(ledger, lambda ledger: submit_invoice(ledger, submission("A", version=2), judge, "automatic"))
    emitted = withdraw_invoice(edited, withdrawal.model_copy(update={"version": 2}), judge, "automatic").emitted
    assert [(m.invoice_version, m.status.value) for m in emitted] == [(1, "entered"), (2, "withdrawn")]
    assert emitted[0].event_id == noted.event_id  # the same note: processscheduler keeps it once


def test_withdrawal_frees_a_parked_slot_and_is_final(judge):
    ledger, emitted = run(
        PurchaseOrderLedger(po_number="PO-1"),
        lambda ledger: submit_invoice(ledger, submission("A"), judge, "automatic"),
        lambda ledger: submit_invoice(ledger, submission("B"), judge, "automatic"),
        lambda ledger: withdraw_invoice(
            ledger, InvoiceWithdrawn(invoice_id="B", version=1, po_number="PO-1", withdrawn_at=AT), judge, "automatic"),
    )
    assert statuses(emitted)[-1] == ("B", "withdrawn")
    assert ledger.parked == []


def test_an_older_versions_withdrawal_delivered_again_leaves_the_newer_version_standing(judge):
    """The vendor deleted v1 and sent v2 (a new row); CDC delivers v1's deletion once more."""
    def withdrawn(version: int):
        return lambda ledger: withdraw_invoice(
            ledger, InvoiceWithdrawn(invoice_id="B", version=version, po_number="PO-1", withdrawn_at=AT),
            judge, "automatic")

    ledger, emitted = run(
        PurchaseOrderLedger(po_number="PO-1"),
        lambda ledger: submit_invoice(ledger, submission("A"), judge, "automatic"),
        lambda ledger: submit_invoice(ledger, submission("B"), judge, "automatic"),
        withdrawn(1),
        lambda ledger: submit_invoice(ledger, submission("B", version=2), judge, "automatic"),
        withdrawn(1),
    )
    assert statuses(emitted)[-2:] == [("B", "withdrawn"), ("B", "waiting_for_po")]
    assert ledger.parked == ["B@v2"]
    ledger, emitted = run(ledger, withdrawn(2))
    assert statuses(emitted) == [("B", "withdrawn")] and ledger.parked == []


def test_a_completion_with_an_id_as_long_as_its_record_allows_is_applied_under_a_digest(judge):
    """Its id is the cause of the status change, whose own id holds 200 characters too."""
    long_id = "rpa-bot-2:" + "e" * 190
    ledger, emitted = run(
        PurchaseOrderLedger(po_number="PO-1"),
        lambda ledger: submit_invoice(ledger, submission("A"), judge, "automatic"),
        lambda ledger: submit_invoice(ledger, submission("B"), judge, "automatic"),
        lambda ledger: complete_rpa(ledger, completion("A", event_id=long_id), judge, "automatic"),
    )
    entered = next(m for m in emitted if isinstance(m, StatusChanged) and m.status is InvoiceStatus.ENTERED)
    assert entered.event_id == f"A:v1:entered:{change_digest(long_id)}"
    assert statuses(emitted)[-2:] == [("B", "rpa_request"), ("B", "sent_to_rpa")]  # the PO goes on
    short = run(PurchaseOrderLedger(po_number="PO-1"),
                lambda ledger: submit_invoice(ledger, submission("A"), judge, "automatic"),
                lambda ledger: complete_rpa(ledger, completion("A", event_id="c-1"), judge, "automatic"))[1]
    assert "A:v1:entered:c-1" in [m.event_id for m in short if isinstance(m, StatusChanged)]  # ids kept as they were


@pytest.mark.parametrize(("ok", "final"), [(True, "entered"), (False, "withdrawn")])
def test_a_withdrawal_while_the_rpa_bot_has_the_invoice_is_noted_and_its_report_decides(judge, ok, final):
    withdrawal = InvoiceWithdrawn(invoice_id="A", version=1, po_number="PO-1", withdrawn_at=AT)
    ledger, emitted = run(PurchaseOrderLedger(po_number="PO-1"),
                          lambda ledger: submit_invoice(ledger, submission("A"), judge, "automatic"),
                          lambda ledger: submit_invoice(ledger, submission("B"), judge, "automatic"),
                          lambda ledger: withdraw_invoice(ledger, withdrawal, judge, "automatic"))
    noted = emitted[-1]
    assert isinstance(noted, StatusChanged) and noted.status is InvoiceStatus.SENT_TO_RPA
    assert "withdrew" in noted.reason and ledger.holding == ["A@v1"]  # the bot has it still
    assert withdraw_invoice(ledger, withdrawal, judge, "automatic").emitted == []  # noted once
    ledger, emitted = run(ledger, lambda ledger: complete_rpa(ledger, completion("A", ok=ok), judge, "automatic"))
    assert statuses(emitted)[:2] == [("A", final), ("B", "ready_to_process")]
    assert "vendor" in emitted[0].reason and "A@v1" not in ledger.records


@pytest.mark.parametrize(("ok", "final", "said"), [(True, "entered", "credit note"), (False, "withdrawn", "withdrawn")])
def test_a_withdrawal_naming_the_edit_parked_behind_the_version_at_the_bot_reaches_that_version(judge, ok, final, said):
    """The deletion names the newest version, the edit parked behind the bot's: the version at the
    bot went unmarked, entered with no word of a credit note, or failed "replaced" by the edit."""
    ledger, emitted = run(PurchaseOrderLedger(po_number="PO-1"),
                          lambda ledger: submit_invoice(ledger, submission("A"), judge, "automatic"),
                          lambda ledger: submit_invoice(ledger, submission("A", version=2), judge, "automatic"),
                          lambda ledger: withdraw_invoice(ledger, InvoiceWithdrawn(
                              invoice_id="A", version=2, po_number="PO-1", withdrawn_at=AT), judge, "automatic"))
    told = [(m.invoice_version, m.status.value) for m in emitted if isinstance(m, StatusChanged)]
    assert told[-2:] == [(1, "sent_to_rpa"), (2, "withdrawn")] and "withdrew" in emitted[-2].reason
    ledger, emitted = run(ledger, lambda ledger: complete_rpa(ledger, completion("A", ok=ok), judge, "automatic"))
    assert statuses(emitted) == [("A", final)] and said in emitted[0].reason and ledger.holding == []


def test_a_replacement_naming_the_edit_parked_behind_the_version_at_the_bot_is_noted_on_that_version(judge):
    ledger, emitted = run(PurchaseOrderLedger(po_number="PO-1"),
                          lambda ledger: submit_invoice(ledger, submission("A"), judge, "automatic"),
                          lambda ledger: submit_invoice(ledger, submission("A", version=2), judge, "automatic"),
                          lambda ledger: replace_invoice(ledger, replaced("A", version=3), judge, "automatic"))
    told = [(m.invoice_version, m.status.value) for m in emitted if isinstance(m, StatusChanged)]
    assert told[-2:] == [(1, "sent_to_rpa"), (2, "superseded")] and "PO-2" in emitted[-2].reason
    ledger, emitted = run(ledger, lambda ledger: complete_rpa(ledger, completion("A", ok=False), judge, "automatic"))
    assert statuses(emitted) == [("A", "superseded")] and "version 3 replaces it" in emitted[0].reason


def test_release_makes_a_manual_review_invoice_go_to_rpa_with_who_and_why(judge):
    ledger, _ = run(PurchaseOrderLedger(po_number="PO-1"),
                    lambda ledger: submit_invoice(ledger, submission("A", expect="manual_review"), judge, "automatic"))
    cmd = ReleaseRequested(command_id="r1", invoice_id="A", invoice_version=1, po_number="PO-1",
                           user="ana", reason="price agreed by phone", issued_at=AT)
    outcome = release_invoice(ledger, cmd, judge, "automatic")
    released = [m for m in outcome.emitted if isinstance(m, StatusChanged) and m.status is InvoiceStatus.RELEASED]
    assert released and released[0].actor == "ana" and released[0].reason == "price agreed by phone"
    assert statuses(outcome.emitted)[-1] == ("A", "sent_to_rpa")
    assert outcome.emitted[-1].rpa_payload == payload("A", 1)  # what the bot got, for processscheduler
    assert release_invoice(outcome.ledger, cmd, judge, "automatic").emitted == []


def test_a_release_of_an_invoice_the_bot_could_not_key_says_so_in_its_history(judge):
    """Held under older rules, an invoice these rules cannot read (or one with a line on no PO line)
    has no payload: the release was dropped without a word, and the clerk took it for released."""
    ledger, _ = run(PurchaseOrderLedger(po_number="PO-1"),
                    lambda ledger: submit_invoice(ledger, submission("A", expect="manual_review"), judge, "automatic"))
    cmd = ReleaseRequested(command_id="r1", invoice_id="A", invoice_version=1, po_number="PO-1",
                           user="ana", reason="price agreed by phone", issued_at=AT)

    class Unkeyable(FakeJudge):
        def payload_for(self, submission):
            return None

    (said,) = release_invoice(ledger, cmd, Unkeyable(), "automatic").emitted
    assert (said.status, said.actor) == (InvoiceStatus.MANUAL_REVIEW, "ana")
    assert said.reason.startswith("Not released (price agreed by phone): the RPA bot could not be given this invoice")


def test_an_rpa_failure_released_is_a_second_hand_off_and_a_replay_of_it_is_the_same_one(judge):
    ledger, emitted = run(PurchaseOrderLedger(po_number="PO-1"),
                          lambda ledger: submit_invoice(ledger, submission("A"), judge, "automatic"),
                          lambda ledger: complete_rpa(ledger, completion("A", ok=False), judge, "automatic"))
    assert [m.attempt for m in emitted if isinstance(m, RpaRequest)] == [1]
    cmd = ReleaseRequested(command_id="r1", invoice_id="A", invoice_version=1, po_number="PO-1",
                           user="ana", reason="Sampro screen fixed, try again", issued_at=AT)
    outcome = release_invoice(ledger, cmd, judge, "automatic")
    (again,) = [m for m in outcome.emitted if isinstance(m, RpaRequest)]
    assert again.attempt == 2 and statuses(outcome.emitted)[-1] == ("A", "sent_to_rpa")
    replayed = submit_invoice(outcome.ledger, submission("A"), judge, "automatic")
    assert [m.attempt for m in replayed.emitted if isinstance(m, RpaRequest)] == [2]


@pytest.mark.parametrize(("dispatch", "after_release"), [("automatic", InvoiceStatus.SENT_TO_RPA),
                                                          ("approval", InvoiceStatus.READY_TO_PROCESS)])
def test_a_failure_released_twice_behind_other_invoices_is_a_new_step_in_its_history_each_time(
        judge, dispatch, after_release):
    """Parked behind another invoice, each release went on under one id: processscheduler took the
    second for the first again and kept the invoice released, which AP can neither release nor send."""
    def approved(invoice_id):
        return lambda ledger: approve_dispatch(ledger, DispatchApproved(
            command_id=f"d-{invoice_id}-{len(ledger.completions_seen)}", invoice_id=invoice_id, invoice_version=1,
            po_number="PO-1", user="ana", issued_at=AT), judge, dispatch)

    def sent(invoice_id):
        return [] if dispatch == "automatic" else [approved(invoice_id)]

    def released_behind(other, failure, release):
        return [lambda ledger: complete_rpa(ledger, completion("A", ok=False, event_id=failure), judge, dispatch),
                lambda ledger: submit_invoice(ledger, submission(other), judge, dispatch), *sent(other),
                lambda ledger: release_invoice(ledger, ReleaseRequested(
                    command_id=release, invoice_id="A", invoice_version=1, po_number="PO-1", user="ana",
                    reason="try again", issued_at=AT), judge, dispatch),
                lambda ledger: complete_rpa(ledger, completion(other), judge, dispatch)]

    ledger, emitted = run(PurchaseOrderLedger(po_number="PO-1"),
                          lambda ledger: submit_invoice(ledger, submission("A"), judge, dispatch), *sent("A"),
                          *released_behind("B", "a-1", "r1"), *sent("A"), *released_behind("C", "a-2", "r2"))
    went_on = [m.event_id for m in emitted if isinstance(m, StatusChanged) and m.invoice_id == "A"
               and m.status is after_release and ":released" in m.event_id]
    assert len(went_on) == len(set(went_on)) == 2
    assert ledger.records["A@v1"].status is after_release


def test_a_release_held_anew_at_the_clerks_approval_and_released_again_is_a_new_step_each_turn():
    """Released behind B, A was ready for a clerk's approval; approved, it was held anew (the PO's
    price cut in Sampro), released again behind C, and its turn after C went under the first turn's
    event id: processscheduler skipped it as recorded and kept A released, which no clerk can send,
    and every later invoice of the PO waited behind A for good."""
    judge, cut, cut_again = TwoHoldsJudge(), TwoHoldsJudge(price="14.00"), TwoHoldsJudge(price="13.00")

    def approved(invoice_id, with_judge):
        return lambda ledger: approve_dispatch(ledger, DispatchApproved(
            command_id=f"d-{invoice_id}-{len(ledger.completions_seen)}", invoice_id=invoice_id, invoice_version=1,
            po_number="PO-1", user="bo", issued_at=AT), with_judge, "approval")

    def released_behind(other, command_id, with_judge):
        holds = ["PRICE_MISMATCH:1:unit_price", "TAX_MISMATCH::tax_amount"]
        return [lambda ledger: submit_invoice(ledger, submission(other), FakeJudge(), "approval"),
                lambda ledger: release_invoice(ledger, release(holds, command_id), with_judge, "approval"),
                approved(other, FakeJudge()),
                lambda ledger: complete_rpa(ledger, completion(other), with_judge, "approval")]

    ledger, emitted = run(held(judge, "A"), *released_behind("B", "r1", judge), approved("A", cut),
                          *released_behind("C", "r2", cut), approved("A", cut_again),
                          *released_behind("D", "r3", cut_again))
    turns = [m.event_id for m in emitted if isinstance(m, StatusChanged) and m.invoice_id == "A"
             and m.status is InvoiceStatus.READY_TO_PROCESS]
    assert turns == ["A:v1:ready_to_process:released", "A:v1:ready_to_process:released-r2",
                     "A:v1:ready_to_process:released-r3"]
    assert ledger.records["A@v1"].status is InvoiceStatus.READY_TO_PROCESS and ledger.holding == ["A@v1"]


def _sent_again(judge):
    """A's first hand-off failed, AP released it, and the second is at the bot."""
    return run(PurchaseOrderLedger(po_number="PO-1"),
               lambda ledger: submit_invoice(ledger, submission("A"), judge, "automatic"),
               lambda ledger: complete_rpa(ledger, completion("A", ok=False, event_id="a1-failed"), judge,
                                           "automatic"),
               lambda ledger: release_invoice(ledger, ReleaseRequested(
                   command_id="r1", invoice_id="A", invoice_version=1, po_number="PO-1", user="ana",
                   reason="try again", issued_at=AT), judge, "automatic"))[0]


def test_the_first_hand_offs_failure_reported_again_after_the_second_went_leaves_the_second_at_the_bot(judge):
    ledger = _sent_again(judge)
    again = completion("A", ok=False, event_id="a1-reported-again").model_copy(update={"attempt": 1})
    outcome = complete_rpa(ledger, again, judge, "automatic")
    assert outcome.emitted == [] and outcome.ledger.records["A@v1"].status is InvoiceStatus.SENT_TO_RPA
    assert outcome.ledger.holding == ["A@v1"]


def test_the_first_hand_offs_late_entry_tells_ap_the_second_may_be_entered_too(judge):
    ledger = _sent_again(judge)
    late = completion("A", event_id="a1-entered").model_copy(update={"attempt": 1})
    (entered,) = complete_rpa(ledger, late, judge, "automatic").emitted
    assert entered.status is InvoiceStatus.ENTERED and "hand-off 1" in entered.reason and "hand-off 2" in entered.reason
    current = completion("A", event_id="a2-entered").model_copy(update={"attempt": 2})
    (entered,) = complete_rpa(ledger, current, judge, "automatic").emitted
    assert entered.status is InvoiceStatus.ENTERED and entered.reason is None


def test_a_release_of_a_failure_the_bot_failed_again_since_with_another_error_releases_nothing_and_says_so(judge):
    """bo and ana opened the failure; ana released it, and the bot failed hand-off 2 with another error
    before bo's release came: it released that failure, which bo never read, and hand-off 3 went."""
    failed_again = completion("A", ok=False, event_id="a2-failed").model_copy(
        update={"error": "Vendor blocked for payment in Sampro", "attempt": 2})
    ledger = complete_rpa(_sent_again(judge), failed_again, judge, "automatic").ledger
    stale = ReleaseRequested(command_id="r2", invoice_id="A", invoice_version=1, po_number="PO-1", user="bo",
                             reason="try again", issued_at=AT, holds=[RPA_FAILURE],
                             seen={RPA_FAILURE: "Sampro timed out"})
    outcome = release_invoice(ledger, stale, judge, "automatic")
    (note,) = outcome.emitted
    assert (note.status, note.actor) == (InvoiceStatus.RPA_FAILED, "bo") and note.reason == (
        "Not released: try again; the RPA bot failed it again since bo looked: Vendor blocked for payment in Sampro")
    assert release_invoice(outcome.ledger, stale, judge, "automatic").emitted == []  # applied once
    read = stale.model_copy(update={"command_id": "r3", "seen": {RPA_FAILURE: "Vendor blocked for payment in Sampro"}})
    from_before = stale.model_copy(update={"command_id": "r4", "holds": [], "seen": {}})  # written before `seen`
    # A record of a failure from before its error was kept: released as before.
    record = ledger.records["A@v1"].model_copy(update={"rpa_error": None})
    kept_before = ledger.model_copy(update={"records": {"A@v1": record}})
    for on, command in ((ledger, read), (ledger, from_before), (kept_before, stale)):
        sent = [m.attempt for m in release_invoice(on, command, judge, "automatic").emitted
                if isinstance(m, RpaRequest)]
        assert sent == [3]


def test_an_rpa_failure_from_a_ledger_that_counted_no_attempts_is_released_as_the_second(judge):
    ledger, _ = run(PurchaseOrderLedger(po_number="PO-1"),
                    lambda ledger: submit_invoice(ledger, submission("A"), judge, "automatic"),
                    lambda ledger: complete_rpa(ledger, completion("A", ok=False), judge, "automatic"))
    record = ledger.records["A@v1"]
    written_before = ledger.model_copy(update={"records": {"A@v1": record.model_copy(update={"rpa_attempts": 0})}})
    cmd = ReleaseRequested(command_id="r1", invoice_id="A", invoice_version=1, po_number="PO-1",
                           user="ana", reason="try again", issued_at=AT)
    (again,) = [m for m in release_invoice(written_before, cmd, judge, "automatic").emitted
                if isinstance(m, RpaRequest)]
    assert again.attempt == 2


def test_manual_dispatch_waits_for_approval(judge):
    ledger, emitted = run(PurchaseOrderLedger(po_number="PO-1"),
                          lambda ledger: submit_invoice(ledger, submission("A"), judge, "approval"))
    assert statuses(emitted) == [("A", "ready_to_process")]
    approval = DispatchApproved(command_id="d1", invoice_id="A", invoice_version=1, po_number="PO-1", user="ana",
                                issued_at=AT)
    outcome = approve_dispatch(ledger, approval)
    assert statuses(outcome.emitted) == [("A", "rpa_request"), ("A", "sent_to_rpa")]
    assert approve_dispatch(outcome.ledger, approval).emitted == []


def test_an_approval_delivered_again_after_the_bot_failed_the_hand_off_it_approved_sends_nothing(judge):
    """bo's approval d1 went to the bot, the bot failed it, ana released the failure for a clerk to
    send again, and d1 delivered again (a crash before its offset was committed) emailed the invoice
    to the bot a second time with no clerk's approval."""
    def approval(command_id):
        return DispatchApproved(command_id=command_id, invoice_id="A", invoice_version=1, po_number="PO-1",
                                user="bo", issued_at=AT)

    ledger, _ = run(PurchaseOrderLedger(po_number="PO-1"),
                    lambda ledger: submit_invoice(ledger, submission("A"), judge, "approval"),
                    lambda ledger: approve_dispatch(ledger, approval("d1"), judge),
                    lambda ledger: complete_rpa(ledger, completion("A", ok=False), judge, "approval"),
                    lambda ledger: release_invoice(ledger, ReleaseRequested(
                        command_id="r1", invoice_id="A", invoice_version=1, po_number="PO-1", user="ana",
                        reason="try again", issued_at=AT), judge, "approval"))
    assert ledger.records["A@v1"].status is InvoiceStatus.READY_TO_PROCESS
    again = approve_dispatch(ledger, approval("d1"), judge)
    assert again.emitted == [] and again.ledger.records["A@v1"] is ledger.records["A@v1"]
    sent = approve_dispatch(ledger, approval("d2"), judge)
    request, change = sent.emitted
    assert (request.attempt, change.status, change.event_id) == (2, InvoiceStatus.SENT_TO_RPA, "A:v1:sent_to_rpa:d2-a2")


def test_quantities_of_ready_invoices_are_in_flight_for_the_next(judge):
    ledger, _ = run(PurchaseOrderLedger(po_number="PO-1"),
                    lambda ledger: submit_invoice(ledger, submission("A"), judge, "approval"))
    assert ledger.in_flight() == {"1": Decimal("1")}  # by PO line


def test_ledger_round_trips_through_json(judge):
    ledger, _ = run(
        PurchaseOrderLedger(po_number="PO-1"),
        lambda ledger: submit_invoice(ledger, submission("A"), judge, "automatic"),
        lambda ledger: submit_invoice(ledger, submission("B"), judge, "automatic"),
    )
    assert PurchaseOrderLedger.model_validate_json(ledger.model_dump_json()) == ledger


def test_a_replay_after_a_crash_re_emits_where_the_invoice_stands(judge):
    """The ledger was saved but its messages were lost: the replay carries the status change too."""
    ledger, first = run(PurchaseOrderLedger(po_number="PO-1"),
                        lambda ledger: submit_invoice(ledger, submission("A"), judge, "automatic"),
                        lambda ledger: submit_invoice(ledger, submission("B"), judge, "automatic"))
    for invoice_id, expected in (("A", [("A", "ready_to_process"), ("A", "rpa_request"), ("A", "sent_to_rpa")]),
                                 ("B", [("B", "waiting_for_po")])):
        again = submit_invoice(ledger, submission(invoice_id), judge, "automatic")
        assert statuses(again.emitted) == expected
        originals = [m for m in first if isinstance(m, StatusChanged) and m.invoice_id == invoice_id]
        assert [m for m in again.emitted if isinstance(m, StatusChanged)] == originals[-1:]


class AuditingJudge(FakeJudge):
    """Verdicts as the rules make them: the invoice as received in the audit."""

    def decide(self, submission: InvoiceSubmitted, in_flight: dict[str, Decimal]) -> Verdict:
        verdict = super().decide(submission, in_flight)
        return verdict.model_copy(update={"audit": VerdictAudit(invoice=submission.document)})


def test_a_ledger_record_holds_the_invoice_and_the_payload_once_and_a_replay_tells_them_whole():
    judge = AuditingJudge()
    first = submit_invoice(PurchaseOrderLedger(po_number="PO-1"), submission("A"), judge, "automatic")
    stored = first.ledger.records["A@v1"].model_dump_json()
    assert stored.count('"invoice_number":"N-A"') == 1  # the payload, once
    assert stored.count('"expect":"ready_to_process"') == 1  # the invoice, once
    again = submit_invoice(PurchaseOrderLedger.model_validate_json(first.ledger.model_dump_json()),
                           submission("A"), judge, "automatic")
    assert again.emitted == first.emitted  # the verdict's payload and audit, the change's payload


def test_a_version_replayed_after_a_change_of_rules_is_judged_again_unless_the_rpa_bot_has_it(judge):
    ledger, _ = run(PurchaseOrderLedger(po_number="PO-1"),
                    lambda ledger: submit_invoice(ledger, submission("A", expect="manual_review"), judge, "automatic"),
                    lambda ledger: submit_invoice(ledger, submission("B"), judge, "automatic"))
    new_rules = FakeJudge(rules_version="test+tol", lets_pass=frozenset({"A"}))
    held_a = submission("A", expect="manual_review")
    replayed_a = submit_invoice(ledger, held_a, new_rules, "automatic")  # now passes, but B holds the PO
    assert statuses(replayed_a.emitted) == [("A", "waiting_for_po")]
    assert submit_invoice(ledger, submission("B"), new_rules, "automatic").emitted[0].rules_version == "test"
    ledger, emitted = run(replayed_a.ledger,
                          lambda ledger: complete_rpa(ledger, completion("B"), new_rules, "automatic"))
    assert statuses(emitted) == [("B", "entered"), ("A", "ready_to_process"), ("A", "rpa_request"),
                                 ("A", "sent_to_rpa")]
    same_rules = submit_invoice(ledger, held_a, new_rules, "automatic")
    assert ("A", "ready_to_process") in statuses(same_rules.emitted) and same_rules.ledger == ledger


def test_rules_rolled_back_judge_again_under_a_new_event():
    """Rules A, then B, then A again, the topic reprocessed each time: A's second verdict had the
    id of its first, processscheduler took it for a repeat, and showed B's verdict for good."""
    rules_a, rules_b = FakeJudge(rules_version="A"), FakeJudge(rules_version="B")
    ledger, verdicts = PurchaseOrderLedger(po_number="PO-1"), []
    for rules in (rules_a, rules_b, rules_a):
        outcome = submit_invoice(ledger, submission("X", expect="manual_review"), rules, "automatic")
        ledger = outcome.ledger
        verdicts += [(m.rules_version, m.judged_after) for m in outcome.emitted if isinstance(m, Verdict)]
    first = AT.isoformat()
    assert verdicts == [("A", None), ("B", f"rules:A@{first}"), ("A", f"rules:B@{first}")]
    replayed = submit_invoice(ledger, submission("X", expect="manual_review"), rules_a, "automatic")
    assert [(m.rules_version, m.judged_after) for m in replayed.emitted] == [("A", f"rules:B@{first}")]


# -- Sampro changes: held invoices judged again ------------------------------------------------------


class PricingJudge(FakeJudge):
    """manual_review with a PRICE_MISMATCH (or the finding given) unless these rules let it pass."""

    def __init__(self, lets_pass: frozenset[str] = frozenset(), code: str = "PRICE_MISMATCH",
                 price: str = "15.00") -> None:
        super().__init__(lets_pass=lets_pass)
        self.code, self.price = code, price

    def decide(self, submission: InvoiceSubmitted, in_flight: dict[str, Decimal]) -> Verdict:
        verdict = super().decide(submission, in_flight)
        if verdict.status is VerdictStatus.READY_TO_PROCESS:
            return verdict
        finding = Finding(code=self.code, severity=Severity.WARNING, line_no=1, field="unit_price",
                          expected=self.price, actual="15.50", message="price differs from the PO")
        return verdict.model_copy(update={"reasons": [finding]})


def changed(event_id: str = "sampro:PO-1:1") -> PurchaseOrderChanged:
    return PurchaseOrderChanged(event_id=event_id, po_number="PO-1", changed_at=AT)


def held(judge, *invoice_ids: str) -> PurchaseOrderLedger:
    ledger = PurchaseOrderLedger(po_number="PO-1")
    for invoice_id in invoice_ids:
        ledger = submit_invoice(ledger, submission(invoice_id, expect="manual_review"), judge, "automatic").ledger
    return ledger


def test_a_price_corrected_in_sampro_clears_the_held_invoice_and_sends_it_to_the_rpa_bot():
    ledger = held(PricingJudge(), "A")
    outcome = recheck_held(ledger, changed(), PricingJudge(lets_pass=frozenset({"A"})), "automatic")
    assert statuses(outcome.emitted) == [("A", "ready_to_process"), ("A", "rpa_request"), ("A", "sent_to_rpa")]
    verdict = outcome.emitted[0]
    assert verdict.judged_after == "sampro:PO-1:1" and verdict.rpa_payload is not None
    assert outcome.ledger.holding == ["A@v1"]


def test_a_change_that_does_not_clear_leaves_the_invoice_held_with_its_new_reasons():
    ledger = held(PricingJudge(), "A")
    outcome = recheck_held(ledger, changed(), PricingJudge(price="15.25"), "automatic")
    (verdict,) = outcome.emitted
    assert verdict.status is VerdictStatus.MANUAL_REVIEW and verdict.judged_after == "sampro:PO-1:1"
    assert verdict.reasons[0].expected == "15.25"
    assert outcome.ledger.records["A@v1"].recheck_for is None


def test_the_same_change_again_changes_nothing():
    ledger = held(PricingJudge(), "A")
    first = recheck_held(ledger, changed(), PricingJudge(price="15.25"), "automatic")
    again = recheck_held(first.ledger, changed(), PricingJudge(lets_pass=frozenset({"A"})), "automatic")
    assert again.emitted == [] and again.ledger == first.ledger


def verdict_event(verdict: Verdict) -> str:
    return verdict_event_id(verdict.invoice_id, verdict.invoice_version, verdict.status.value,
                            verdict.rules_version, verdict.judged_after, verdict.reasons)


def test_a_change_applied_again_once_forgotten_tells_other_findings_under_an_event_of_their_own():
    """Debezium sends a busy PO's changes again after a Connect restart: the ledger no longer
    remembered the first (`CHANGES_REMEMBERED` changes later), so it was judged again, against the PO
    as it is now, and its verdict had the event id of the change's first judgement: processscheduler
    took it for a repeat and showed the old price for good."""
    ledger = held(PricingJudge(), "A")
    (first,) = ledger.records["A@v1"].told()
    assert verdict_event(first) == "verdict:A:v1:manual_review:test"  # a first verdict's as it always was
    once = recheck_held(ledger, changed("sampro:PO-1:0"), PricingJudge(price="15.10"), "automatic")
    ledger = once.ledger
    for n in range(1, CHANGES_REMEMBERED + 1):  # changes that leave its findings as they are
        ledger = recheck_held(ledger, changed(f"sampro:PO-1:{n}"), PricingJudge(price="15.10"), "automatic").ledger
    again = recheck_held(ledger, changed("sampro:PO-1:0"), PricingJudge(price="15.20"), "automatic")
    (told,), (retold,) = once.emitted, again.emitted
    assert told.judged_after == retold.judged_after == "sampro:PO-1:0"
    assert verdict_event(retold) != verdict_event(told)
    (replayed,) = again.ledger.records["A@v1"].told()  # told again (a replay, a crash): the same event
    assert verdict_event(replayed) == verdict_event(retold)


def test_an_invoice_with_a_finding_of_its_own_is_not_judged_again():
    judge = PricingJudge(code="TOTAL_MISMATCH")
    ledger = held(judge, "A")
    outcome = recheck_held(ledger, changed(), PricingJudge(lets_pass=frozenset({"A"})), "automatic")
    assert outcome.emitted == [] and outcome.ledger == ledger


def test_while_another_invoice_holds_the_po_a_cleared_one_waits_and_is_judged_when_it_is_free():
    judge = PricingJudge()
    ledger = submit_invoice(held(judge, "B"), submission("A"), judge, "automatic").ledger  # A at the bot
    fixed = PricingJudge(lets_pass=frozenset({"B"}))
    waiting = recheck_held(ledger, changed(), fixed, "automatic")
    assert statuses(waiting.emitted) == [("B", "waiting_for_po")]
    freed = complete_rpa(waiting.ledger, completion("A"), fixed, "automatic")
    assert statuses(freed.emitted) == [("A", "entered"), ("B", "ready_to_process"), ("B", "rpa_request"),
                                       ("B", "sent_to_rpa")]
    assert freed.emitted[1].judged_after == "sampro:PO-1:1"


def test_a_cleared_invoice_waits_from_when_it_was_judged_not_from_sampros_time_of_the_change():
    """Stamped with the change's time, which Sampro may give in its local time, the history showed
    the invoice waiting hours before it was judged."""
    judge = PricingJudge()
    ledger = submit_invoice(held(judge, "B"), submission("A"), judge, "automatic").ledger  # A at the bot
    local = changed().model_copy(update={"changed_at": AT - timedelta(hours=5)})
    (waiting,) = recheck_held(ledger, local, PricingJudge(lets_pass=frozenset({"B"})), "automatic").emitted
    assert (waiting.status, waiting.occurred_at) == ("waiting_for_po", AT)


def test_a_cleared_invoice_the_rules_fail_on_when_its_turn_comes_is_held_as_it_was():
    """Made bad_invoice, it lost the price hold a clerk had released, for INVALID_INVOICE, which no
    clerk may release."""
    judge = PricingJudge()
    ledger = submit_invoice(held(judge, "B"), submission("A"), judge, "automatic").ledger  # A at the bot
    ledger = ledger.model_copy(update={"records": {**ledger.records, "B@v1": ledger.records["B@v1"].model_copy(
        update={"released_holds": ["PRICE_MISMATCH:1:unit_price"]})}})
    waiting = recheck_held(ledger, changed(), PricingJudge(lets_pass=frozenset({"B"})), "automatic")
    assert statuses(waiting.emitted) == [("B", "waiting_for_po")]
    failing = PricingJudge()
    failing.fails_on = frozenset({"B"})
    freed = complete_rpa(waiting.ledger, completion("A"), failing, "automatic")
    assert statuses(freed.emitted) == [("A", "entered"), ("B", "manual_review")]
    assert freed.unjudged == ["B@v1 (held as it was): ArithmeticError: no rule foresaw B"]
    kept = freed.ledger.records["B@v1"]
    assert kept.verdict == ledger.records["B@v1"].verdict and kept.released_holds == ["PRICE_MISMATCH:1:unit_price"]
    assert kept.recheck_for is None and freed.ledger.parked == freed.ledger.holding == []


def test_while_an_invoice_of_its_po_is_at_the_bot_a_held_invoice_is_judged_again_when_the_bot_is_done():
    """Sampro had the bot's entry before its completion came in: the quantities entered were
    counted twice, invoiced in Sampro and in flight, which made a finding of nothing."""
    judge = PricingJudge()
    ledger = submit_invoice(held(judge, "B"), submission("A"), judge, "automatic").ledger  # A at the bot
    waiting = recheck_held(ledger, changed(), PricingJudge(code="QUANTITY_EXCEEDS_OPEN"), "automatic")
    assert waiting.emitted == [] and waiting.ledger.records["B@v1"].recheck_for == "sampro:PO-1:1"
    assert may_free(waiting.ledger, completion("A"))  # its duplicates are looked up for the completion's batch
    assert not may_free(waiting.ledger, release([]))  # judged at the completion only
    later = recheck_held(waiting.ledger, changed("sampro:PO-1:2"), judge, "automatic")
    assert later.ledger.records["B@v1"] is waiting.ledger.records["B@v1"]  # waiting already: not written again
    entered = complete_rpa(waiting.ledger, completion("A"), PricingJudge(price="15.25"), "automatic")
    assert statuses(entered.emitted) == [("A", "entered"), ("B", "manual_review")]
    again = entered.emitted[1]
    assert again.reasons[0].expected == "15.25" and again.judged_after == "sampro:PO-1:1"
    assert entered.ledger.records["B@v1"].recheck_for is None
    next_one = submit_invoice(entered.ledger, submission("C"), judge, "automatic").ledger
    assert statuses(complete_rpa(next_one, completion("C"), judge, "automatic").emitted) == [("C", "entered")]
    alike = complete_rpa(waiting.ledger, completion("A"), judge, "automatic")
    assert statuses(alike.emitted) == [("A", "entered")] and alike.ledger.records["B@v1"].recheck_for is None


def test_the_holds_ap_released_stay_released_when_the_bot_enters_another_invoice_of_the_po():
    judge = TwoHoldsJudge(second="TAX_MISMATCH")
    ledger = release_invoice(held(judge, "A"), release(["PRICE_MISMATCH:1:unit_price"]), judge, "automatic").ledger
    at_bot = submit_invoice(ledger, submission("B"), FakeJudge(), "automatic").ledger
    counted_twice = TwoHoldsJudge(second="QUANTITY_EXCEEDS_OPEN")
    waiting = recheck_held(at_bot, changed(), counted_twice, "automatic")
    entered = complete_rpa(waiting.ledger, completion("B"), judge, "automatic")
    assert statuses(waiting.emitted + entered.emitted) == [("B", "entered")]
    assert entered.ledger.records["A@v1"].released_holds == ["PRICE_MISMATCH:1:unit_price"]


def test_a_ready_invoice_awaiting_approval_is_not_at_the_bot_and_a_held_one_is_judged_again_at_once():
    judge = PricingJudge()
    ledger = submit_invoice(held(judge, "B"), submission("A"), judge, "approval").ledger  # A awaits approval
    assert ledger.records["A@v1"].status is InvoiceStatus.READY_TO_PROCESS
    outcome = recheck_held(ledger, changed(), PricingJudge(price="15.25"), "approval")
    assert statuses(outcome.emitted) == [("B", "manual_review")]


def test_a_held_invoice_judged_again_while_the_po_is_free_is_not_judged_again_at_the_next_entry():
    judge = PricingJudge()
    outcome = recheck_held(held(judge, "B"), changed(), PricingJudge(price="15.25"), "automatic")
    assert outcome.ledger.records["B@v1"].recheck_for is None
    at_bot = submit_invoice(outcome.ledger, submission("A"), judge, "automatic").ledger
    assert statuses(complete_rpa(at_bot, completion("A"), judge, "automatic").emitted) == [("A", "entered")]


class InFlightJudge(FakeJudge):
    """H is held for QUANTITY_EXCEEDS_OPEN while anything is in flight, else ready; the invoices
    in `held` are held for their price."""

    def __init__(self, held: frozenset[str] = frozenset()) -> None:
        super().__init__(lets_pass=frozenset({"H"}))
        self.held = held

    def decide(self, submission: InvoiceSubmitted, in_flight: dict[str, Decimal]) -> Verdict:
        verdict = super().decide(submission, in_flight)
        code = ("QUANTITY_EXCEEDS_OPEN" if submission.invoice_id == "H" and in_flight
                else "PRICE_MISMATCH" if submission.invoice_id in self.held else None)
        if code is None:
            return verdict
        finding = Finding(code=code, severity=Severity.WARNING, line_no=1, field="quantity", message=code)
        return verdict.model_copy(update={"status": VerdictStatus.MANUAL_REVIEW, "http_status": 400,
                                          "rpa_payload": None, "reasons": [finding]})


@pytest.mark.parametrize("leaves", [
    lambda ledger, judge: withdraw_invoice(ledger, InvoiceWithdrawn(
        invoice_id="A", version=1, po_number="PO-1", withdrawn_at=AT), judge, "approval"),
    lambda ledger, judge: replace_invoice(ledger, replaced("A"), judge, "approval"),
    lambda ledger, judge: submit_invoice(ledger, submission("A", 2), judge, "approval"),
    lambda ledger, judge: approve_dispatch(ledger, DispatchApproved(
        command_id="d1", invoice_id="A", invoice_version=1, po_number="PO-1", user="bo", issued_at=AT),
        InFlightJudge(held=frozenset({"A"})), "approval"),
], ids=["withdrawn", "replaced elsewhere", "superseded", "held anew at approval"])
def test_a_held_invoice_judged_with_a_ready_ones_quantities_in_flight_is_judged_again_when_it_leaves(leaves):
    """H was judged with A's quantities in flight while A awaited a clerk's approval; A left the PO
    without reaching Sampro, and nothing judged H again: it stayed held for quantities never invoiced."""
    judge = InFlightJudge()
    ledger, _ = run(held(PricingJudge(), "H"),
                    lambda ledger: submit_invoice(ledger, submission("A"), judge, "approval"),
                    lambda ledger: recheck_held(ledger, changed(), judge, "approval"))
    assert ledger.records["H@v1"].status is InvoiceStatus.MANUAL_REVIEW and ledger.records["H@v1"].counted_in_flight
    outcome = leaves(ledger, judge)
    (again,) = [m for m in outcome.emitted if isinstance(m, Verdict) and m.invoice_id == "H"]
    assert again.status is VerdictStatus.READY_TO_PROCESS and again.judged_after.startswith("po-freed-by:A:v1:")
    assert outcome.ledger.holding[0] == "H@v1" and not outcome.ledger.records["H@v1"].counted_in_flight


class AuditedInFlightJudge(InFlightJudge):
    """Its verdicts keep in their audit the quantities they counted in flight, as the rules' do."""

    def decide(self, submission: InvoiceSubmitted, in_flight: dict[str, Decimal]) -> Verdict:
        verdict = super().decide(submission, in_flight)
        return verdict.model_copy(update={"audit": VerdictAudit(invoice=submission.document, in_flight=in_flight)})


def test_a_held_invoice_in_a_record_stored_before_it_was_marked_counted_is_judged_again_when_the_bot_fails():
    """A record a release before stored has no `counted_in_flight`, read as not counted: after the
    upgrade, H, held for A's quantity at the bot ("3 invoiced but only 2 still open"), stayed held
    so when the bot failed A. Its verdict's audit says what it counted in flight."""
    judge = AuditedInFlightJudge(held=frozenset({"P"}))
    approved = DispatchApproved(command_id="d1", invoice_id="A", invoice_version=1, po_number="PO-1", user="bo",
                                issued_at=AT)
    ledger, _ = run(held(PricingJudge(), "H"),
                    lambda ledger: submit_invoice(ledger, submission("P", expect="manual_review"), judge, "approval"),
                    lambda ledger: submit_invoice(ledger, submission("A"), judge, "approval"),
                    lambda ledger: recheck_held(ledger, changed(), judge, "approval"),
                    lambda ledger: approve_dispatch(ledger, approved, judge, "approval"))
    stored = json.loads(ledger.model_dump_json())
    for record in stored["records"].values():
        del record["counted_in_flight"]  # the shape of a record stored before it was kept
    before = PurchaseOrderLedger.model_validate(stored)
    assert before.records["A@v1"].status is InvoiceStatus.SENT_TO_RPA
    assert [key for key, record in before.records.items() if record.counted_in_flight] == ["H@v1"]
    failed = complete_rpa(before, completion("A", ok=False), judge, "approval")
    (again,) = [m for m in failed.emitted if isinstance(m, Verdict) and m.invoice_id == "H"]
    assert again.status is VerdictStatus.READY_TO_PROCESS and again.judged_after.startswith("po-freed-by:A:v1:")


def test_a_held_invoice_judged_with_nothing_in_flight_is_not_judged_again_when_the_bot_fails_another(judge):
    ledger = recheck_held(held(PricingJudge(), "H"), changed(), PricingJudge(price="15.25"), "automatic").ledger
    assert not ledger.records["H@v1"].counted_in_flight
    at_bot = submit_invoice(ledger, submission("A"), judge, "automatic").ledger
    failed = complete_rpa(at_bot, completion("A", ok=False), InFlightJudge(), "automatic")
    assert statuses(failed.emitted) == [("A", "rpa_failed")]


def test_a_cleared_version_held_for_its_older_versions_late_entry_is_not_parked_again_at_the_next_entry(judge):
    """A's version 2 waited for the PO after a Sampro change cleared it; the bot's late word that
    version 1 was entered held it for AP, and B's entry parked it again under the event id it was
    parked under before: processscheduler kept manual review, the ledger had it waiting, and a
    clerk's release of it was dropped without a word."""
    pricing = PricingJudge()
    ledger, _ = run(PurchaseOrderLedger(po_number="PO-1"),
                    lambda ledger: submit_invoice(ledger, submission("A"), judge, "automatic"),
                    lambda ledger: complete_rpa(ledger, completion("A", ok=False), judge, "automatic"),
                    lambda ledger: submit_invoice(ledger, submission("A", 2, expect="manual_review"), pricing,
                                                  "automatic"),
                    lambda ledger: submit_invoice(ledger, submission("B"), judge, "automatic"),
                    lambda ledger: recheck_held(ledger, changed(), PricingJudge(lets_pass=frozenset({"A"})),
                                                "automatic"),
                    lambda ledger: complete_rpa(ledger, completion("A", event_id="late"), judge, "automatic"),
                    lambda ledger: submit_invoice(ledger, submission("C"), judge, "automatic"))
    assert ledger.records["A@v2"].status is InvoiceStatus.MANUAL_REVIEW and ledger.parked == ["C@v1"]
    outcome = complete_rpa(ledger, completion("B"), PricingJudge(lets_pass=frozenset({"A"})), "automatic")
    assert statuses(outcome.emitted) == [("B", "entered"), ("C", "ready_to_process"), ("C", "rpa_request"),
                                         ("C", "sent_to_rpa")]
    assert outcome.ledger.records["A@v2"].status is InvoiceStatus.MANUAL_REVIEW and outcome.ledger.parked == []


def test_a_change_of_a_po_with_nothing_held_leaves_its_ledger_as_it_was():
    ledger = PurchaseOrderLedger(po_number="PO-1")
    outcome = recheck_held(ledger, changed(), PricingJudge(), "automatic")
    assert outcome.emitted == [] and outcome.ledger == ledger


def test_an_invoice_held_only_for_goods_not_received_awaits_the_receipt_which_clears_it():
    short = PricingJudge(code="QUANTITY_EXCEEDS_RECEIVED")
    first = submit_invoice(PurchaseOrderLedger(po_number="PO-1"), submission("A", expect="manual_review"), short,
                           "automatic")
    assert statuses(first.emitted) == [("A", "manual_review"), ("A", "awaiting_receipt")]
    some_came = PricingJudge(code="QUANTITY_EXCEEDS_RECEIVED", price="3")
    partly = recheck_held(first.ledger, changed("sampro:PO-1:1"), some_came, "automatic")
    assert statuses(partly.emitted) == [("A", "manual_review"), ("A", "awaiting_receipt")]
    assert partly.emitted[1].event_id != first.emitted[1].event_id  # a new step of its history
    received = recheck_held(partly.ledger, changed("sampro:PO-1:2"), PricingJudge(lets_pass=frozenset({"A"})),
                            "automatic")
    assert statuses(received.emitted) == [("A", "ready_to_process"), ("A", "rpa_request"), ("A", "sent_to_rpa")]


def test_an_invoice_held_for_a_receipt_and_something_else_is_manual_review():
    judge = PricingJudge(code="QUANTITY_EXCEEDS_RECEIVED")
    original = judge.decide

    def two_findings(submission, in_flight):
        verdict = original(submission, in_flight)
        price = verdict.reasons[0].model_copy(update={"code": "PRICE_MISMATCH"})
        return verdict.model_copy(update={"reasons": [*verdict.reasons, price]})

    judge.decide = two_findings
    outcome = submit_invoice(PurchaseOrderLedger(po_number="PO-1"), submission("A", expect="manual_review"), judge,
                             "automatic")
    assert statuses(outcome.emitted) == [("A", "manual_review")]


# -- holds per finding ---------------------------------------------------------------------------------


class TwoHoldsJudge(FakeJudge):
    """manual_review with two findings: PRICE_MISMATCH on line 1 (against `price`), and `second`
    (TAX_MISMATCH by default)."""

    def __init__(self, second: str = "TAX_MISMATCH", price: str = "15.00") -> None:
        super().__init__()
        self.second, self.price = second, price

    def decide(self, submission: InvoiceSubmitted, in_flight: dict[str, Decimal]) -> Verdict:
        verdict = super().decide(submission, in_flight)
        price = Finding(code="PRICE_MISMATCH", severity=Severity.WARNING, line_no=1, field="unit_price",
                        expected=self.price, actual="15.50", message="price differs")
        other = Finding(code=self.second, severity=Severity.WARNING, field="tax_amount", message="second finding")
        return verdict.model_copy(update={"reasons": [price, other]})


def release(holds: list[str], command_id: str = "r1", reason_code: str | None = "PRICE_AGREED") -> ReleaseRequested:
    return ReleaseRequested(command_id=command_id, invoice_id="A", invoice_version=1, po_number="PO-1", user="ana",
                            reason="agreed by phone", issued_at=AT, holds=holds, reason_code=reason_code)


def test_releasing_one_of_two_holds_leaves_the_invoice_held_and_says_who_released_which():
    judge = TwoHoldsJudge()
    ledger = held(judge, "A")
    first = release_invoice(ledger, release(["PRICE_MISMATCH:1:unit_price"]), judge, "automatic")
    (change,) = first.emitted
    assert (change.status, change.holds, change.actor) == (InvoiceStatus.MANUAL_REVIEW,
                                                           ["PRICE_MISMATCH:1:unit_price"], "ana")
    assert change.reason == "PRICE_AGREED: agreed by phone"
    assert release_invoice(first.ledger, release(["PRICE_MISMATCH:1:unit_price"]), judge, "automatic").emitted == []
    last = release_invoice(first.ledger, release(["TAX_MISMATCH::tax_amount"], "r2", "TAX_CORRECT"), judge,
                           "automatic")
    assert statuses(last.emitted) == [("A", "released"), ("A", "rpa_request"), ("A", "sent_to_rpa")]
    assert last.emitted[0].holds == ["TAX_MISMATCH::tax_amount"]


def test_a_duplicate_is_never_released_whatever_the_command_names():
    judge = TwoHoldsJudge(second="DUPLICATE_INVOICE")
    ledger = held(judge, "A")
    assert release_invoice(ledger, release(["DUPLICATE_INVOICE::tax_amount"]), judge, "automatic").emitted == []
    everything = release_invoice(ledger, release([]), judge, "automatic")  # a command from before holds
    (change,) = everything.emitted
    assert change.status is InvoiceStatus.MANUAL_REVIEW and change.holds == ["PRICE_MISMATCH:1:unit_price"]


def test_two_earlier_invoices_of_the_same_total_are_two_holds_and_releasing_one_leaves_the_other():
    """The rules named the first earlier invoice that looked alike only: the clerk cleared it, and
    the other, of the same total, went to the bot unseen. Released each by its name, the invoice
    is judged again at its turn at the bot and its holds read as released."""
    earlier = [KnownInvoice(f"MP-{n}", "V100", f"A-{n}", "entered", Decimal("57.25"), date(2026, 11, n))
               for n in (17, 18)]

    def rules(*history: KnownInvoice) -> RulesJudge:
        return RulesJudge(PurchaseOrder.model_validate(PO), list(history), Policy(), NOW)

    submitted = InvoiceSubmitted(invoice_id="A", version=1, po_number="PO-5001", document=invoice(invoice_id="A"),
                                 received_at=NOW)
    first = submit_invoice(PurchaseOrderLedger(po_number="PO-5001"), submitted, rules(*earlier), "automatic")
    (verdict,) = first.emitted
    one, other = (hold.id for hold in holds_of(verdict.reasons))
    command = release([one]).model_copy(update={"po_number": "PO-5001"})
    partly = release_invoice(first.ledger, command, rules(*earlier), "automatic")
    assert [(m.status, m.holds) for m in partly.emitted] == [(InvoiceStatus.MANUAL_REVIEW, [one])]
    command = release([other], "r2").model_copy(update={"po_number": "PO-5001"})
    third = KnownInvoice("MP-19", "V100", "A-19", "entered", Decimal("57.25"), date(2026, 11, 19))
    held_anew = release_invoice(partly.ledger, command, rules(*earlier, third), "automatic")
    assert statuses(held_anew.emitted) == [("A", "released"), ("A", "manual_review"), ("A", "manual_review")]
    gone = release_invoice(partly.ledger, command, rules(*earlier), "automatic")
    assert statuses(gone.emitted) == [("A", "released"), ("A", "rpa_request"), ("A", "sent_to_rpa")]


def test_a_release_of_holds_a_new_judgement_took_away_releases_nothing_and_says_so():
    """The clerk released what the verdict showed; Sampro's change judged it again before the
    command came: the invoice stays held by what no one has seen, and its history says why."""
    judge = TwoHoldsJudge()
    ledger = held(judge, "A")
    (note,) = release_invoice(ledger, release(["PRICE_MISMATCH:2:unit_price"]), judge, "automatic").emitted
    assert note.status is InvoiceStatus.MANUAL_REVIEW and note.actor == "ana" and note.holds == []
    assert note.reason == ("Not released: PRICE_AGREED: agreed by phone (judged again since, it has no hold "
                           "PRICE_MISMATCH:2:unit_price); its holds are PRICE_MISMATCH:1:unit_price, "
                           "TAX_MISMATCH::tax_amount.")
    (partly,) = release_invoice(ledger, release(["PRICE_MISMATCH:1:unit_price", "PRICE_MISMATCH:2:unit_price"]),
                                judge, "automatic").emitted
    assert partly.holds == ["PRICE_MISMATCH:1:unit_price"] and partly.reason == (
        "PRICE_AGREED: agreed by phone (judged again since, it has no hold PRICE_MISMATCH:2:unit_price)")


def test_a_release_delivered_again_is_applied_once_and_writes_nothing():
    judge = TwoHoldsJudge()
    once = release_invoice(held(judge, "A"), release(["PRICE_MISMATCH:1:unit_price"]), judge, "automatic")
    again = release_invoice(once.ledger, release(["PRICE_MISMATCH:1:unit_price"]), judge, "automatic")
    assert again.emitted == [] and again.ledger.records["A@v1"] is once.ledger.records["A@v1"]


def test_a_release_of_a_version_the_vendor_replaced_since_is_noted_on_the_newer_one_and_changes_nothing_else():
    """The vendor saved the invoice again right after the clerk looked at version 1: the release of
    it was answered 202 and dropped by the worker without a word, and version 2 sat in manual review
    while the clerk took the invoice for released."""
    judge = TwoHoldsJudge()
    ledger = submit_invoice(held(judge, "A"), submission("A", 2, expect="manual_review"), judge, "automatic").ledger
    outcome = release_invoice(ledger, release(["PRICE_MISMATCH:1:unit_price"]), judge, "automatic")
    (note,) = outcome.emitted
    assert (note.invoice_version, note.status, note.actor, note.holds) == (2, InvoiceStatus.MANUAL_REVIEW, "ana", [])
    assert note.reason == ("Not released: ana released version 1 (PRICE_AGREED: agreed by phone), which version 2 "
                           "replaced: look at version 2 again.")
    newer, noted = ledger.records["A@v2"], outcome.ledger.records["A@v2"]
    assert noted.model_dump(exclude={"last_change", "releases_seen"}) == newer.model_dump(
        exclude={"last_change", "releases_seen"})  # its status, holds and place on the PO as they were
    assert (outcome.ledger.holding, outcome.ledger.parked) == (ledger.holding, ledger.parked)
    again = release_invoice(outcome.ledger, release(["PRICE_MISMATCH:1:unit_price"]), judge, "automatic")
    assert again.emitted == [] and again.ledger.records["A@v2"] is outcome.ledger.records["A@v2"]  # applied once


def test_a_dispatch_of_a_version_the_vendor_replaced_since_is_noted_on_the_newer_one_and_sends_nothing(judge):
    ledger, _ = run(PurchaseOrderLedger(po_number="PO-1"),
                    lambda ledger: submit_invoice(ledger, submission("A"), judge, "approval"),
                    lambda ledger: submit_invoice(ledger, submission("A", 2), judge, "approval"))
    approval = DispatchApproved(command_id="d1", invoice_id="A", invoice_version=1, po_number="PO-1", user="ana",
                                issued_at=AT)
    outcome = approve_dispatch(ledger, approval, judge)
    (note,) = outcome.emitted
    assert (note.invoice_version, note.status, note.actor) == (2, InvoiceStatus.READY_TO_PROCESS, "ana")
    assert note.reason == ("Not sent to the RPA bot: ana sent version 1, which version 2 replaced: look at version 2 "
                           "again.")
    assert outcome.ledger.holding == ["A@v2"] and approve_dispatch(outcome.ledger, approval, judge).emitted == []


@pytest.mark.parametrize(("finished", "status", "why"), [
    (lambda ledger, judge: withdraw_invoice(ledger, InvoiceWithdrawn(
        invoice_id="A", version=1, po_number="PO-1", withdrawn_at=AT), judge, "automatic"),
     InvoiceStatus.WITHDRAWN, "the vendor had withdrawn it."),
    (lambda ledger, judge: replace_invoice(ledger, replaced("A"), judge, "automatic"),
     InvoiceStatus.SUPERSEDED, "which version 2 replaced: look at version 2 again."),
])
def test_a_release_of_a_version_finished_since_is_noted_on_it_keeping_its_status(judge, finished, status, why):
    judge = TwoHoldsJudge()
    ledger = finished(held(judge, "A"), judge).ledger
    command = release(["PRICE_MISMATCH:1:unit_price"])
    (note,) = release_invoice(ledger, command, judge, "automatic").emitted
    assert (note.invoice_version, note.status, note.actor) == (1, status, "ana")
    assert note.reason.startswith("Not released: ana released version 1 (PRICE_AGREED: agreed by phone)")
    assert note.reason.endswith(why)
    assert release_invoice(ledger, command, judge, "automatic").emitted == [note]  # the same event: recorded once


def test_a_release_naming_holds_a_failure_at_the_bot_does_not_have_releases_nothing_and_says_so():
    """Issued while the invoice was held, it came after the invoice was cleared, sent and failed at
    the bot: it restarted a failure no one who saw it had released."""
    judge = TwoHoldsJudge()
    ledger = held(judge, "A")
    record = ledger.records["A@v1"].model_copy(update={"status": InvoiceStatus.RPA_FAILED, "rpa_attempts": 1})
    failed = ledger.model_copy(update={"records": {**ledger.records, "A@v1": record}})
    (note,) = release_invoice(failed, release(["PRICE_MISMATCH:1:unit_price"]), judge, "automatic").emitted
    assert note.status is InvoiceStatus.RPA_FAILED and note.reason == (
        "Not released: PRICE_AGREED: agreed by phone (judged again since, it has no hold PRICE_MISMATCH:1:unit_price); "
        "its hold is RPA_FAILED::, the failure.")
    assert failed_at_bot(InvoiceStatus.MANUAL_REVIEW, sent_before=True)  # held again at its next turn
    assert not failed_at_bot(InvoiceStatus.SUPERSEDED, sent_before=True)  # finished: the ledger has no record


def test_a_new_judgement_brings_its_findings_as_holds_anew():
    judge = TwoHoldsJudge()
    ledger = release_invoice(held(judge, "A"), release(["PRICE_MISMATCH:1:unit_price"]), judge, "automatic").ledger
    again = recheck_held(ledger, changed(), TwoHoldsJudge(price="15.25"), "automatic")
    assert again.ledger.records["A@v1"].released_holds == []


def test_a_change_that_leaves_the_judgement_as_it_was_tells_nothing_again_and_keeps_what_ap_released():
    """The bot entered another invoice of the PO: each held invoice's verdict went to the topic
    again, unchanged, into its history, and the holds the clerk had released were holds again."""
    judge = TwoHoldsJudge()
    ledger = release_invoice(held(judge, "A"), release(["PRICE_MISMATCH:1:unit_price"]), judge, "automatic").ledger
    again = recheck_held(ledger, changed(), TwoHoldsJudge(), "automatic")
    assert again.emitted == []
    assert again.ledger == ledger.model_copy(update={"changes_seen": ["sampro:PO-1:1"]})
    assert again.ledger.records["A@v1"].released_holds == ["PRICE_MISMATCH:1:unit_price"]


def test_a_change_judged_by_newer_rules_with_the_findings_as_they_were_keeps_what_ap_released():
    """A deployment of newer rules (or an edit of a tolerance: the rules version carries their
    digest), then a receipt on another PO line: the invoice, judged with the very same findings, got
    a new verdict, the price hold the clerk had released was a hold again, and the release of the
    other hold left it in manual review."""
    judge = TwoHoldsJudge()
    ledger = release_invoice(held(judge, "A"), release(["PRICE_MISMATCH:1:unit_price"]), judge, "automatic").ledger
    upgraded = TwoHoldsJudge()
    upgraded.rules_version = "next+tol"
    again = recheck_held(ledger, changed(), upgraded, "automatic")
    assert again.emitted == []
    assert again.ledger.records["A@v1"].released_holds == ["PRICE_MISMATCH:1:unit_price"]
    tax = release(["TAX_MISMATCH::tax_amount"], command_id="r2", reason_code="TAX_CONFIRMED")
    assert statuses(release_invoice(again.ledger, tax, upgraded, "automatic").emitted) == [
        ("A", "released"), ("A", "rpa_request"), ("A", "sent_to_rpa")]
    # Findings that read otherwise under the newer rules are a new judgement: holds anew.
    stricter = TwoHoldsJudge(price="15.25")
    stricter.rules_version = "next+tol"
    assert recheck_held(ledger, changed(), stricter, "automatic").ledger.records["A@v1"].released_holds == []


def test_a_change_undone_before_a_cleared_invoices_turn_leaves_it_held_as_it_was_with_what_ap_released():
    """Cleared by a change while another invoice of its PO was at the bot, the invoice waited; the
    buyer undid the change before its turn. At its turn its findings were exactly the kept ones, yet
    it got a second verdict alike, which took back the price hold the clerk had released."""
    judge = TwoHoldsJudge()
    ledger = release_invoice(held(judge, "A"), release(["PRICE_MISMATCH:1:unit_price"]), judge, "automatic").ledger
    ledger = submit_invoice(ledger, submission("B"), FakeJudge(), "automatic").ledger  # B at the bot
    waiting = recheck_held(ledger, changed(), FakeJudge(lets_pass=frozenset({"A"})), "automatic")
    assert statuses(waiting.emitted) == [("A", "waiting_for_po")]
    undone = recheck_held(waiting.ledger, changed("sampro:PO-1:2"), judge, "automatic")
    freed = complete_rpa(undone.ledger, completion("B"), judge, "automatic")
    assert statuses(freed.emitted) == [("B", "entered"), ("A", "manual_review")]
    (held_again,) = [m for m in freed.emitted if m.invoice_id == "A"]
    assert isinstance(held_again, StatusChanged) and held_again.reason.startswith("Judged again at its turn, its "
                                                                                  "findings are as they were")
    kept = freed.ledger.records["A@v1"]
    assert kept.verdict == ledger.records["A@v1"].verdict and kept.released_holds == ["PRICE_MISMATCH:1:unit_price"]
    assert kept.status is InvoiceStatus.MANUAL_REVIEW and kept.recheck_for is None and freed.ledger.parked == []


def test_an_invoice_reprocessed_under_other_rules_behind_the_po_is_judged_anew_at_its_turn():
    """A reprocess judges every held invoice anew under the rules in force, its findings as holds
    anew, also one that waits for the PO, whose findings are as they were."""
    judge = TwoHoldsJudge()
    ledger = release_invoice(held(judge, "A"), release(["PRICE_MISMATCH:1:unit_price"]), judge, "automatic").ledger
    ledger = submit_invoice(ledger, submission("B"), FakeJudge(), "automatic").ledger  # B at the bot
    upgraded = TwoHoldsJudge()
    upgraded.rules_version = "next+tol"
    parked = submit_invoice(ledger, submission("A", expect="manual_review"), upgraded, "automatic")
    assert statuses(parked.emitted) == [("A", "waiting_for_po")]
    freed = complete_rpa(parked.ledger, completion("B"), upgraded, "automatic")
    assert statuses(freed.emitted) == [("B", "entered"), ("A", "manual_review")]
    assert isinstance(freed.emitted[1], Verdict) and freed.emitted[1].rules_version == "next+tol"
    assert freed.ledger.records["A@v1"].released_holds == []


class FutureDateJudge(TwoHoldsJudge):
    """PRICE_MISMATCH on line 1 and a future date, the latter worded as the rules of `wording` did."""

    WORDING = {"2026.12.11": ("<= 2026-11-26", "Invoice dated 2026-12-05, in the future (today is 2026-11-25, "
                                               "2026-11-26 east of UTC)."),
               "2026.12.12": ("not after tomorrow", "Invoice dated 2026-12-05, in the future (UTC, a day ahead "
                                                    "east of it).")}

    def __init__(self, wording: str) -> None:
        super().__init__()
        self.rules_version = wording
        self.expected, self.message = self.WORDING[wording]

    def decide(self, submission: InvoiceSubmitted, in_flight: dict[str, Decimal]) -> Verdict:
        verdict = super().decide(submission, in_flight)
        dated = Finding(code="INVOICE_DATE_INVALID", severity=Severity.WARNING, field="invoice_date",
                        expected=self.expected, actual="2026-12-05", message=self.message)
        return verdict.model_copy(update={"reasons": [verdict.reasons[0], dated]})


def test_a_future_date_held_under_the_rules_that_named_the_day_reads_alike_under_these():
    """Rules 2026.12.12 stopped naming the day of the judging in a future date's finding: compared
    as worded before, the first Sampro change after the upgrade judged the invoice anew and took back
    the price hold the clerk had released, and the date's release read otherwise at hand-over."""
    before = FutureDateJudge("2026.12.11")
    ledger = release_invoice(held(before, "A"), release(["PRICE_MISMATCH:1:unit_price"]), before, "automatic").ledger
    now = FutureDateJudge("2026.12.12")
    again = recheck_held(ledger, changed(), now, "automatic")
    assert again.emitted == [] and again.ledger.records["A@v1"].released_holds == ["PRICE_MISMATCH:1:unit_price"]
    dated = release(["INVOICE_DATE_INVALID::invoice_date"], command_id="r2", reason_code=None)
    assert statuses(release_invoice(again.ledger, dated, now, "automatic").emitted) == [
        ("A", "released"), ("A", "rpa_request"), ("A", "sent_to_rpa")]



# 7 of AC-100 invoiced on PO-5001's line 1, which has 5 open, at 15.60 where the PO says 15.50: held
# by PRICE_MISMATCH and QUANTITY_EXCEEDS_OPEN. A 5 % quantity tolerance (0.25 of 5) still holds the 7.
SEVEN_ON_FIVE = InvoiceSubmitted(
    invoice_id="A", version=1, po_number="PO-5001", received_at=NOW, document=invoice(
        invoice_id="A", tax_amount="9.76", total_amount="141.71",
        lines=[{"line_no": 1, "part_number": "AC-100", "quantity": "7", "unit_price": "15.60", "amount": "109.20"},
               {"line_no": 2, "part_number": "FL-200", "quantity": "3", "unit_price": "4.25", "amount": "12.75"}]))
BOTH_HOLDS = ["PRICE_MISMATCH:1:unit_price", "QUANTITY_EXCEEDS_OPEN:1:quantity#po1"]


def quantity_rules(quantity_pct: str = "0", judge: type[RulesJudge] = RulesJudge) -> RulesJudge:
    return judge(PurchaseOrder.model_validate(PO), [], Policy(default=Tolerance(quantity_pct=Decimal(quantity_pct))),
                 NOW)


class QuantityWrittenAsBefore(RulesJudge):
    """The rules as before 2026.12.14 under a 5 % quantity tolerance: the quantity in the digits its
    arithmetic left ("7.00" of 7, from the tolerance's 0.25)."""

    def decide(self, submission: InvoiceSubmitted, in_flight: dict[str, Decimal]) -> Verdict:
        verdict = super().decide(submission, in_flight)
        reasons = [reason.model_copy(update={"actual": "7.00", "message": reason.message.replace(": 7 ", ": 7.00 ")})
                   if reason.code == "QUANTITY_EXCEEDS_OPEN" else reason for reason in verdict.reasons]
        return verdict.model_copy(update={"reasons": reasons, "rules_version": "2026.12.13+tol.5e562ee6"})


def held_for_price_and_quantity(judge: RulesJudge) -> PurchaseOrderLedger:
    outcome = submit_invoice(PurchaseOrderLedger(po_number="PO-5001"), SEVEN_ON_FIVE, judge, "automatic")
    (verdict,) = outcome.emitted
    assert [hold.id for hold in holds_of(verdict.reasons)] == BOTH_HOLDS
    return outcome.ledger


def on_po_5001(message):
    return message.model_copy(update={"po_number": "PO-5001"})


@pytest.mark.parametrize("judged_by", ["exact", "written-as-before"])
def test_a_quantity_hold_released_stays_released_under_a_quantity_tolerance_that_still_finds_it(judged_by):
    """AP added a 5 % quantity tolerance after the clerk released the holds: at the invoice's turn at
    the bot the rules found the same 7 on 5 open, written "7.00" (the tolerance's digits), and the
    release of "7" read otherwise: held again. So for a verdict written so before rules 2026.12.14."""
    before = quantity_rules() if judged_by == "exact" else quantity_rules("5", QuantityWrittenAsBefore)
    outcome = release_invoice(held_for_price_and_quantity(before), on_po_5001(release(BOTH_HOLDS)),
                              quantity_rules("5"), "automatic")
    assert statuses(outcome.emitted) == [("A", "released"), ("A", "rpa_request"), ("A", "sent_to_rpa")]


@pytest.mark.parametrize("judged_by", ["exact", "written-as-before"])
def test_a_change_of_nothing_the_findings_read_under_a_quantity_tolerance_keeps_the_price_release(judged_by):
    """The same findings under a 5 % quantity tolerance were a new verdict ("7.00" where it read
    "7"), and the price hold the clerk had released was a hold again at the next Sampro change."""
    before = quantity_rules() if judged_by == "exact" else quantity_rules("5", QuantityWrittenAsBefore)
    ledger = release_invoice(held_for_price_and_quantity(before), on_po_5001(release(BOTH_HOLDS[:1])), before,
                             "automatic").ledger
    again = recheck_held(ledger, on_po_5001(changed()), quantity_rules("5"), "automatic")
    assert again.emitted == [] and again.ledger.records["A@v1"].released_holds == BOTH_HOLDS[:1]

def test_while_the_po_is_at_the_bot_a_change_that_does_not_clear_leaves_the_invoice_in_aps_queue():
    judge = PricingJudge()
    ledger = submit_invoice(held(judge, "B"), submission("A"), judge, "automatic").ledger  # A at the bot
    outcome = recheck_held(ledger, changed(), PricingJudge(price="15.25"), "automatic")
    assert outcome.ledger.parked == [] and outcome.ledger.records["B@v1"].status is InvoiceStatus.MANUAL_REVIEW


def test_an_invoice_the_rules_fail_on_when_the_po_frees_is_bad_invoice_and_the_po_goes_on():
    """A's completion frees the PO, and the rules fail on B, parked behind it: the completion was
    dead-lettered with the failure, A stayed at the bot in the ledger, and every later invoice of
    the PO parked for good."""
    judge = FakeJudge(fails_on=frozenset({"B"}))
    ledger, _ = run(PurchaseOrderLedger(po_number="PO-1"),
                    *[lambda ledger, i=i: submit_invoice(ledger, submission(i), judge, "automatic") for i in "ABC"])
    outcome = complete_rpa(ledger, completion("A"), judge, "automatic")
    assert statuses(outcome.emitted) == [("A", "entered"), ("B", "bad_invoice"), ("C", "ready_to_process"),
                                         ("C", "rpa_request"), ("C", "sent_to_rpa")]
    assert outcome.unjudged == ["B@v1 (made bad_invoice): ArithmeticError: no rule foresaw B"]
    bad = next(m for m in outcome.emitted if isinstance(m, Verdict) and m.invoice_id == "B")
    assert bad.reasons[0].message == "ArithmeticError: no rule foresaw B (dead-lettered: False)"
    assert outcome.ledger.holding == ["C@v1"] and outcome.ledger.parked == []


@pytest.mark.parametrize(("newest", "noted", "withdrawn"), [
    ("sent_to_rpa", True, True),  # version 2 at the bot, withdrawn there: its note is recorded
    ("sent_to_rpa", False, False),
    ("withdrawn", False, True),
    ("entered", False, False),  # the hand-off gate stops it (`entered_as_another_version`)
], ids=["at-bot-withdrawn", "at-bot", "withdrawn", "entered"])
def test_a_hand_off_whose_invoice_the_vendor_withdrew_in_a_newer_version_at_the_bot_is_not_emailed(
        newest, noted, withdrawn):
    """The mail flow looked only for a newest version processscheduler showed withdrawn: one at the
    bot, noted withdrawn there, let version 1's email go."""
    from connectors.ports import InvoiceVersionAt
    from rules.po_ledger import withdrawal_notes, withdrawn_in_a_newer_version

    request = RpaRequest(invoice_id="A", invoice_version=1, po_number="PO-1", payload=payload("A", 1),
                         requested_at=AT)
    versions = [InvoiceVersionAt("A", 1, "PO-1", "sent_to_rpa"), InvoiceVersionAt("A", 2, "PO-2", newest)]
    notes = withdrawal_notes([request], versions)
    assert set(notes) == {("A", 1), ("A", 2)} if newest == "sent_to_rpa" else {("A", 1)}
    at_the_bot = {("A", 2)} if noted else set()
    assert withdrawn_in_a_newer_version([request], versions, at_the_bot) == ({("A", 1)} if withdrawn else set())
