"""The API does not start with settings that would leave it open: no token, no session secret,
guessable ones, or single-sign-on headers without a way to tell the proxy's requests."""

from __future__ import annotations

import json
import secrets
import sys

import pytest
from typer.testing import CliRunner

from api.startup import ApiMisconfigured, refusals
from cli.main import app as cli
from cli.main import main
from tests.unit.api.conftest import HASH, PASSWORD, api_settings, make_api


@pytest.mark.parametrize("missing", ["api_token", "api_session_secret"])
def test_without_the_token_or_the_session_secret_it_refuses_to_start(missing):
    with pytest.raises(ApiMisconfigured, match=f"INVOICE_AUTOMATION_{missing.upper()} is not set"):
        make_api(**{missing: None})


@pytest.mark.parametrize("weak", ["change-me", "change-me-too", "s" * 64, "change-me-" * 3, "ab" * 16])
@pytest.mark.parametrize("setting", ["api_token", "api_session_secret", "api_metrics_token",
                                     "api_trusted_proxy_secret"])
def test_a_guessable_secret_is_refused(setting, weak):
    with pytest.raises(ApiMisconfigured, match=f"{setting.upper()} is too easy to guess"):
        make_api(**{setting: weak})


def test_random_secrets_of_32_characters_are_enough():
    for _ in range(2000):
        assert refusals(api_settings(api_token=secrets.token_hex(16), api_session_secret=secrets.token_urlsafe(24),
                                     api_metrics_token=secrets.token_hex(32))) == []


def test_trusted_headers_without_proxy_addresses_or_secret_refuse_to_start():
    with pytest.raises(ApiMisconfigured, match="anyone could name a user"):
        make_api(api_trusted_user_header="X-Forwarded-User")
    make_api(api_trusted_user_header="X-Forwarded-User", api_trusted_proxies=["10.0.0.7"])


def test_the_api_command_says_why_it_does_not_start(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    for name in ("INVOICE_AUTOMATION_API_TOKEN", "INVOICE_AUTOMATION_API_SESSION_SECRET"):
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(cli, ["api", "--port", "1"])
    assert result.exit_code == 2 and "INVOICE_AUTOMATION_API_TOKEN is not set" in result.output


@pytest.mark.parametrize("proxies", [["0.0.0.0/0"], ["0.0.0.0/1", "128.0.0.0/1"], ["::/0"], ["2000::/3"]])
def test_trusted_proxies_wider_than_any_proxys_addresses_refuse_to_start(proxies):
    """Every client was the proxy, and named its own user and role."""
    with pytest.raises(ApiMisconfigured, match="API_TRUSTED_PROXIES holds .*wider than any proxy's addresses"):
        make_api(api_trusted_user_header="X-Forwarded-User", api_trusted_proxies=proxies)
    make_api(api_trusted_user_header="X-Forwarded-User", api_trusted_proxies=["10.0.0.0/8", "2001:db8::/32"])
    copied = api_settings().model_copy(update={"api_trusted_proxies": ["192.0.2.10", "0.0.0.0/0"]})  # unvalidated
    assert [problem for problem in refusals(copied) if "wider than" in problem]


@pytest.mark.parametrize(("name", "said"), [("a" * 201, "String should have at most 200 characters"),
                                            ("ana\x1b[2J", "a user name cannot hold a control character (U+001B)")])
def test_a_user_name_a_release_cannot_carry_refuses_to_start(monkeypatch, capsys, tmp_path, name, said):
    """It signed in, then each release and send-to-RPA of the user was a 500: the release's `user`
    holds 200 characters (rules.lifecycle)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INVOICE_AUTOMATION_API_USERS", json.dumps([{"name": name, "password_hash": HASH}]))
    monkeypatch.setattr(sys, "argv", ["invoice-automation", "api", "--port", "1"])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    assert capsys.readouterr().err == f"error: setting INVOICE_AUTOMATION_API_USERS__0__NAME: {said}\n"


def test_a_user_name_of_200_characters_releases_and_dispatches():
    name = "a" * 200
    client = make_api(api_users=[{"name": name, "password_hash": HASH, "role": "clerk"}]).client
    assert client.post("/api/invoices/MP-3/release", json={"invoice_version": 1, "reason": "agreed"},
                       auth=(name, PASSWORD)).status_code == 202
    assert client.post("/api/invoices/MP-5/send-to-rpa", json={"invoice_version": 1},
                       auth=(name, PASSWORD)).status_code == 202
