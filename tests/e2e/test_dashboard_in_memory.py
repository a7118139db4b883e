"""In the browser, what the dashboard makes of the API's answers, with the API on in-memory adapters:
no pipeline, no stack."""

from __future__ import annotations

from playwright.sync_api import expect

from rules.holds import RPA_FAILURE
from rules.lifecycle import InvoiceStatus
from rules.models import Finding, Severity, VerdictStatus
from tests.e2e.browser import sign_in
from tests.unit.api.conftest import NOW, PRICE_OFF, change, freight, verdict
from tests.unit.rules.builders import PO, invoice, judge

# Each shows nothing, or only a space, in an invoice number; the API names each so (api/schemas.py).
SHOWING_NOTHING = ["\u2800",  # the braille blank
                   "\u3164", "\u115f", "\u1160", "\uffa0",  # Hangul fillers
                   "\u034f", "\ufe0f", "\u180e", "\u206a", "\ufff9", "\U0001d173", "\u2028", "\u00a0", "\x0b"]


def test_a_character_that_shows_nothing_in_an_invoice_number_is_shown_as_its_code_point(dashboard_in_memory, page):
    """"INV-778" and a braille blank (U+2800) read in the list exactly as the paid INV-778: the page
    marked only some format characters and the bidi controls."""
    sign_in(page, dashboard_in_memory)
    shown = page.evaluate('(characters) => characters.map((c) => el("td", {}, `INV-778${c}`).textContent)',
                          SHOWING_NOTHING)
    assert shown == [f"INV-778⟨U+{ord(character):04X}⟩" for character in SHOWING_NOTHING]


def test_a_joiner_is_shown_as_its_code_point_where_it_joins_no_letters(dashboard_in_memory, page):
    """ZWJ and ZWNJ were never marked, as scripts that need them show them joined: "INV-778" and a
    ZWJ read as INV-778. Between two letters or emoji beyond ASCII they still join, and the blanks
    HTML shows as a space stay as they are."""
    sign_in(page, dashboard_in_memory)
    joined = ["\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",  # Persian
              "\u0915\u094d\u200d\u0937",  # Devanagari: a half form
              "\U0001f469\U0001f3fd\u200d\U0001f4bb",  # an emoji sequence
              "Line 1\nLine 2\tand a\r\nform feed\f"]
    expected = {"INV-778\u200d": "INV-778⟨U+200D⟩", "INV\u200c-778": "INV⟨U+200C⟩-778",
                "\u200d\u0416": "⟨U+200D⟩\u0416", "A\u200dB": "A⟨U+200D⟩B", **{value: value for value in joined}}
    assert page.evaluate("(values) => values.map(visible)", list(expected)) == list(expected.values())


def test_the_invoice_clicked_last_is_shown_whichever_answer_comes_last(dashboard_in_memory, page):
    """A clerk clicked MP-3, then MP-2, and MP-3's answer came last: the panel, the row marked and
    the Release and Send-to-RPA buttons went back to MP-3 after MP-2 was shown, and a release went
    for the invoice the clerk had left."""
    sign_in(page, dashboard_in_memory)
    slow = []
    page.route("**/api/invoices/MP-3?*", lambda route: slow.append(route))  # MP-3's answer is held back
    page.locator('#invoices tr[data-invoice="MP-3"]').click()
    page.locator('#invoices tr[data-invoice="MP-2"]').click()
    expect(page.locator("#detail-title")).to_contain_text("MP-2")
    with page.expect_event("requestfinished", lambda request: "/api/invoices/MP-3" in request.url):
        slow[0].continue_()
    page.wait_for_timeout(500)  # the answer read and, before, shown
    expect(page.locator("#detail-title")).to_contain_text("MP-2")
    expect(page.locator("#detail-status")).to_have_text("bad_invoice")
    expect(page.locator("#invoices tr.selected")).to_have_attribute("data-invoice", "MP-2")


def test_a_panel_closed_before_its_answer_came_stays_closed(dashboard_in_memory, page):
    sign_in(page, dashboard_in_memory)
    slow = []
    page.route("**/api/invoices/MP-2?*", lambda route: slow.append(route))
    page.locator('#invoices tr[data-invoice="MP-3"]').click()
    expect(page.locator("#detail-title")).to_contain_text("MP-3")
    page.evaluate("() => { openInvoice('MP-2', 1); }")  # a row the panel leaves in sight, clicked; not awaited
    page.locator("#detail-close").click()
    with page.expect_event("requestfinished", lambda request: "/api/invoices/MP-2" in request.url):
        slow[0].continue_()
    page.wait_for_timeout(500)  # the answer read and, before, shown
    expect(page.locator("#detail")).to_be_hidden()


def _open_the_release_of_a_failure(api, dashboard, page) -> None:
    """MP-1's hand-off failed ("Sampro screen timeout"); a clerk opens its release dialog."""
    api.scheduler.record([change("MP-1", InvoiceStatus.RPA_FAILED, "rpa:MP-1:v1:attempt1", minutes=20,
                                 reason="Sampro screen timeout")])
    sign_in(page, dashboard)
    page.locator('#invoices tr[data-invoice="MP-1"]').click()
    expect(page.locator("#detail-status")).to_have_text("rpa_failed")
    page.click("#release-button")
    expect(page.locator("#release-what")).to_have_text("the failed hand-off")


