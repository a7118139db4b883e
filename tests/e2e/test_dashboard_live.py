"""In the browser, the dashboard kept live while invoices change under the clerk: a release goes
for the version the clerk read, and a stream the API refused is asked for again, with what
changed meanwhile read anew. processscheduler is written directly: no worker is needed."""

from __future__ import annotations

from datetime import UTC, datetime

from playwright.sync_api import expect

from rules.lifecycle import InvoiceStatus, StatusChanged
from tests.e2e.browser import sign_in
from tests.unit.rules.builders import PRICE_OFF, judge

RECONNECTED = 20_000  # ms: the page asks again 10 s after a refusal


def held(version: int, invoice_id: str = PRICE_OFF["invoice_id"]):
    """The invoice held for its price, as the worker records it (each version its own verdict)."""
    return judge({**PRICE_OFF, "invoice_id": invoice_id, "version": version}).model_copy(
        update={"evaluated_at": datetime.now(UTC)})


def test_a_release_goes_for_the_version_the_dialog_names_when_a_newer_one_arrives(
        dashboard, pipeline, page):
    first = held(1)
    pipeline.scheduler.record([first])
    sign_in(page, dashboard)
    page.locator(f'#invoices tr[data-invoice="{first.invoice_id}"]').click()
    page.click("#release-button")
    expect(page.locator("#release-invoice")).to_contain_text(" v1")

    # The vendor's corrected version arrives while the clerk writes why v1's price may stand.
    pipeline.scheduler.record([held(2)])
    expect(page.locator(f'#invoices tr[data-invoice="{first.invoice_id}"][data-version="2"]')).to_be_attached()
    page.select_option("#release-code", "PRICE_AGREED")
    page.fill("#release-reason", "Buyer agreed to 15.60")
    with page.expect_request("**/release") as sent:
        page.click("#release-confirm")
    assert sent.value.post_data_json["invoice_version"] == 1
    expect(page.locator("#detail-title")).to_contain_text(" v1")


def test_a_refused_stream_is_asked_for_again_and_what_changed_meanwhile_is_shown(
        dashboard, pipeline, page):
    verdict = held(1)
    pipeline.scheduler.record([verdict])
    refused = []

    def events(route):  # the first stream answered as a proxy does while the API restarts
        if refused:
            route.continue_()
        else:
            refused.append(route.request.url)
            route.fulfill(status=502, body="Bad Gateway")

    page.route("**/api/events", events)
    sign_in(page, dashboard)
    row = page.locator(f'#invoices tr[data-invoice="{verdict.invoice_id}"] .status')
    expect(row).to_have_text("manual_review")
    # In UTC, as the date filter reads days (the browser's zone is not UTC here).
    decided = page.locator(f'#invoices tr[data-invoice="{verdict.invoice_id}"] td').nth(8)
    expect(decided).to_have_text(verdict.evaluated_at.strftime("%Y-%m-%d %H:%M"))
    expect(page.locator("#live")).to_have_text("reconnecting…")
    pipeline.scheduler.record([StatusChanged(
        event_id=f"{verdict.invoice_id}:v1:released:test", invoice_id=verdict.invoice_id, invoice_version=1,
        po_number=verdict.po_number, status=InvoiceStatus.RELEASED, occurred_at=datetime.now(UTC),
        actor="ana", reason="agreed")])

    expect(page.locator("#live")).to_have_text("live", timeout=RECONNECTED)
    expect(row).to_have_text("released")
    assert len(refused) == 1


def test_the_next_page_stays_put_while_new_invoices_arrive(dashboard, pipeline, page):
    """Pages follow one another from the last row shown. By offset, an invoice arriving while the
    clerk read page 2 pushed its rows down by one: she read page 1's last row again."""
    pipeline.scheduler.record([held(1, f"MP-{n:03}") for n in range(1, 56)])  # 55: two pages of 50
    sign_in(page, dashboard)
    rows, told = page.locator("#invoices tbody tr"), page.locator("#page-info")
    expect(told).to_have_text("1–50 of 55")
    expect(page.locator("#prev")).to_be_disabled()
    page.dblclick("#next")  # the second click went for the same page again, numbered 101-105
    expect(told).to_have_text("51–55 of 55")
    expect(rows.first).to_have_attribute("data-invoice", "MP-005")
    expect(page.locator("#next")).to_be_disabled()
    pipeline.scheduler.record([held(1, "MP-056")])
    expect(told).to_have_text("51–55 of 56")  # the live feed read the page again
    expect(rows.first).to_have_attribute("data-invoice", "MP-005")
    page.click("#prev")
    expect(told).to_have_text("1–50 of 56")
    expect(rows.first).to_have_attribute("data-invoice", "MP-056")
