"""The RPA bot's callbacks: 401 without the token, 404 unknown, 409 not at the bot, 202 published
once per attempt with a deterministic event id, 202 'already recorded' for a repeat."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest

from api.services import NotNow, record_rpa_outcome
from connectors.po_commands import InMemoryPurchaseOrderCommands
from connectors.rpa_mail import InMemorySentLog
from connectors.scheduler.read_model_memory import InMemoryInvoiceReadModel
from rules.lifecycle import InvoiceStatus, InvoiceWithdrawn
from rules.models import CompletionOutcome, RpaCompletion
from tests.unit.api.conftest import change, freight, verdict
from tests.unit.rules.builders import invoice
from tests.unit.streams.conftest import AT, make_worker, ready_invoice

SUCCESS = "/rpa/invoices/{}/success"
FAILURE = "/rpa/invoices/{}/failure"


def test_no_token_or_a_wrong_one_is_401(api):
    entered = {"invoice_version": 1, "sampro_invoice_id": "S-1"}
    assert api.client.post(SUCCESS.format("MP-1"), json=entered).status_code == 401
    wrong = api.client.post(SUCCESS.format("MP-1"), json={"invoice_version": 1, "sampro_invoice_id": "S-1"},
                            headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.headers["WWW-Authenticate"] == "Bearer"
    clerk = api.client.post(SUCCESS.format("MP-1"), json={"invoice_version": 1, "sampro_invoice_id": "S-1"},
                            **api.as_clerk())
    assert clerk.status_code == 401 and api.commands.published == []


def test_an_invoice_processscheduler_does_not_know_is_404(api):
    for invoice_id, version in (("MP-404", 1), ("MP-1", 2)):
        body = {"invoice_version": version, "sampro_invoice_id": "S"}
        answer = api.client.post(SUCCESS.format(invoice_id), json=body, **api.as_bot())
        assert answer.status_code == 404 and invoice_id in answer.json()["detail"]
    assert api.commands.published == []


def test_success_at_the_bot_is_published_on_the_po_stream_with_the_attempts_event_id(api):
    answer = api.client.post(SUCCESS.format("MP-1"), json={"invoice_version": 1, "sampro_invoice_id": "S-1"},
                             **api.as_bot())
    assert answer.status_code == 202
    assert answer.json()["event_id"] == "rpa:MP-1:v1:attempt1:success:S-1"
    assert answer.json()["already_recorded"] is False
    ((topic, key, completion),) = api.commands.published
    assert (topic, key) == ("rpa.completions", "PO-5001") and isinstance(completion, RpaCompletion)
    assert completion.outcome is CompletionOutcome.SUCCESS and completion.sampro_invoice_id == "S-1"
    assert completion.attempt is None  # the bot named none: the PO agent takes the last, as the API did


def test_the_same_report_twice_before_it_is_applied_carries_the_same_event_id(api):
    for _ in range(2):
        api.client.post(FAILURE.format("MP-1"), json={"invoice_version": 1, "error": "screen timed out"},
                        **api.as_bot())
    first, second = (command for _, _, command in api.commands.published)
    assert first.event_id == second.event_id == "rpa:MP-1:v1:attempt1:failure"
    assert first.error == "screen timed out" and first.outcome is CompletionOutcome.FAILURE


def test_an_entry_reported_after_a_failure_of_the_same_attempt_is_no_repeat_of_it(api):
    """Both reach the PO agent while processscheduler still shows the invoice at the bot: under one
    event id, it took the entry for the failure again and dropped it, and Sampro held an entry
    that AP never heard of."""
    api.client.post(FAILURE.format("MP-1"), json={"invoice_version": 1, "error": "screen timed out"},
                    **api.as_bot())
    api.client.post(SUCCESS.format("MP-1"), json={"invoice_version": 1, "sampro_invoice_id": "S-1"}, **api.as_bot())
    failure, entry = (command for _, _, command in api.commands.published)
    assert (failure.event_id, entry.event_id) == ("rpa:MP-1:v1:attempt1:failure", "rpa:MP-1:v1:attempt1:success:S-1")


def test_an_outcome_already_recorded_is_202_and_nothing_is_published(api):
    answer = api.client.post(SUCCESS.format("MP-4"), json={"invoice_version": 1, "sampro_invoice_id": "S-4"},
                             **api.as_bot())
    assert answer.status_code == 202 and answer.json()["already_recorded"] is True
    assert "already recorded" in answer.json()["detail"] and api.commands.published == []


def test_an_entry_of_an_entered_invoice_under_another_sampro_id_is_409_and_published_for_ap_to_see(api):
    """Answered as a repeat ("already recorded") and dropped, a second entry in Sampro went unheard of."""
    answer = api.client.post(SUCCESS.format("MP-4"), json={"invoice_version": 1, "sampro_invoice_id": "S-9"},
                             **api.as_bot())
    assert answer.status_code == 409 and answer.json()["current_status"] == "entered"
    assert "S-4" in answer.json()["detail"] and "S-9" in answer.json()["detail"]
    ((_, _, second),) = api.commands.published
    assert second.sampro_invoice_id == "S-9" and second.event_id == "rpa:MP-4:v1:attempt1:success:S-9"
    assert second.entered_as == "S-4"


def test_an_entry_under_the_sampro_invoice_another_invoice_was_entered_as_is_409_and_taken_with_a_note(api):
    """The bot says it entered MP-1 as S-4, which MP-4 is recorded entered as: it most likely misread the
    id. Taken for a failure, MP-1 (in Sampro) was given up: a newer version parked behind it went to the
    bot, paid twice; taken unnoted, processscheduler showed two invoices as one Sampro invoice."""
    for _ in range(2):  # a report sent again is the same entry, applied once
        answer = api.client.post(SUCCESS.format("MP-1"), json={"invoice_version": 1, "sampro_invoice_id": "S-4"},
                                 **api.as_bot())
        assert answer.status_code == 409 and answer.json()["current_status"] == "sent_to_rpa"
        assert "MP-4 v1" in answer.json()["detail"] and "S-4" in answer.json()["detail"]
    first, again = api.commands.published
    assert first == again
    topic, key, entered = first
    assert (topic, key) == ("rpa.completions", "PO-5001") and entered.outcome is CompletionOutcome.SUCCESS
    assert entered.event_id == "rpa:MP-1:v1:attempt1:success:S-4" and entered.sampro_invoice_id == "S-4"
    assert "as Sampro invoice S-4, which MP-4 v1 is recorded entered as" in entered.error
    own = api.client.post(SUCCESS.format("MP-4"), json={"invoice_version": 1, "sampro_invoice_id": "S-4"},
                          **api.as_bot())
    assert own.status_code == 202 and own.json()["already_recorded"] is True  # its own entry, not another's


def test_a_late_entry_under_another_invoices_sampro_invoice_is_409_and_taken_with_a_note(api):
    api.scheduler.record([change("MP-1", InvoiceStatus.RPA_FAILED, "rpa:MP-1:v1:attempt1:failure")])
    answer = api.client.post(SUCCESS.format("MP-1"), json={"invoice_version": 1, "sampro_invoice_id": "S-4"},
                             **api.as_bot())
    assert answer.status_code == 409 and answer.json()["current_status"] == "rpa_failed"
    ((_, _, entered),) = api.commands.published
    assert entered.outcome is CompletionOutcome.SUCCESS and "MP-4 v1" in answer.json()["detail"] + entered.error


class _Reports:
    """The RPA bot's reports through the API, applied by the worker."""

    def __init__(self, tmp_path) -> None:
        self.worker = make_worker(tmp_path)
        self.commands = InMemoryPurchaseOrderCommands(self.worker.pipeline.topics.completions,
                                                      self.worker.pipeline.topics.commands)

    def entered(self, invoice_id: str, sampro_invoice_id: str, version: int = 1) -> None:
        worker = self.worker
        try:
            record_rpa_outcome(InMemoryInvoiceReadModel(worker.scheduler), InMemorySentLog(), self.commands,
                               lambda: AT, invoice_id=invoice_id, version=version, outcome=CompletionOutcome.SUCCESS,
                               sampro_invoice_id=sampro_invoice_id)
        finally:
            for topic, key, command in self.commands.published:
                worker.put(topic, key, worker.codec.encode(command))
            self.commands.published.clear()
            worker.run()

    def last_step(self, invoice_id: str) -> dict:
        return self.worker.scheduler.history(invoice_id)[-1]


