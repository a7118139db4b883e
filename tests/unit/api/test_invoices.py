"""AP's reads and overrides: filtered pages, the drill-down, release with a reason, send to the RPA bot."""

from __future__ import annotations

from rules.holds import RPA_FAILURE
from rules.lifecycle import DispatchApproved, InvoiceStatus, ReleaseRequested
from rules.models import Finding, Severity, VerdictStatus
from tests.unit.api.conftest import NOW, PRICE_OFF, change, freight, invoice, verdict


def ids(answer) -> list[str]:
    return [row["invoice_id"] for row in answer.json()["items"]]


def test_the_list_is_newest_first_and_filtered(api):
    everything = api.client.get("/api/invoices", **api.as_viewer())
    assert ids(everything) == ["MP-5", "MP-4", "MP-3", "MP-2", "MP-1"] and everything.json()["total"] == 5
    assert ids(api.client.get("/api/invoices?status=manual_review", **api.as_viewer())) == ["MP-3"]
    assert ids(api.client.get("/api/invoices?reason_code=TOTAL_MISMATCH", **api.as_viewer())) == ["MP-2"]
    page = api.client.get("/api/invoices?limit=2&offset=2", **api.as_viewer()).json()
    assert [r["invoice_id"] for r in page["items"]] == ["MP-3", "MP-2"] and page["total"] == 5
    assert api.client.get(f"/api/invoices?decided_from={NOW.date()}&decided_to={NOW.date()}",
                          **api.as_viewer()).json()["total"] == 5
    assert api.client.get("/api/invoices?decided_to=2026-11-24", **api.as_viewer()).json()["total"] == 0
    swapped = api.client.get("/api/invoices?decided_from=2026-11-30&decided_to=2026-11-01", **api.as_viewer())
    (error,) = swapped.json()["errors"]
    assert swapped.status_code == 422 and (error["field"], error["value"]) == ("query.decided_to", "2026-11-01")
    assert "before decided_from (2026-11-30)" in error["message"]


def test_pages_follow_one_another_by_next_before(api):
    pages, before = [], None
    while True:
        page = api.client.get("/api/invoices?limit=2" + (f"&before={before}" if before else ""),
                              **api.as_viewer()).json()
        pages.append([row["invoice_id"] for row in page["items"]])
        before = page["next_before"]
        if before is None:
            break
    assert pages == [["MP-5", "MP-4"], ["MP-3", "MP-2"], ["MP-1"]]
    for bad in ("0", "x", str(2**31)):
        (error,) = api.client.get(f"/api/invoices?before={bad}", **api.as_viewer()).json()["errors"]
        assert (error["field"], error["value"]) == ("query.before", bad)


def test_a_bad_filter_names_the_field_and_the_value(api):
    answer = api.client.get("/api/invoices?reason_code=NOT_A_RULE", **api.as_viewer())
    (error,) = answer.json()["errors"]
    assert answer.status_code == 422 and (error["field"], error["value"]) == ("query.reason_code", "NOT_A_RULE")
    seconds = api.client.get("/api/invoices?decided_to=0", **api.as_viewer())
    assert seconds.status_code == 422 and "YYYY-MM-DD" in seconds.json()["detail"]
    assert api.client.get("/api/invoices?limit=0", **api.as_viewer()).json()["errors"][0]["field"] == "query.limit"


def test_the_drill_down_lays_the_invoice_beside_the_po_and_shows_the_history(api):
    detail = api.client.get("/api/invoices/MP-3", **api.as_viewer()).json()
    assert detail["status"] == "manual_review" and detail["reason_codes"] == ["PRICE_MISMATCH"]
    first, second = detail["comparison"]["lines"]  # every invoice line, with the PO line of its part
    price = next(f for f in first["fields"] if f["field"] == "unit_price")
    assert (first["line_no"], first["po_line_no"], price["invoice"], price["purchase_order"], price["findings"]) == (
        1, 1, "16.00", "15.50", ["PRICE_MISMATCH"])
    assert (second["po_line_no"], [f["findings"] for f in second["fields"]]) == (2, [[], [], [], []])
    assert [po_line["part_number"] for po_line in detail["po_snapshot"]["lines"]] == ["AC-100", "FL-200"]
    entered = api.client.get("/api/invoices/MP-4", **api.as_viewer()).json()
    assert [h["status"] for h in entered["history"]] == ["ready_to_process", "sent_to_rpa", "entered"]
    assert entered["rpa_payload"]["total_amount"] == "57.29" and entered["sampro_invoice_id"] == "S-4"
    assert {f["field"] for f in entered["comparison"]["lines"][0]["fields"]} == {"part_number", "quantity",
                                                                                   "unit_price", "amount"}


