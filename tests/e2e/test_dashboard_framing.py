"""In the browser: another site's page cannot frame the signed-in dashboard (clickjacking on
Release), and the dashboard runs under its Content-Security-Policy without a violation."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import expect

from api.app import create_app
from api.server import ThreadedServer
from devstack.process import free_port
from tests.api_fixtures import CLERK, PASSWORD, with_api
from tests.e2e.test_dashboard import page  # noqa: F401 (the fixture: headless Chromium)
from tests.unit.rules.builders import invoice, judge


@pytest.fixture
def dashboard(pipeline):
    server = ThreadedServer(create_app(with_api(pipeline.settings)), port=free_port()).start()
    yield server
    server.stop()


@pytest.fixture
def other_site(dashboard):
    """An attacker's page on another origin that frames the dashboard."""
    html = f'<iframe id="victim" src="{dashboard.url}/dashboard" width="800" height="600"></iframe>'.encode()

    class Page(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the handler's name)
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(html)

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://localhost:{server.server_port}/"  # localhost vs 127.0.0.1: another origin
    server.shutdown()


def sign_in(page, dashboard):  # noqa: F811
    page.goto(f"{dashboard.url}/login?next=/dashboard")
    page.fill("input[name=username]", CLERK)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("body")).to_have_attribute("data-ready", "true")


def test_another_site_cannot_frame_the_signed_in_dashboard(dashboard, other_site, page):  # noqa: F811
    sign_in(page, dashboard)
    page.goto(other_site)
    page.wait_for_timeout(2000)
    frame = page.frame_locator("#victim")
    # Framed, the page would be the dashboard or (the Lax cookie stays home) the sign-in form; the
    # browser shows neither, only its own error page.
    expect(frame.locator("#release-button")).to_have_count(0)
    expect(frame.locator("input[name=password]")).to_have_count(0)


def test_the_dashboard_runs_under_its_policy_without_a_violation(dashboard, pipeline, page):  # noqa: F811
    # One verdict a moment ago, so that the chart has a status to draw a legend for.
    pipeline.scheduler.record([judge(invoice()).model_copy(update={"evaluated_at": datetime.now(UTC)})])
    violations = []
    page.on("console", lambda message: violations.append(message.text)
            if "Content Security Policy" in message.text else None)
    sign_in(page, dashboard)
    expect(page.locator("#live")).to_have_text("live")
    expect(page.locator("#legend i").first).to_be_attached()  # styled through CSSOM, not a style attribute
    assert violations == []