MISREAD = ("The RPA bot reported entering it as Sampro invoice S-100, which MP-1 v1 is recorded entered as: one of "
           "the two is recorded under the wrong Sampro invoice; find both in Sampro and correct the one the bot "
           "misread.")


def test_an_entry_under_another_invoices_sampro_invoice_is_recorded_entered_with_a_note_and_the_po_goes_on(tmp_path):
    """MP-2 reported entered as S-100, which MP-1 was entered as, was recorded rpa_failed: the bot had
    entered it (it misread the id), and AP, told to release it to the bot again, had it entered twice."""
    reports = _Reports(tmp_path)
    for invoice_id in ("MP-1", "MP-2", "MP-3"):
        reports.worker.submit(ready_invoice(invoice_id))
    reports.worker.run()
    reports.entered("MP-1", "S-100")
    for _ in range(2):  # the report again is applied once
        with pytest.raises(NotNow, match="MP-1 v1"):
            reports.entered("MP-2", "S-100")
    assert reports.worker.statuses() == {"MP-1": "entered", "MP-2": "entered", "MP-3": "sent_to_rpa"}
    assert [(step["status"], step["reason"]) for step in reports.worker.scheduler.history("MP-2")][-1:] == [
        ("entered", MISREAD)]


def test_a_misread_entry_of_a_version_the_vendor_replaced_sends_the_newer_version_to_no_one(tmp_path):
    """MP-2 v1 at the bot, the vendor's v2 parked behind it: the bot's entry of v1 as S-100, MP-1's, was
    taken for a failure, and v2 was emailed to the bot at once: MP-2 paid twice."""
    reports = _Reports(tmp_path)
    for invoice_id in ("MP-1", "MP-2"):
        reports.worker.submit(ready_invoice(invoice_id))
    reports.worker.run()
    reports.entered("MP-1", "S-100")
    reports.worker.submit(ready_invoice("MP-2"), version=2)
    reports.worker.run()
    with pytest.raises(NotNow):
        reports.entered("MP-2", "S-100")
    assert [(m.invoice_id, m.invoice_version) for m in reports.worker.mailer.sent] == [("MP-1", 1), ("MP-2", 1)]
    rows = {(row["invoice_id"], row["invoice_version"]): row["status"] for row in reports.worker.scheduler.rows()}
    assert rows == {("MP-1", 1): "entered", ("MP-2", 1): "entered", ("MP-2", 2): "manual_review"}
    (entered,) = [step for step in reports.worker.scheduler.history("MP-2") if step["status"] == "entered"]
    assert entered["reason"] == MISREAD