def test_an_unknown_invoice_is_404(api):
    assert api.client.get("/api/invoices/MP-404", **api.as_viewer()).status_code == 404
    assert api.client.get("/api/invoices/MP-3?version=7", **api.as_viewer()).status_code == 404


def test_release_needs_a_reason_and_records_the_signed_in_clerk(api):
    blank = api.client.post("/api/invoices/MP-3/release", json={"invoice_version": 1, "reason": "   "},
                            **api.as_clerk())
    assert blank.status_code == 422 and blank.json()["errors"][0]["field"] == "body.reason"
    missing = api.client.post("/api/invoices/MP-3/release", json={"invoice_version": 1}, **api.as_clerk())
    assert missing.status_code == 422 and api.commands.published == []
    answer = api.client.post("/api/invoices/MP-3/release", json={"invoice_version": 1, "reason": "buyer agreed"},
                             **api.as_clerk())
    assert answer.status_code == 202
    ((topic, key, command),) = api.commands.published
    assert (topic, key) == ("po.commands", "PO-5001") and isinstance(command, ReleaseRequested)
    assert (command.user, command.reason, command.invoice_version, command.issued_at) == ("ana", "buyer agreed", 1, NOW)
    # By name, the holds the clerk saw: judged again before the command comes, a hold no one saw stays.
    assert command.holds == ["PRICE_MISMATCH:1:unit_price"]


def test_only_a_held_invoice_of_its_newest_version_is_released(api):
    at_bot = api.client.post("/api/invoices/MP-1/release", json={"invoice_version": 1, "reason": "x"}, **api.as_clerk())
    assert at_bot.status_code == 409 and at_bot.json()["current_status"] == "sent_to_rpa"
    api.scheduler.record([verdict(invoice(invoice_id="MP-3", version=2, invoice_number="INV-3")),
                          change("MP-3", InvoiceStatus.SENT_TO_RPA, "verdict", version=2)])
    old = api.client.post("/api/invoices/MP-3/release", json={"invoice_version": 1, "reason": "x"}, **api.as_clerk())
    assert old.status_code == 409 and "replaced by version 2" in old.json()["detail"]
    assert api.commands.published == []


def test_a_ready_invoice_is_sent_to_the_rpa_bot_by_a_clerk(api):
    answer = api.client.post("/api/invoices/MP-5/send-to-rpa", json={"invoice_version": 1}, **api.as_clerk())
    assert answer.status_code == 202
    ((topic, _, command),) = api.commands.published
    assert topic == "po.commands" and isinstance(command, DispatchApproved) and command.user == "ana"
    not_ready = api.client.post("/api/invoices/MP-2/send-to-rpa", json={"invoice_version": 1}, **api.as_clerk())
    assert not_ready.status_code == 409 and not_ready.json()["current_status"] == "bad_invoice"


def test_kpi_figures(api):
    kpi = api.client.get("/api/kpi", **api.as_viewer()).json()
    assert kpi["total"] == 5 and kpi["waiting_for_rpa"] == 1 and kpi["parked"] == 0
    assert kpi["by_status"]["entered"] == 1 and kpi["by_status"]["manual_review"] == 1
    assert kpi["by_reason"] == {"TOTAL_MISMATCH": 1, "PRICE_MISMATCH": 1}
    assert kpi["oldest_waiting_since"] == "2026-11-25T11:30:00Z"
    assert sum(kpi["verdicts_per_minute"]) == 5 and kpi["verdicts_per_minute"][-2] == 1  # MP-5, a minute ago


def test_a_nul_character_is_refused_before_it_reaches_the_database(api):
    for url in ("/api/invoices?po_number=PO%00", "/api/invoices/MP%001"):
        answer = api.client.get(url, **api.as_viewer())
        assert answer.status_code == 422, url
    release = api.client.post("/api/invoices/MP-3/release", json={"invoice_version": 1, "reason": "ok\u0000"},
                              **api.as_clerk())
    assert release.status_code == 422 and release.json()["errors"][0]["field"] == "body.reason"
    assert api.commands.published == []


