"""Security headers on every answer, so another site cannot frame the dashboard (clickjacking on
Release) and no script runs but the dashboard's own files; no CDN page on the dashboard's origin."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient

from api.routes.dashboard import STATIC
from tests.unit.api.conftest import PASSWORD, make_api

ANSWERS = [("get", "/dashboard"), ("get", "/login"), ("get", "/api/invoices"), ("get", "/api/nothing-here"),
           ("get", "/static/dashboard.js"), ("get", "/healthz"), ("get", "/metrics"), ("post", "/api/validate")]


def directives(policy: str) -> dict[str, str]:
    return {part.split()[0]: part.strip() for part in policy.split(";") if part.strip()}


@pytest.mark.parametrize(("method", "path"), ANSWERS)
def test_every_answer_forbids_framing_inline_script_and_sniffing(api, method, path):
    answer = getattr(api.client, method)(path, auth=("ana", PASSWORD), follow_redirects=False)
    policy = directives(answer.headers["Content-Security-Policy"])
    assert policy["frame-ancestors"] == "frame-ancestors 'none'" and answer.headers["X-Frame-Options"] == "DENY"
    assert policy["script-src"] == "script-src 'self'" and "unsafe" not in answer.headers["Content-Security-Policy"]
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Referrer-Policy"] == "no-referrer"
    assert "Strict-Transport-Security" not in answer.headers  # plain http: HSTS would mean nothing


def test_a_refused_body_has_them_too(api):
    answer = api.client.post("/api/invoices/MP-3/release", content=b"x" * 100_000, auth=("ana", PASSWORD),
                             headers={"Content-Type": "application/json"})
    assert answer.status_code == 413 and answer.headers["X-Frame-Options"] == "DENY"


def test_hsts_over_https_and_behind_a_tls_proxy():
    direct = make_api()
    https = TestClient(direct.client.app, base_url="https://testserver")
    assert https.get("/healthz").headers["Strict-Transport-Security"].startswith("max-age=")
    behind_proxy = make_api(api_served_over_https=True)
    assert behind_proxy.client.get("/healthz").headers["Strict-Transport-Security"].startswith("max-age=")
    # The trusted proxy's word that the browser used https: the cookie was Secure, and HSTS missing.
    trusted = make_api(client_address=("10.0.0.7", 4000), api_trusted_proxies=["10.0.0.7"])
    said = trusted.client.get("/healthz", headers={"X-Forwarded-Proto": "https"})
    assert said.headers["Strict-Transport-Security"].startswith("max-age=")
    assert "Strict-Transport-Security" not in trusted.client.get("/healthz").headers


def test_no_cache_keeps_an_answer_but_the_dashboards_files(api):
    """Invoices, users and figures stayed in the disk cache of a shared AP workstation."""
    for path in ("/api/invoices", "/api/me", "/api/kpi", "/dashboard"):
        assert api.client.get(path, auth=("ana", PASSWORD)).headers["Cache-Control"] == "no-store", path
    # The dashboard's files are asked for again each time (304 while unchanged): cached by a browser's
    # guess, the script of the release before ran against the API of the new one after an upgrade.
    script = api.client.get("/static/dashboard.js")
    assert script.headers["Cache-Control"] == "no-cache"
    again = api.client.get("/static/dashboard.js", headers={"If-None-Match": script.headers["ETag"]})
    assert again.status_code == 304


def test_an_unexpected_error_is_answered_with_the_headers_too():
    """Starlette answers it outside every middleware: a 500 without a policy or nosniff."""
    api = make_api()

    def broken(now):
        raise RuntimeError("a bug")

    api.context.read_model.kpi = broken
    answer = TestClient(api.client.app, raise_server_exceptions=False).get("/api/kpi", auth=("ana", PASSWORD))
    assert answer.status_code == 500 and answer.json() == {"detail": "an unexpected error: it is logged"}
    assert answer.headers["X-Frame-Options"] == "DENY" and answer.headers["Cache-Control"] == "no-store"
    https = TestClient(api.client.app, base_url="https://testserver", raise_server_exceptions=False)
    assert https.get("/api/kpi", auth=("ana", PASSWORD)).headers["Strict-Transport-Security"].startswith("max-age=")


def test_no_docs_page_that_loads_a_cdn_on_the_dashboards_origin(api):
    assert api.client.get("/docs").status_code == 404 and api.client.get("/redoc").status_code == 404
    assert api.client.get("/openapi.json").status_code == 200


class _InlineCode(HTMLParser):
    def __init__(self):
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag, attrs):
        names = dict(attrs)
        if tag == "script" and "src" not in names:
            self.found.append("<script> without src")
        self.found += [f"{tag} {name}=" for name in names if name.startswith("on") or name == "style"]
        if names.get("href", "").startswith("javascript:"):
            self.found.append(f"{tag} href=javascript:")


@pytest.mark.parametrize("page", sorted(STATIC.glob("*.html")), ids=lambda path: path.name)
def test_the_pages_have_no_inline_script_or_style_the_policy_would_block(page):
    parser = _InlineCode()
    parser.feed(page.read_text())
    assert parser.found == []


def test_the_dashboard_script_sets_styles_through_cssom_not_the_style_attribute():
    """CSP refuses setAttribute("style", ...) without 'unsafe-inline'; element.style is allowed."""
    script = (STATIC / "dashboard.js").read_text()
    assert "style:" not in script and 'setAttribute("style"' not in script