def test_a_misread_entry_of_a_version_the_vendor_withdrew_asks_for_a_credit_note(tmp_path):
    """Taken for a failure, it was recorded "withdrawn ... the RPA bot did not enter it": the credit note
    for the invoice in Sampro was never asked for."""
    reports = _Reports(tmp_path)
    for invoice_id in ("MP-1", "MP-2"):
        reports.worker.submit(ready_invoice(invoice_id))
    reports.worker.run()
    reports.entered("MP-1", "S-100")
    reports.worker.put(reports.worker.pipeline.topics.invoices, "PO-5001", reports.worker.codec.encode(InvoiceWithdrawn(
        event_id="w-MP-2", invoice_id="MP-2", version=1, po_number="PO-5001", withdrawn_at=AT)))
    reports.worker.run()
    with pytest.raises(NotNow):
        reports.entered("MP-2", "S-100")
    step = reports.last_step("MP-2")
    assert step["status"] == "entered"
    assert step["reason"] == ("Entered although the vendor had withdrawn it: ask the vendor for a credit note. "
                              + MISREAD)


def test_a_misread_entry_reported_after_its_failure_is_recorded_entered_with_the_note(tmp_path):
    """The bot failed MP-2, then reported it entered as S-100, MP-1's: 409 and nothing recorded, and MP-2,
    in Sampro, stayed rpa_failed for AP to release to the bot again."""
    reports = _Reports(tmp_path)
    for invoice_id in ("MP-1", "MP-2"):
        reports.worker.submit(ready_invoice(invoice_id))
    reports.worker.run()
    reports.entered("MP-1", "S-100")
    record_rpa_outcome(InMemoryInvoiceReadModel(reports.worker.scheduler), InMemorySentLog(), reports.commands,
                       lambda: AT, invoice_id="MP-2", version=1, outcome=CompletionOutcome.FAILURE, error="timed out")
    for topic, key, command in reports.commands.published:
        reports.worker.put(topic, key, reports.worker.codec.encode(command))
    reports.commands.published.clear()
    reports.worker.run()
    with pytest.raises(NotNow):
        reports.entered("MP-2", "S-100")
    step = reports.last_step("MP-2")
    assert (step["status"], step["reason"]) == (
        "entered", f"The RPA bot reported this entry after it had reported a failure. {MISREAD}")