def test_a_lone_surrogate_in_a_reason_is_422_and_shown_escaped(api):
    answer = api.client.post("/api/invoices/MP-3/release", content=b'{"invoice_version": 1, "reason": "ok \\ud800"}',
                             headers={"Content-Type": "application/json"}, **api.as_clerk())
    assert answer.status_code == 422 and answer.json()["errors"][0]["value"] == "'ok \\ud800'"


def test_the_drill_down_lists_each_finding_as_a_hold_and_a_release_names_the_holds_it_releases(api):
    shown = api.client.get("/api/invoices/MP-3", **api.as_viewer()).json()
    (hold,) = shown["holds"]
    assert (hold["id"], hold["code"], hold["releasable"], hold["released_by"]) == (
        "PRICE_MISMATCH:1:unit_price", "PRICE_MISMATCH", True, None)
    assert "PRICE_AGREED" in shown["release_reason_codes"]
    answer = api.client.post("/api/invoices/MP-3/release", json={
        "invoice_version": 1, "reason": "buyer agreed", "holds": [hold["id"]], "reason_code": "PRICE_AGREED"},
        **api.as_clerk())
    assert answer.status_code == 202
    ((_, _, command),) = api.commands.published
    assert (command.holds, command.reason_code) == (["PRICE_MISMATCH:1:unit_price"], "PRICE_AGREED")


def test_a_release_of_a_hold_that_reads_otherwise_than_the_clerk_saw_it_is_409(api):
    """The clerk's page showed a price 0.10 over the PO's; Sampro's change (the PO's price cut) judged
    the invoice again under the same hold name before the click, and 6.60 over was released unseen."""
    (hold,) = api.client.get("/api/invoices/MP-3", **api.as_clerk()).json()["holds"]
    body = {"invoice_version": 1, "reason": "agreed", "holds": [hold["id"]], "reason_code": "PRICE_AGREED"}
    stale = api.client.post("/api/invoices/MP-3/release", json={
        **body, "seen": {hold["id"]: hold["message"].replace("15.50", "15.55")}}, **api.as_clerk())
    assert stale.status_code == 409 and api.commands.published == []
    assert stale.json()["detail"] == (f"the hold {hold['id']} reads otherwise now ({hold['message']}) than when you "
                                      "looked at it: look at the invoice again")
    seen = api.client.post("/api/invoices/MP-3/release", json={**body, "seen": {hold["id"]: hold["message"]}},
                           **api.as_clerk())
    assert seen.status_code == 202 and len(api.commands.published) == 1
    ((_, _, command),) = api.commands.published  # the worker checks it again, as it has the invoice then
    assert command.seen == {hold["id"]: hold["message"]}


def test_a_release_that_sends_no_seen_carries_the_holds_as_the_api_shows_them(api):
    """A client that sends no `seen` (a script, the README's example) released a hold the worker
    had judged again under the same name since: the PO's price cut, 1.50 over went to the bot where
    the clerk had agreed to 0.10. The command carries what the API showed; the worker refuses what
    reads otherwise when it comes."""
    (hold,) = api.client.get("/api/invoices/MP-3", **api.as_clerk()).json()["holds"]
    for body in ({}, {"holds": [hold["id"]]}):
        answer = api.client.post("/api/invoices/MP-3/release", json={
            "invoice_version": 1, "reason": "agreed", "reason_code": "PRICE_AGREED", **body}, **api.as_clerk())
        assert answer.status_code == 202
        command = api.commands.published[-1][2]
        assert command.seen == {hold["id"]: hold["message"]}


def test_a_release_of_a_hold_that_is_not_there_or_with_an_unknown_reason_code_is_refused(api):
    unknown = api.client.post("/api/invoices/MP-3/release", json={
        "invoice_version": 1, "reason": "x", "holds": ["TAX_MISMATCH::tax_amount"]}, **api.as_clerk())
    assert unknown.status_code == 409 and "has no hold TAX_MISMATCH::tax_amount" in unknown.json()["detail"]
    code = api.client.post("/api/invoices/MP-3/release", json={
        "invoice_version": 1, "reason": "x", "reason_code": "BECAUSE"}, **api.as_clerk())
    assert code.status_code == 422 and code.json()["errors"] == [
        {"field": "body.reason_code", "value": "BECAUSE", "message": code.json()["errors"][0]["message"]}]
    assert code.json()["errors"][0]["message"].startswith("Input should be one of PRICE_AGREED,")
    assert api.commands.published == []


