"""The dashboard for the e2e tier: the API on the test's pipeline (or on in-memory adapters, for what
the page makes of the API's answers), Debian's headless Chromium, and a clerk signed in."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect, sync_playwright

from api.app import create_app
from api.server import ThreadedServer
from devstack.install import CHROMIUM, install_chromium
from devstack.process import free_port
from tests.api_fixtures import CLERK, PASSWORD, with_api
from tests.unit.api.conftest import make_api

BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def dashboard(pipeline):
    """The API and its dashboard, polling processscheduler every half second for the live feed."""
    server = ThreadedServer(create_app(with_api(pipeline.settings), live_interval=0.5), port=free_port()).start()
    yield server
    server.stop()


@pytest.fixture
def api_in_memory():
    """The API on the unit tests' in-memory adapters, MP-1 to MP-5 seeded: a test records what the
    worker would, and reads the commands the page had the API publish."""
    return make_api()


@pytest.fixture
def dashboard_in_memory(api_in_memory):
    """The API on in-memory adapters (`api_in_memory`) and its dashboard: no pipeline, no stack."""
    server = ThreadedServer(api_in_memory.client.app, port=free_port()).start()
    yield server
    server.stop()


@pytest.fixture
def page():
    install_chromium()  # a no-op when Debian's chromium is there; scripts/test.sh installs it first
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=BROWSER_ARGS)
        # A zone west of UTC, as many AP teams are: dates shown in the browser's zone would differ.
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, timezone_id="America/Chicago")
        yield context.new_page()
        browser.close()


def sign_in(page, dashboard) -> None:
    page.goto(f"{dashboard.url}/login?next=/dashboard")
    page.fill("input[name=username]", CLERK)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