def test_another_outcome_or_an_invoice_not_at_the_bot_is_409_with_the_status(api):
    failure = api.client.post(FAILURE.format("MP-4"), json={"invoice_version": 1, "error": "x"}, **api.as_bot())
    assert failure.status_code == 409 and failure.json()["current_status"] == "entered"
    review = api.client.post(SUCCESS.format("MP-3"), json={"invoice_version": 1, "sampro_invoice_id": "S"},
                             **api.as_bot())
    assert review.status_code == 409 and review.json()["current_status"] == "manual_review"
    assert api.commands.published == []


@pytest.mark.parametrize("since", [[], [InvoiceStatus.RELEASED]])
def test_an_entry_reported_after_the_failure_was_recorded_is_published(api, since):
    """Failed still, or released by AP to be sent again and not sent yet: Sampro holds it."""
    api.scheduler.record([change("MP-1", InvoiceStatus.RPA_FAILED, "rpa:MP-1:v1:attempt1:failure"),
                          *(change("MP-1", status, "release:1", actor="ana", reason="retry") for status in since)])
    answer = api.client.post(SUCCESS.format("MP-1"), json={"invoice_version": 1, "sampro_invoice_id": "S-1"},
                             **api.as_bot())
    assert answer.status_code == 202 and answer.json()["event_id"] == "rpa:MP-1:v1:attempt1:success:S-1"
    ((_, _, entry),) = api.commands.published
    assert entry.outcome is CompletionOutcome.SUCCESS
    failure = api.client.post(FAILURE.format("MP-1"), json={"invoice_version": 1, "error": "x"}, **api.as_bot())
    assert failure.status_code == (409 if since else 202)  # released: no longer failed either


@pytest.mark.parametrize("given_up", [InvoiceStatus.SUPERSEDED, InvoiceStatus.WITHDRAWN])
def test_an_entry_reported_after_the_failed_version_was_given_up_is_published(api, given_up):
    """Superseded by the vendor's newer version, or withdrawn, once the bot had failed it: a 409 and
    nothing published, though Sampro held the entry; the newer version was entered beside it."""
    api.scheduler.record([change("MP-1", InvoiceStatus.RPA_FAILED, "rpa:MP-1:v1:attempt1:failure"),
                          change("MP-1", given_up, "given-up", reason="version 2 replaces it")])
    answer = api.client.post(SUCCESS.format("MP-1"), json={"invoice_version": 1, "sampro_invoice_id": "S-1"},
                             **api.as_bot())
    assert answer.status_code == 202 and answer.json()["event_id"] == "rpa:MP-1:v1:attempt1:success:S-1"
    ((_, _, entry),) = api.commands.published
    assert entry.outcome is CompletionOutcome.SUCCESS and entry.sampro_invoice_id == "S-1"


def test_an_entry_of_a_version_given_up_before_the_bot_had_it_is_409(api):
    api.scheduler.record([change("MP-3", InvoiceStatus.SUPERSEDED, "v2")])  # held for AP, never at the bot
    answer = api.client.post(SUCCESS.format("MP-3"), json={"invoice_version": 1, "sampro_invoice_id": "S-9"},
                             **api.as_bot())
    assert answer.status_code == 409 and answer.json()["current_status"] == "superseded"
    assert api.commands.published == []


def _emailed_again_behind_processscheduler(api, shown: list[InvoiceStatus]) -> None:
    """MP-1's first hand-off failed and AP released it: the second is emailed, and processscheduler
    shows `shown` of that since the first went (the sink writes behind the mailer)."""
    api.scheduler.record([change("MP-1", status, f"step-{status.value}", actor="ana", reason="retry")
                          for status in shown])
    api.sent_log.hand_offs = [("MP-1", 1, 1), ("MP-1", 1, 2)]