def test_a_release_naming_no_reason_code_where_other_is_not_one_is_refused_naming_the_field(api):
    """The body's default, OTHER, was refused with a bare 400 once the codes were configured without
    it, while the published schema still said a release may leave the code out."""
    api.context.settings = api.context.settings.model_copy(update={"release_reason_codes": ["PRICE_AGREED"]})
    answer = api.client.post("/api/invoices/MP-3/release", json={"invoice_version": 1, "reason": "x"},
                             **api.as_clerk())
    assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == "body.reason_code"
    assert api.commands.published == []
    from tests.unit.api.conftest import make_api

    documented = make_api(release_reason_codes=["PRICE_AGREED"]).client.get("/openapi.json").json()
    release = documented["components"]["schemas"]["ReleaseRequest"]
    assert "reason_code" in release["required"] and "default" not in release["properties"]["reason_code"]


def test_a_clerk_cannot_release_a_duplicate(api):
    duplicate = Finding(code="DUPLICATE_INVOICE", severity=Severity.ERROR, field="invoice_number", actual="INV-1",
                        message="INV-1 was entered before")
    api.scheduler.record([verdict(invoice(invoice_id="MP-6", invoice_number="INV-6", **freight(6))).model_copy(
        update={"status": VerdictStatus.BAD_INVOICE, "http_status": 400, "reasons": [duplicate]})])
    named = api.client.post("/api/invoices/MP-6/release", json={
        "invoice_version": 1, "reason": "x", "holds": ["DUPLICATE_INVOICE::invoice_number"]}, **api.as_clerk())
    assert named.status_code == 409 and "may not be released by a clerk" in named.json()["detail"]
    every = api.client.post("/api/invoices/MP-6/release", json={"invoice_version": 1, "reason": "x"}, **api.as_clerk())
    assert every.status_code == 409 and "held only by holds a clerk may not release" in every.json()["detail"]
    assert api.commands.published == []


def part_not_on_po(rules_version: str):
    """MP-7: line 2's part on no PO line, line 1's price over the PO's."""
    lines = [PRICE_OFF[0], {**PRICE_OFF[1], "part_number": "FL-999"}]
    held = verdict(invoice(invoice_id="MP-7", invoice_number="INV-7", lines=lines, tax_amount="3.58",
                           extra_charges=[{"kind": "freight", "amount": "10.07"}], total_amount="58.40"))
    return held.model_copy(update={"rules_version": rules_version})


def test_a_part_on_no_po_line_is_not_a_clerks_to_release_whatever_rules_judged_it(api):
    """Offered and answered 202, its release was refused at the invoice's turn at the bot every time:
    the bot cannot be given a line on no PO line. Under rules from before 2026.12.13 too."""
    api.scheduler.record([part_not_on_po("2026.12.12")])
    part, price = api.client.get("/api/invoices/MP-7", **api.as_clerk()).json()["holds"]
    cleared_by = ("the vendor must correct the invoice, or the buyer add the part to the PO in Sampro (which judges "
                  "the invoice again by itself)")
    assert (part["id"], part["releasable"], part["cleared_by"]) == ("PART_NOT_ON_PO:2:part_number", False, cleared_by)
    assert (price["releasable"], price["cleared_by"]) == (True, None)
    named = api.client.post("/api/invoices/MP-7/release", json={
        "invoice_version": 1, "reason": "buyer adds it", "holds": [part["id"]]}, **api.as_clerk())
    assert named.status_code == 409 and api.commands.published == []
    assert named.json()["detail"] == f"the hold {part['id']} may not be released by a clerk: {cleared_by}"
    every = api.client.post("/api/invoices/MP-7/release", json={"invoice_version": 1, "reason": "agreed"},
                            **api.as_clerk())
    assert every.status_code == 202 and api.commands.published[-1][2].holds == [price["id"]]
    api.scheduler.record([change("MP-7", InvoiceStatus.BAD_INVOICE, "release:r1", actor="ana",
                                 reason="OTHER: agreed", holds=[price["id"]])])
    left = api.client.post("/api/invoices/MP-7/release", json={"invoice_version": 1, "reason": "agreed"},
                           **api.as_clerk())
    assert left.status_code == 409 and left.json()["detail"] == (
        f"MP-7 is held only by holds a clerk may not release: {part['id']} ({cleared_by})")


