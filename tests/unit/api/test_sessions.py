"""Sessions end on the server: a cookie kept from before /logout or before a password change is
refused, the live stream ends with its session, and the cookie is Secure behind a TLS proxy."""

from __future__ import annotations

import socket
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from api.auth import hash_password
from connectors.session_versions import SqlSessionVersions
from connectors.sql import engine_for
from tests.unit.api.conftest import PASSWORD, make_api, served

DASHBOARD = {"X-Requested-With": "dashboard"}


def signed_in_cookie(api) -> str:
    answer = api.client.post("/login", data={"username": "ana", "password": PASSWORD}, follow_redirects=False)
    assert answer.status_code == 303
    return answer.cookies["ia_session"]


def test_a_cookie_kept_from_before_logout_is_refused(api):
    kept = signed_in_cookie(api)
    assert api.client.post("/logout", follow_redirects=False).status_code == 303
    api.client.cookies.set("ia_session", kept)  # what an attacker copied, or the browser's back button
    assert api.client.get("/api/me").status_code == 401


def test_logout_ends_the_users_sessions_on_other_devices_too(api):
    laptop = signed_in_cookie(api)
    phone = signed_in_cookie(api)
    api.client.cookies.set("ia_session", laptop)
    api.client.post("/logout")
    api.client.cookies.set("ia_session", phone)
    assert api.client.get("/api/me").status_code == 401
    assert api.client.get("/api/me", auth=("victor", PASSWORD)).status_code == 200  # other users are not touched
    signed_in_cookie(api)
    assert api.client.get("/api/me").status_code == 200  # and signing in again works


def test_a_new_password_ends_the_sessions_signed_before_it(api):
    kept = signed_in_cookie(api)
    new_hash = hash_password("a new password")
    restarted = make_api(sessions=api.sessions, api_users=[{"name": "ana", "password_hash": new_hash, "role": "clerk"}])
    restarted.client.cookies.set("ia_session", kept)
    assert restarted.client.get("/api/me").status_code == 401


def test_sign_outs_are_kept_in_the_database_across_restarts(tmp_path):
    url = f"sqlite:///{tmp_path}/sessions.db"
    first = make_api(sessions=SqlSessionVersions(engine_for(url)))
    kept = signed_in_cookie(first)
    first.client.post("/logout")
    restarted = make_api(sessions=SqlSessionVersions(engine_for(url)))
    restarted.client.cookies.set("ia_session", kept)
    assert restarted.client.get("/api/me").status_code == 401
    restarted.client.cookies.set("ia_session", signed_in_cookie(restarted))
    assert restarted.client.get("/api/me").status_code == 200


def test_the_live_stream_ends_when_its_session_does():
    api = make_api()
    api.context.live.recheck_every = 0.2
    cookie = signed_in_cookie(api)
    with served(api) as url, httpx.Client(base_url=url, cookies={"ia_session": cookie}, timeout=10) as browser:
        with browser.stream("GET", "/api/events") as events:
            lines = events.iter_lines()
            assert next(line for line in lines if line.startswith("event:")) == "event: update"
            assert browser.post("/logout", headers=DASHBOARD).status_code == 303
            rest = list(lines)  # a ReadTimeout here: the stream went on after the sign-out
    assert not any(line.startswith("event:") for line in rest)


def test_a_stream_ends_when_its_cookie_expires_though_no_one_signed_out(api, monkeypatch):
    """Only the sign-out was checked: a stream opened a second before the cookie's 8 hours ran on
    until the user signed out, however long after."""
    principal = api.context.auth.from_session(signed_in_cookie(api))
    expected = time.time() + api.context.auth.max_age
    assert principal is not None and abs(principal.session_ends - expected) < 5
    assert api.context.auth.still_signed_in(principal)
    monkeypatch.setattr(time, "time", lambda: principal.session_ends)
    assert not api.context.auth.still_signed_in(principal)


def test_a_stream_signed_in_by_basic_ends_as_a_session_would(monkeypatch):
    """Not signed in by cookie, a stream ran until the client left: a user removed from API_USERS,
    or no longer named by the single-sign-on proxy, watched invoices go by for as long as they liked."""
    api = make_api()
    api.context.live.recheck_every = 0.2
    with served(api) as url, httpx.Client(base_url=url, auth=("ana", PASSWORD), timeout=10) as client:
        with client.stream("GET", "/api/events") as events:
            lines = events.iter_lines()
            assert next(line for line in lines if line.startswith("event:")) == "event: update"
            later = time.time() + api.context.auth.max_age
            monkeypatch.setattr(time, "time", lambda: later)
            rest = list(lines)  # a ReadTimeout here: the stream went on
    assert not any(line.startswith("event:") for line in rest)


@pytest.mark.parametrize(("settings", "base_url", "secure"), [
    ({}, "http://testserver", False),
    ({}, "https://testserver", True),
    ({"api_served_over_https": True}, "http://testserver", True),  # a TLS proxy speaks http to the API
])
def test_the_session_cookie_is_secure_when_the_browser_uses_https(settings, base_url, secure):
    browser = TestClient(make_api(**settings).client.app, base_url=base_url)
    answer = browser.post("/login", data={"username": "ana", "password": PASSWORD}, follow_redirects=False)
    assert ("secure" in answer.headers["set-cookie"].lower()) is secure


def test_a_trusted_proxy_says_the_browser_used_https():
    api = make_api(client_address=("10.0.0.7", 1), api_trusted_proxies=["10.0.0.7"])
    answer = api.client.post("/login", data={"username": "ana", "password": PASSWORD}, follow_redirects=False,
                             headers={"X-Forwarded-Proto": "https"})
    assert "secure" in answer.headers["set-cookie"].lower()
    direct = make_api(client_address=("203.0.113.9", 1), api_trusted_proxies=["10.0.0.7"])
    forged = direct.client.post("/login", data={"username": "ana", "password": PASSWORD}, follow_redirects=False,
                                headers={"X-Forwarded-Proto": "https"})
    assert "secure" not in forged.headers["set-cookie"].lower()


def test_a_browser_that_stops_reading_loses_its_stream():
    """Its send waits `send_timeout`, then the stream ends: no session check runs while a send
    waits, so a stream held open by a stalled reader would outlive its session."""
    api = make_api()
    live = api.context.live
    live.send_timeout, live.interval = 0.5, 0.01
    live.poll = lambda: {"kpi": {}, "changed": ["x" * 1_000_000]}  # fills the socket's buffers in a few sends
    cookie = signed_in_cookie(api)
    with served(api) as url, socket.create_connection((httpx.URL(url).host, httpx.URL(url).port)) as stalled:
        stalled.sendall(f"GET /api/events HTTP/1.1\r\nHost: x\r\nCookie: ia_session={cookie}\r\n\r\n".encode())
        subscribed = _within(10, lambda: live.subscribers)
        ended = _within(30, lambda: not live.subscribers)  # never reading a byte of it
    assert subscribed and ended


def _within(seconds: float, condition) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
