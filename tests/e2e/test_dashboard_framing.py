"""In the browser: another site's page cannot frame the signed-in dashboard (clickjacking on
Release), and the dashboard runs under its Content-Security-Policy without a violation."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import expect

from devstack.process import free_port
from tests.e2e.browser import sign_in
from tests.unit.rules.builders import invoice, judge


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


def test_another_site_cannot_frame_the_signed_in_dashboard(dashboard, other_site, page):
    sign_in(page, dashboard)
    page.goto(other_site)
    page.wait_for_timeout(2000)
    frame = page.frame_locator("#victim")
    # Framed, the page would be the dashboard or (the Lax cookie stays home) the sign-in form; the
    # browser shows neither, only its own error page.
    expect(frame.locator("#release-button")).to_have_count(0)
    expect(frame.locator("input[name=password]")).to_have_count(0)


def test_the_dashboard_runs_under_its_policy_without_a_violation(dashboard, pipeline, page):
    # One verdict a moment ago, so that the chart has a status to draw a legend for.
    pipeline.scheduler.record([judge(invoice()).model_copy(update={"evaluated_at": datetime.now(UTC)})])
    violations = []
    page.on("console", lambda message: violations.append(message.text)
            if "Content Security Policy" in message.text else None)
    sign_in(page, dashboard)
    expect(page.locator("#live")).to_have_text("live")
    expect(page.locator("#legend i").first).to_be_attached()  # styled through CSSOM, not a style attribute
    assert violations == []