def test_a_release_of_a_failed_hand_off_names_the_failure_and_is_refused_once_the_invoice_is_held_instead(
        api_in_memory, dashboard_in_memory, page):
    """The dialog opened on a failed hand-off sent no hold. Another clerk released the failure first,
    and at its turn at the bot the invoice was judged again and held: the buyer had cancelled the PO.
    The stale confirm released PO_NOT_OPEN, which no one had seen, and the bot got the invoice of a
    cancelled PO. Named, the failure is not there: a 409, and nothing is released."""
    _open_the_release_of_a_failure(api_in_memory, dashboard_in_memory, page)

    cancelled = judge(invoice(invoice_id="MP-1", invoice_number="INV-1", **freight(1)), {**PO, "status": "cancelled"})
    api_in_memory.scheduler.record([
        change("MP-1", InvoiceStatus.RELEASED, "release:by-bo", minutes=10, actor="bo", reason="OTHER: retry"),
        cancelled.model_copy(update={"evaluated_at": NOW})])
    page.fill("#release-reason", "screen timed out, try again")
    with page.expect_response("**/release") as answered:
        page.click("#release-confirm")
    assert answered.value.request.post_data_json["holds"] == [RPA_FAILURE] and answered.value.status == 409
    assert api_in_memory.commands.published == []
    expect(page.locator("#action-message")).to_contain_text(f"Not done: MP-1 has no hold {RPA_FAILURE}")


def test_a_release_of_a_failed_hand_off_says_which_failure_the_clerk_read(api_in_memory, dashboard_in_memory, page):
    """Opened on one failure, confirmed after another clerk had released it and the bot had failed the
    next hand-off too, with an error the clerk never read ("vendor blocked for payment"): it released
    that failure too, and a third hand-off went."""
    _open_the_release_of_a_failure(api_in_memory, dashboard_in_memory, page)
    api_in_memory.scheduler.record([
        change("MP-1", InvoiceStatus.RELEASED, "release:by-bo", minutes=15, actor="bo", reason="OTHER: retry"),
        change("MP-1", InvoiceStatus.SENT_TO_RPA, "release:by-bo", minutes=15),
        change("MP-1", InvoiceStatus.RPA_FAILED, "rpa:MP-1:v1:attempt2", minutes=10,
               reason="Vendor blocked for payment in Sampro")])
    page.fill("#release-reason", "screen timed out, try again")
    with page.expect_response("**/release") as answered:
        page.click("#release-confirm")
    assert answered.value.request.post_data_json["seen"] == {RPA_FAILURE: "Sampro screen timeout"}
    assert answered.value.status == 409 and api_in_memory.commands.published == []
    expect(page.locator("#action-message")).to_contain_text(
        "Not done: the failed hand-off reads otherwise now (Vendor blocked for payment in Sampro)")
    expect(page.locator("#detail-history")).to_contain_text("Vendor blocked for payment in Sampro")  # the live feed
    page.click("#release-button")  # on the failure there is now: released as read
    page.fill("#release-reason", "vendor unblocked in Sampro")
    page.click("#release-confirm")
    expect(page.locator("#action-message")).to_contain_text("Release sent")
    ((_, _, command),) = api_in_memory.commands.published
    assert (command.holds, command.seen) == ([RPA_FAILURE], {RPA_FAILURE: "Vendor blocked for payment in Sampro"})


def test_an_invoice_held_only_by_holds_a_clerk_may_not_release_offers_no_release(api_in_memory, dashboard_in_memory,
                                                                                 page):
    """"Release all" named no hold there, and a release naming none releases every hold the invoice
    has when the worker takes it: the page never sends one."""
    duplicate = Finding(code="DUPLICATE_INVOICE", severity=Severity.ERROR, field="invoice_number", actual="INV-1",
                        message="INV-1 was entered before")
    held = verdict(invoice(invoice_id="MP-6", invoice_number="INV-6", **freight(6)))
    api_in_memory.scheduler.record([held.model_copy(update={"status": VerdictStatus.BAD_INVOICE, "http_status": 400,
                                                            "reasons": [duplicate]})])
    sign_in(page, dashboard_in_memory)
    page.locator('#invoices tr[data-invoice="MP-6"]').click()
    expect(page.locator("#detail-holds")).to_contain_text("open: the vendor must send a corrected invoice")
    expect(page.locator("#release-button")).to_be_hidden()
    page.locator("#detail-close").click()
    page.locator('#invoices tr[data-invoice="MP-3"]').click()  # held for its price: a clerk may release it
    expect(page.locator("#release-button")).to_be_visible()


def test_a_part_on_no_po_line_says_who_clears_it_and_is_not_released_with_the_rest(api_in_memory, dashboard_in_memory,
                                                                                    page):
    """It had a Release button, and "Release all" named it: answered 202, refused at the invoice's turn
    at the bot every time, since the bot cannot be given a line on no PO line."""
    lines = [PRICE_OFF[0], {**PRICE_OFF[1], "part_number": "FL-999"}]
    api_in_memory.scheduler.record([verdict(invoice(invoice_id="MP-7", invoice_number="INV-7", lines=lines,
                                                    tax_amount="3.58", total_amount="58.40",
                                                    extra_charges=[{"kind": "freight", "amount": "10.07"}]))])
    sign_in(page, dashboard_in_memory)
    page.locator('#invoices tr[data-invoice="MP-7"]').click()
    part = page.locator('#detail-holds tr[data-hold="PART_NOT_ON_PO:2:part_number"]')
    expect(part).to_contain_text("open: the vendor must correct the invoice, or the buyer add the part to the PO in "
                                 "Sampro")
    expect(part.locator("button.release-hold")).to_have_count(0)
    page.click("#release-button")
    expect(page.locator("#release-what")).to_have_text("hold PRICE_MISMATCH:1:unit_price")