@pytest.mark.parametrize("shown", [
    [InvoiceStatus.RPA_FAILED, InvoiceStatus.RELEASED],  # the second hand-off not recorded yet: it was a 409
    [],  # the first's failure neither: the second's report was taken for the first's, a repeat the PO agent drops
])
def test_the_outcome_of_a_hand_off_processscheduler_does_not_show_yet_is_the_one_the_bot_names(api, shown):
    _emailed_again_behind_processscheduler(api, shown)
    answer = api.client.post(FAILURE.format("MP-1"), json={"invoice_version": 1, "attempt": 2, "error": "x"},
                             **api.as_bot())
    assert answer.status_code == 202 and answer.json()["event_id"] == "rpa:MP-1:v1:attempt2:failure"
    ((_, _, completion),) = api.commands.published
    assert completion.event_id == "rpa:MP-1:v1:attempt2:failure" and completion.attempt == 2


def test_a_report_naming_no_hand_off_while_processscheduler_is_behind_the_mailbox_is_503_to_try_again(api):
    """Taken for the hand-off the sent log has, a first hand-off's failure reported again (its 202
    lost) failed the second while the bot still had it."""
    _emailed_again_behind_processscheduler(api, [InvoiceStatus.RPA_FAILED, InvoiceStatus.RELEASED])
    answer = api.client.post(FAILURE.format("MP-1"), json={"invoice_version": 1, "error": "x"}, **api.as_bot())
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "5" and api.commands.published == []


def test_a_first_hand_offs_failure_reported_again_after_the_second_went_is_spent(api):
    _emailed_again_behind_processscheduler(api, [InvoiceStatus.RPA_FAILED, InvoiceStatus.RELEASED])
    answer = api.client.post(FAILURE.format("MP-1"), json={"invoice_version": 1, "attempt": 1, "error": "x"},
                             **api.as_bot())
    assert answer.status_code == 202 and answer.json()["already_recorded"] is True and api.commands.published == []


def test_a_hand_off_that_was_never_sent_is_409(api):
    answer = api.client.post(SUCCESS.format("MP-1"), json={"invoice_version": 1, "attempt": 2,
                                                           "sampro_invoice_id": "S-1"}, **api.as_bot())
    assert answer.status_code == 409 and "1 time(s), not 2" in answer.json()["detail"]


def test_a_report_on_an_email_whose_verdict_processscheduler_has_not_recorded_yet_is_503_to_try_again(api):
    """It was a 404, "no such invoice", and a bot does not report again on an invoice that is not there."""
    api.sent_log.hand_offs = [("MP-9", 1, 1)]
    answer = api.client.post(SUCCESS.format("MP-9"), json={"invoice_version": 1, "sampro_invoice_id": "S-9"},
                             **api.as_bot())
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "5" and "again" in answer.json()["detail"]
    unknown = api.client.post(SUCCESS.format("MP-8"), json={"invoice_version": 1, "sampro_invoice_id": "S-8"},
                              **api.as_bot())
    assert unknown.status_code == 404 and api.commands.published == []


@pytest.mark.parametrize("emailed", [[("MP-1", 1, 1)], []])  # the sent log has it; or one written before it
def test_a_note_on_the_hand_off_is_no_hand_off_of_its_own(api, emailed):
    """The vendor withdrew MP-1 while the bot had it: counted as a second hand-off, the note made
    the bot's failure of the first look spent (202 already_recorded), and the PO stayed held."""
    api.scheduler.record([change("MP-1", InvoiceStatus.SENT_TO_RPA, "withdrawn-at-rpa",
                                 reason="The vendor withdrew this invoice while the RPA bot has it.")])
    api.sent_log.hand_offs = emailed
    answer = api.client.post(FAILURE.format("MP-1"), json={"invoice_version": 1, "attempt": 1, "error": "x"},
                             **api.as_bot())
    assert answer.status_code == 202 and answer.json()["already_recorded"] is False
    assert answer.json()["event_id"] == "rpa:MP-1:v1:attempt1:failure" and len(api.commands.published) == 1


def test_a_resent_invoice_is_a_new_attempt(api):
    api.scheduler.record([change("MP-1", InvoiceStatus.RPA_FAILED, "rpa:MP-1:v1:attempt1"),
                          change("MP-1", InvoiceStatus.RELEASED, "release:1", actor="ana", reason="retry"),
                          change("MP-1", InvoiceStatus.SENT_TO_RPA, "release:1")])
    answer = api.client.post(SUCCESS.format("MP-1"), json={"invoice_version": 1, "sampro_invoice_id": "S-1"},
                             **api.as_bot())
    assert answer.json()["event_id"] == "rpa:MP-1:v1:attempt2:success:S-1"


