"""Signing in: HTTP Basic, the /login session cookie, a trusted proxy header; viewer and clerk."""

from __future__ import annotations

from argon2 import PasswordHasher
from typer.testing import CliRunner

from cli.main import app as cli
from tests.unit.api.conftest import PASSWORD

RELEASE = "/api/invoices/MP-3/release"
REASON = {"invoice_version": 1, "reason": "price agreed with the buyer"}


def test_nobody_signed_in_is_401_with_a_basic_challenge_unless_the_dashboard_asks(api):
    answer = api.client.get("/api/invoices")
    assert answer.status_code == 401 and answer.headers["WWW-Authenticate"].startswith("Basic")
    from_page = api.client.get("/api/invoices", headers={"X-Requested-With": "dashboard"})
    assert from_page.status_code == 401 and from_page.headers["WWW-Authenticate"] == "Session"
    # The live feed's EventSource cannot send the header: a Basic challenge had the browser ask for
    # a password at a session's end, and keep it for /api/ past any sign-out.
    live = api.client.get("/api/events", headers={"Accept": "text/event-stream"})
    assert live.status_code == 401 and live.headers["WWW-Authenticate"] == "Session"


def test_a_wrong_password_or_an_unknown_name_is_401(api):
    assert api.client.get("/api/invoices", auth=("ana", "wrong")).status_code == 401
    assert api.client.get("/api/invoices", auth=("mallory", PASSWORD)).status_code == 401


def test_a_viewer_reads_but_may_not_release_or_send(api):
    assert api.client.get("/api/invoices", **api.as_viewer()).status_code == 200
    release = api.client.post(RELEASE, json=REASON, **api.as_viewer())
    assert release.status_code == 403 and "viewer" in release.json()["detail"]
    send = api.client.post("/api/invoices/MP-5/send-to-rpa", json={"invoice_version": 1}, **api.as_viewer())
    assert send.status_code == 403 and api.commands.published == []


def test_the_login_form_sets_a_session_that_needs_the_dashboard_header_for_changes(api):
    wrong = api.client.post("/login", data={"username": "ana", "password": "nope", "next": "/dashboard"})
    assert wrong.status_code == 401 and "Wrong name or password" in wrong.text
    signed = api.client.post("/login", data={"username": "ana", "password": PASSWORD, "next": "/dashboard"},
                             follow_redirects=False)
    assert signed.status_code == 303 and signed.headers["location"] == "/dashboard"
    assert "httponly" in signed.headers["set-cookie"].lower() and "samesite=lax" in signed.headers["set-cookie"].lower()
    assert api.client.get("/api/me").json() == {"name": "ana", "role": "clerk"}
    assert api.client.post(RELEASE, json=REASON).status_code == 403  # a cross-site form cannot add the header
    assert api.client.post(RELEASE, json=REASON, headers={"X-Requested-With": "dashboard"}).status_code == 202
    assert api.client.post("/logout", follow_redirects=False).status_code == 303
    assert api.client.get("/api/me").status_code == 401


def test_the_login_form_only_sends_people_to_this_site(api):
    answer = api.client.post("/login", data={"username": "ana", "password": PASSWORD, "next": "//evil.example"},
                             follow_redirects=False)
    assert answer.headers["location"] == "/dashboard"


def test_a_forged_session_cookie_is_refused(api):
    api.client.cookies.set("ia_session", "eyJuYW1lIjoiYW5hIiwicm9sZSI6ImNsZXJrIn0.forged.signature")
    assert api.client.get("/api/me").status_code == 401


def test_the_dashboard_sends_strangers_to_the_login_form(api):
    answer = api.client.get("/dashboard", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login")
    api.client.post("/login", data={"username": "victor", "password": PASSWORD})
    page = api.client.get("/dashboard")
    assert page.status_code == 200 and 'data-tile="total"' in page.text


def test_hash_password_prints_an_argon2_hash_of_the_password():
    result = CliRunner().invoke(cli, ["api", "hash-password"], input="s3cret\ns3cret\n")
    assert result.exit_code == 0, result.output
    assert PasswordHasher().verify(result.output.strip().splitlines()[-1], "s3cret")


def test_http_basic_takes_a_name_and_password_in_utf_8_and_in_latin_1():
    """FastAPI's Basic read ASCII only: 'Dvořák', or an accented password, was refused unchecked."""
    import base64

    from api.auth import hash_password
    from tests.unit.api.conftest import make_api

    api = make_api(api_users=[{"name": "Dvořák", "password_hash": hash_password("pässwort"), "role": "clerk"},
                              {"name": "Zoë", "password_hash": hash_password("ça va"), "role": "viewer"}])
    utf8 = base64.b64encode("Dvořák:pässwort".encode()).decode()
    assert api.client.get("/api/me", headers={"Authorization": f"Basic {utf8}"}).json()["name"] == "Dvořák"
    latin1 = base64.b64encode("Zoë:ça va".encode("latin-1")).decode()
    assert api.client.get("/api/me", headers={"Authorization": f"Basic {latin1}"}).json()["name"] == "Zoë"
    padded = base64.b64encode("Dvořák:pässwort".encode()).decode() + "=="  # as FastAPI's took it
    assert api.client.get("/api/me", headers={"Authorization": f"Basic {padded}"}).status_code == 200
    unreadable = api.client.get("/api/me", headers={"Authorization": "Basic bm8gY29sb24="})  # "no colon"
    assert unreadable.status_code == 401 and unreadable.headers["WWW-Authenticate"].endswith('charset="UTF-8"')
    assert api.client.get("/api/invoices").headers["WWW-Authenticate"].endswith('charset="UTF-8"')
    for header in ("Basic \xe9\xe9\xe9\xe9", f"Basic {utf8}\xe9"):  # not base64's alphabet: was a 500
        answer = api.client.get("/api/me", headers={"Authorization": header.encode("latin-1")})
        assert answer.status_code == 401 and "WWW-Authenticate" in answer.headers
