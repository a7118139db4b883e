"""The dashboard in Debian's headless Chromium, on a running pipeline: sign in, read the tiles,
open an invoice, release it, and watch its status change without reloading the page."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import expect

from devstack.demo import upload
from devstack.rpa_bot import RpaBot
from tests.api_fixtures import CLERK, PASSWORD, TOKEN, load_sample

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
EXPECTED = {"01": "entered", "02": "manual_review", "04": "bad_invoice", "07": "po_not_found"}
LIVE = 60_000  # ms: the release goes through Kafka, the worker, the RPA mailbox and the bot's callback


def test_a_clerk_releases_an_invoice_and_sees_it_entered_without_reloading(pipeline, dashboard, page, unique_name):
    invoices = {case: load_sample(pipeline, case, unique_name) for case in EXPECTED}
    pipeline.start_worker()
    pipeline.bot = RpaBot(pipeline.mailbox.mailbox, pipeline.sampro, pipeline.settings.kafka_bootstrap_servers,
                          pipeline.settings.completions_topic, api_url=dashboard.url, api_token=TOKEN,
                          signing_key=pipeline.settings.rpa_signing_key_bytes).start()
    upload(pipeline.settings, list(invoices.values()))
    expected = {invoices[case]["invoice_id"]: status for case, status in EXPECTED.items()}
    pipeline.wait_for(lambda: pipeline.statuses() == expected, what="the seeded invoices")

    page.goto(f"{dashboard.url}/dashboard")
    expect(page).to_have_url(f"{dashboard.url}/login?next=/dashboard")
    page.fill("input[name=username]", CLERK)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(page.locator("#live")).to_have_text("live")
    for tile, value in (("total", "4"), ("entered", "1"), ("manual_review", "1"), ("bad_invoice", "1"),
                        ("po_not_found", "1"), ("sent_to_rpa", "0")):
        expect(page.locator(f'[data-tile="{tile}"] .value')).to_have_text(value)
    expect(page.locator("#invoices tbody tr")).to_have_count(4)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-overview.png"), full_page=True)

    price_off = invoices["02"]["invoice_id"]
    page.locator(f'#invoices tr[data-invoice="{price_off}"]').click()
    expect(page.locator("#detail-status")).to_have_text("manual_review")
    expect(page.locator("#detail-reasons")).to_contain_text("PRICE_MISMATCH")
    # Each value a vendor chose is bidi-isolated: a U+202E in one cannot reverse the ones after it.
    expect(page.locator("#detail-meta")).to_contain_text(f"vendor \u2068{invoices['02']['vendor_id']}\u2069 · ")
    # A bidi control or zero-width mark a vendor put in a value shows as its code point: "INV-\u202E877"
    # read as INV-778, and a PDI of its own closed the isolate around it.
    assert page.evaluate('el("td", {}, "INV-\\u202E877").textContent') == "INV-⟨U+202E⟩877"
    assert page.evaluate('isolated("V100\\u2069\\u202E")') == "\u2068V100⟨U+2069⟩⟨U+202E⟩\u2069"
    mismatch = page.locator('#detail-lines tr[data-field="unit_price"] td.mismatch')
    expect(mismatch).to_have_text("15.75")
    page.evaluate("window.loadedOnce = true")  # gone if the page reloads

    hold = page.locator('#detail-holds tr[data-hold="PRICE_MISMATCH:1:unit_price"]')
    expect(hold).to_contain_text("open")
    page.screenshot(path=str(ARTIFACTS / "dashboard-holds.png"), full_page=True)
    hold.locator("button.release-hold").click()  # a release control per hold
    expect(page.locator("#release-dialog")).to_be_visible()
    expect(page.locator("#release-what")).to_have_text("hold PRICE_MISMATCH:1:unit_price")
    page.select_option("#release-code", "PRICE_AGREED")
    page.fill("#release-reason", "Buyer confirmed the new price")
    page.click("#release-confirm")
    expect(page.locator("#action-message")).to_contain_text("Release sent")
    expect(page.locator("#detail-status")).to_have_text("entered", timeout=LIVE)
    expect(page.locator(f'#invoices tr[data-invoice="{price_off}"] .status')).to_have_text("entered", timeout=LIVE)
    expect(page.locator('#detail-history li[data-status="released"]')).to_contain_text(
        f"by {CLERK} — PRICE_AGREED: Buyer confirmed the new price")
    expect(page.locator('[data-tile="entered"] .value')).to_have_text("2", timeout=LIVE)
    expect(page.locator('[data-tile="manual_review"] .value')).to_have_text("0", timeout=LIVE)
    assert page.evaluate("window.loadedOnce") is True

    page.screenshot(path=str(ARTIFACTS / "dashboard-released.png"), full_page=True)
    history = [h["status"] for h in pipeline.scheduler.history(price_off)]
    assert history == ["manual_review", "released", "sent_to_rpa", "entered"]