def test_an_empty_report_names_the_field(api):
    answer = api.client.post(SUCCESS.format("MP-1"), json={"invoice_version": 1, "sampro_invoice_id": " "},
                             **api.as_bot())
    assert answer.status_code == 422
    (error,) = answer.json()["errors"]
    assert error["field"] == "body.sampro_invoice_id" and error["value"] == " "
    missing = api.client.post(FAILURE.format("MP-1"), json={"invoice_version": 1, }, **api.as_bot())
    assert missing.status_code == 422 and missing.json()["errors"][0]["field"] == "body.error"


def test_a_report_with_thousands_of_unknown_keys_is_a_short_422_that_counts_the_rest(api):
    """Each error was listed, each field's whole name with it: 6,000 unknown keys in a 59 KB failure
    report were answered in 455 KB."""
    report = {"invoice_version": 1, "error": "timeout", **{f"k{n}": 1 for n in range(6000)}}
    answer = api.client.post(FAILURE.format("MP-1"), json=report, **api.as_bot())
    problem = answer.json()
    assert answer.status_code == 422 and len(answer.content) < 10_000
    assert len(problem["errors"]) == 20 and problem["errors_not_listed"] == 5980
    assert problem["errors"][0]["field"] == "body.k0"
    long_name = api.client.post(FAILURE.format("MP-1"), json={"invoice_version": 1, "error": "timeout", "x" * 5000: 1},
                                **api.as_bot()).json()
    (error,) = long_name["errors"]
    assert error["field"] == "body." + "x" * 192 + "..." and long_name["errors_not_listed"] == 0


@pytest.mark.parametrize("sent", ["S-1 ", " S-1", "S-1\n", "\tS-1\r\n"])
def test_a_sampro_id_with_blanks_around_it_is_the_id_without_them(api, sent):
    """Taken as sent, "S-1 " was recorded, and the bot's report again as "S-1" was told it was a
    second entry: AP was told to reverse one of two entries in Sampro, which held one."""
    answer = api.client.post(SUCCESS.format("MP-1"), json={"invoice_version": 1, "sampro_invoice_id": sent},
                             **api.as_bot())
    assert answer.status_code == 202 and answer.json()["event_id"] == "rpa:MP-1:v1:attempt1:success:S-1"
    ((_, _, entry),) = api.commands.published
    assert entry.sampro_invoice_id == "S-1"
    entered = api.client.post(SUCCESS.format("MP-4"), json={"invoice_version": 1,  # recorded entered as S-4
                                                            "sampro_invoice_id": sent.replace("S-1", "S-4")},
                              **api.as_bot())
    assert entered.status_code == 202 and entered.json()["already_recorded"] is True


@pytest.mark.parametrize(("sent", "character"), [
    ("\u200bS-1", "U+200B"),  # a zero-width space pasted from a web page
    ("S-\u200d1", "U+200D"), ("S-1\u00ad", "U+00AD"), ("\ufeffS-1", "U+FEFF"), ("S-\u202e1", "U+202E"),
    ("S-1\u00a0", "U+00A0"), ("S-\n1", "U+000A"), ("S-\x071", "U+0007"), ("S-1\u2028", "U+2028"),
    # each a format or private-use character, a variation selector or a filler: nothing to see either
    ("S-1\U000e0041", "U+E0041"), ("S-\ufff91", "U+FFF9"), ("S-\U0001d1731", "U+1D173"), ("S-1\ufe0f", "U+FE0F"),
    ("S-1\U000e0100", "U+E0100"), ("S-\u034f1", "U+034F"), ("\u3164S-1", "U+3164"), ("S-1\u2800", "U+2800"),
    ("S-\u180b1", "U+180B"), ("S-\ue0001", "U+E000"), ("S-1\U0010fffd", "U+10FFFD"),
])
def test_a_sampro_id_with_a_control_or_invisible_character_is_422_naming_it(api, sent, character):
    """Taken, "\u200bS-1" was another Sampro invoice than S-1 to every comparison and the same one
    to whoever read it: the bot's report again was a second entry, and AP reversed one of one."""
    answer = api.client.post(SUCCESS.format("MP-1"), json={"invoice_version": 1, "sampro_invoice_id": sent},
                             **api.as_bot())
    assert answer.status_code == 422
    (error,) = answer.json()["errors"]
    assert error["field"] == "body.sampro_invoice_id" and error["value"] == sent and character in error["message"]
    assert api.commands.published == []