def test_a_hold_released_while_another_holds_the_invoice_shows_who_released_it_and_why(api):
    api.scheduler.record([change("MP-3", InvoiceStatus.MANUAL_REVIEW, "release:r1", actor="ana",
                                 reason="PRICE_AGREED: buyer agreed", holds=["PRICE_MISMATCH:1:unit_price"])])
    (hold,) = api.client.get("/api/invoices/MP-3", **api.as_viewer()).json()["holds"]
    assert (hold["released_by"], hold["release_reason"]) == ("ana", "PRICE_AGREED: buyer agreed")
    again = api.client.post("/api/invoices/MP-3/release", json={
        "invoice_version": 1, "reason": "x", "holds": [hold["id"]]}, **api.as_clerk())
    assert again.status_code == 409 and "released by ana already" in again.json()["detail"]


def test_the_api_document_lists_the_configured_release_reason_codes(api):
    document = api.client.get("/openapi.json").json()
    reason_code = document["components"]["schemas"]["ReleaseRequest"]["properties"]["reason_code"]
    assert reason_code["enum"] == api.settings.release_reason_codes


def test_an_invoice_id_with_a_slash_is_shown_and_released(api):
    """2026/INV/42: a valid marketplace id, which a client sends as %2F."""
    api.scheduler.record([verdict(invoice(invoice_id="MP/7", invoice_number="INV-7", lines=PRICE_OFF,
                                          **freight(7)))])
    assert api.client.get("/api/invoices/MP%2F7", **api.as_viewer()).json()["invoice_id"] == "MP/7"
    answer = api.client.post("/api/invoices/MP%2F7/release", json={"invoice_version": 1, "reason": "agreed"},
                             **api.as_clerk())
    assert answer.status_code == 202 and answer.json()["invoice_id"] == "MP/7"
    ((_, _, command),) = api.commands.published
    assert command.invoice_id == "MP/7"


def test_the_last_day_there_is_is_a_filter_with_no_end(api):
    """9999-12-31 plus a day is past any date: it was a 500."""
    assert api.client.get("/api/invoices?decided_to=9999-12-31", **api.as_viewer()).json()["total"] == 5


def test_a_version_past_what_a_record_holds_is_422(api):
    answer = api.client.get("/api/invoices/MP-3?version=2147483648", **api.as_viewer())
    assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == "query.version"


def test_a_release_kafka_does_not_take_is_a_503_to_try_again_naming_no_topic_or_client_error(api, caplog):
    api.commands.reachable = False
    answer = api.client.post("/api/invoices/MP-3/release", json={"invoice_version": 1, "reason": "x"},
                             **api.as_clerk())
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "5"
    assert answer.json() == {"detail": "the command was not delivered (kafka does not answer), try again"}
    assert "switched off" in caplog.text  # the client's error goes to the log



def test_a_release_of_an_rpa_failure_names_the_failure(api):
    """Naming none, it released every hold of the judgement made at the invoice's next turn at the
    bot, which no one had seen (a second click on the failure's page)."""
    api.scheduler.record([change("MP-1", InvoiceStatus.RPA_FAILED, "rpa:MP-1:v1:attempt1", minutes=1,
                                 reason="Sampro screen timed out")])
    answer = api.client.post("/api/invoices/MP-1/release", json={"invoice_version": 1, "reason": "screen fixed"},
                             **api.as_clerk())
    assert answer.status_code == 202
    ((_, _, command),) = api.commands.published
    assert command.holds == [RPA_FAILURE]
    named = api.client.post("/api/invoices/MP-1/release", json={"invoice_version": 1, "reason": "screen fixed",
                                                                "holds": [RPA_FAILURE]}, **api.as_clerk())
    assert named.status_code == 202 and api.commands.published[-1][2].holds == [RPA_FAILURE]
    other = api.client.post("/api/invoices/MP-1/release", json={"invoice_version": 1, "reason": "screen fixed",
                                                                "holds": ["PRICE_MISMATCH:1:unit_price"]},
                            **api.as_clerk())
    assert other.status_code == 409 and f"names {RPA_FAILURE} or no hold" in other.json()["detail"]