@pytest.mark.parametrize("sent", ["S-1", " S-1\t", "S 1", "Ä-1", "\u200bS-1", "S-\n1", "   ", "S-1\u00a0", "\x9e\x04",
                                  "S-\u2066", "\r\n", "\u3000S", "S-1\U000e0041", "\ufe0f", "S\U000e01efS", "\u115fS",
                                  "S-\U0001d17a", "S\ufffb1", "\uf8ffS", "\ufffdS", "S-\U0001f4c4", "S\u2065",
                                  "S-\U000e0000", "S-\u2800-1", "S-\uffa0"])
def test_the_openapi_document_takes_a_sampro_id_exactly_when_the_api_does(api, sent):
    """The document said any id with a letter in it; the API refused "\x9e\x04" with a 422, and a
    client that checks its requests against the document could not tell."""
    (pattern,) = {api.client.get("/openapi.json").json()["components"]["schemas"]["RpaSuccess"]["properties"]
                  ["sampro_invoice_id"]["pattern"]}
    answer = api.client.post(SUCCESS.format("MP-1"), json={"invoice_version": 1, "sampro_invoice_id": sent},
                             **api.as_bot())
    assert (re.fullmatch(pattern, sent) is not None) == (answer.status_code != 422), answer.json()


def test_kafka_away_is_503_so_the_bot_tries_again(api):
    api.commands.reachable = False
    answer = api.client.post(SUCCESS.format("MP-1"), json={"invoice_version": 1, "sampro_invoice_id": "S-1"},
                             **api.as_bot())
    assert answer.status_code == 503 and "try again" in answer.json()["detail"]


def test_a_sampro_id_longer_than_a_completion_holds_is_422_not_a_lost_report(api):
    """RpaCompletion holds at most 64 characters: a longer id failed after the API had taken it (500)."""
    answer = api.client.post(SUCCESS.format("MP-1"), json={"invoice_version": 1, "sampro_invoice_id": "S" * 65},
                             **api.as_bot())
    assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == "body.sampro_invoice_id"
    assert api.commands.published == []


@pytest.mark.parametrize("version", [True, "1", 1.5, 2_147_483_648, 10**4000])
def test_a_version_that_is_not_a_whole_number_a_record_holds_is_422(api, version):
    answer = api.client.post(SUCCESS.format("MP-1"), json={"invoice_version": version, "sampro_invoice_id": "S-1"},
                             **api.as_bot())
    assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == "body.invoice_version"
    assert api.commands.published == []


def test_an_invoice_id_with_a_slash_is_reached_as_the_bot_sends_it(api):
    """Marketplace ids such as 2026/INV/42 are valid stream keys: %2F is decoded before routing."""
    api.scheduler.record([verdict(invoice(invoice_id="MP/7", invoice_number="INV-7", **freight(7))),
                          change("MP/7", InvoiceStatus.SENT_TO_RPA, "verdict")])
    answer = api.client.post(SUCCESS.format(quote("MP/7", safe="")), json={"invoice_version": 1,
                                                                          "sampro_invoice_id": "S-7"},
                             **api.as_bot())
    assert answer.status_code == 202 and answer.json()["invoice_id"] == "MP/7"
    ((_, _, completion),) = api.commands.published
    assert completion.invoice_id == "MP/7"


def test_a_second_entry_reported_before_processscheduler_shows_the_first_is_published_as_news(api):
    """Both under the attempt's id, the second was taken for a repeat of the first by the PO agent."""
    for sampro_invoice_id in ("S-1", "S-2", "S-2"):
        answer = api.client.post(SUCCESS.format("MP-1"), json={"invoice_version": 1,
                                                               "sampro_invoice_id": sampro_invoice_id}, **api.as_bot())
        assert answer.status_code == 202
    assert [command.event_id for _, _, command in api.commands.published] == [
        "rpa:MP-1:v1:attempt1:success:S-1", "rpa:MP-1:v1:attempt1:success:S-2", "rpa:MP-1:v1:attempt1:success:S-2"]