def test_a_release_of_an_rpa_failure_says_which_failure_and_one_failed_again_since_is_409(api):
    """ana and bo opened the failure; bo released it, and the bot failed the next hand-off too, with
    another error: ana's release of the failure she had read went on to release that one unread."""
    api.scheduler.record([change("MP-1", InvoiceStatus.RPA_FAILED, "rpa:MP-1:v1:attempt1", minutes=20,
                                 reason="Sampro screen timed out")])
    shown = api.client.get("/api/invoices/MP-1", **api.as_clerk()).json()
    assert (shown["holds"], shown["failure"]) == ([], "Sampro screen timed out")
    assert api.client.get("/api/invoices/MP-3", **api.as_clerk()).json()["failure"] is None
    api.scheduler.record([
        change("MP-1", InvoiceStatus.RELEASED, "release:by-bo", minutes=15, actor="bo", reason="OTHER: try again"),
        change("MP-1", InvoiceStatus.SENT_TO_RPA, "release:by-bo", minutes=15),
        change("MP-1", InvoiceStatus.RPA_FAILED, "rpa:MP-1:v1:attempt2", minutes=10,
               reason="Vendor blocked for payment in Sampro"),
        change("MP-1", InvoiceStatus.RPA_FAILED, "release:stale", minutes=5, actor="bo",
               reason="Not released: OTHER: try again; its hold is RPA_FAILED::, the failure.")])
    assert api.client.get("/api/invoices/MP-1", **api.as_clerk()).json()["failure"] == (
        "Vendor blocked for payment in Sampro")  # the failure's own step, not a note after it
    body = {"invoice_version": 1, "reason": "try again", "holds": [RPA_FAILURE]}
    stale = api.client.post("/api/invoices/MP-1/release", json={
        **body, "seen": {RPA_FAILURE: "Sampro screen timed out"}}, **api.as_clerk())
    assert stale.status_code == 409 and api.commands.published == []
    assert stale.json()["detail"] == ("the failed hand-off reads otherwise now (Vendor blocked for payment in Sampro) "
                                      "than when you looked at it: look at the invoice again")
    seen = api.client.post("/api/invoices/MP-1/release", json={
        **body, "seen": {RPA_FAILURE: "Vendor blocked for payment in Sampro"}}, **api.as_clerk())
    assert seen.status_code == 202
    unsaid = api.client.post("/api/invoices/MP-1/release", json=body, **api.as_clerk())  # a script: as shown now
    assert unsaid.status_code == 202
    assert [command.seen for (_, _, command) in api.commands.published] == [
        {RPA_FAILURE: "Vendor blocked for payment in Sampro"}] * 2
    held = api.client.post("/api/invoices/MP-3/release", json={  # no longer a failure at all
        "invoice_version": 1, "reason": "try again", "seen": {RPA_FAILURE: "Sampro screen timed out"}},
        **api.as_clerk())
    assert held.status_code == 409 and "MP-3 is manual_review now, no longer the failed hand-off" in (
        held.json()["detail"])


def test_a_release_naming_no_holds_of_more_than_one_release_may_name_is_refused(api):
    """It went naming none, and released every hold the invoice had when the worker took it, one a
    Sampro change added meanwhile too: the dashboard names them, 200 a release."""
    held = verdict(invoice(invoice_id="MP-9", invoice_number="INV-9", lines=PRICE_OFF, tax_amount="3.58",
                           extra_charges=[{"kind": "freight", "amount": "10.03"}], total_amount="58.36"), minutes=1)
    price = held.reasons[0]
    api.scheduler.record([held.model_copy(update={"reasons": [price.model_copy(update={"line_no": n})
                                                              for n in range(1, 203)]})])
    refused = api.client.post("/api/invoices/MP-9/release", json={"invoice_version": 1, "reason": "agreed"},
                              **api.as_clerk())
    assert refused.status_code == 409 and "202 holds a clerk may release" in refused.json()["detail"]
    named = [f"PRICE_MISMATCH:{n}:unit_price" for n in range(1, 201)]
    assert api.client.post("/api/invoices/MP-9/release", json={"invoice_version": 1, "reason": "agreed",
                                                              "holds": named}, **api.as_clerk()).status_code == 202
