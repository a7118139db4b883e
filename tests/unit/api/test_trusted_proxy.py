"""Single sign-on headers: believed only from the proxy's addresses or with its secret; a forged
or repeated header names no one; the proxy's requests pass the same cross-site check as others."""

from __future__ import annotations

from api.proxy import PROXY_SECRET_HEADER
from tests.unit.api.conftest import make_api

RELEASE = "/api/invoices/MP-3/release"
REASON = {"invoice_version": 1, "reason": "price agreed with the buyer"}
SSO_CLERK = {"X-Forwarded-User": "sso-sam", "X-Forwarded-Role": "clerk"}
PROXY = ("10.0.0.7", 4000)
PROXY_SECRET = "proxy-secret-2b8e5d1a7c4f9e3b6d0a8c2f5e1b7d4a"
SSO = {"api_trusted_user_header": "X-Forwarded-User", "api_trusted_role_header": "X-Forwarded-Role"}


def test_from_the_proxy_address_the_header_names_the_user_and_role():
    api = make_api(client_address=PROXY, api_trusted_proxies=["10.0.0.0/24"], **SSO)
    assert api.client.get("/api/me", headers=SSO_CLERK).json() == {"name": "sso-sam", "role": "clerk"}
    unknown_role = api.client.get("/api/me", headers={**SSO_CLERK, "X-Forwarded-Role": "admin"})
    assert unknown_role.json()["role"] == "viewer"
    released = api.client.post(RELEASE, json=REASON, headers=SSO_CLERK)
    assert released.status_code == 202 and api.commands.published[0][2].user == "sso-sam"


def test_a_client_that_reaches_the_port_directly_names_no_one():
    api = make_api(client_address=("203.0.113.9", 5000), api_trusted_proxies=["10.0.0.0/24"], **SSO)
    assert api.client.get("/api/me", headers=SSO_CLERK).status_code == 401
    released = api.client.post(RELEASE, json=REASON, headers=SSO_CLERK)
    assert released.status_code == 401 and api.commands.published == []
    # a forwarding header of its own does not make it the proxy
    forged = api.client.post(RELEASE, json=REASON, headers={**SSO_CLERK, "X-Forwarded-For": "10.0.0.7"})
    assert forged.status_code == 401 and api.commands.published == []


def test_with_the_shared_secret_any_address_is_the_proxy_and_a_wrong_secret_names_no_one():
    api = make_api(client_address=("203.0.113.9", 5000), api_trusted_proxy_secret=PROXY_SECRET, **SSO)
    assert api.client.get("/api/me", headers={**SSO_CLERK, PROXY_SECRET_HEADER: PROXY_SECRET}).status_code == 200
    wrong = api.client.post(RELEASE, json=REASON, headers={**SSO_CLERK, PROXY_SECRET_HEADER: PROXY_SECRET[:-1] + "x"})
    assert wrong.status_code == 401 and api.commands.published == []


def test_a_name_longer_than_a_history_holds_or_with_a_control_character_names_no_one():
    """A release's user holds 200 characters: a longer name failed after the API had taken it (500)."""
    api = make_api(client_address=PROXY, api_trusted_proxies=["10.0.0.7"], **SSO)
    for name in ("s" * 201, "sso-sam\x7f", "sso\u2028sam", "sso\x85sam"):
        answer = api.client.post(RELEASE, json=REASON, headers={**SSO_CLERK, "X-Forwarded-User": name.encode()})
        assert answer.status_code == 401, name
    assert api.commands.published == []
    longest = api.client.post(RELEASE, json=REASON, headers={**SSO_CLERK, "X-Forwarded-User": "s" * 200})
    assert longest.status_code == 202 and api.commands.published[0][2].user == "s" * 200


def test_a_name_the_proxy_sends_in_utf_8_is_the_users_name():
    """Starlette reads header bytes as latin-1: 'paweł' came through as 'paweÅ\x82'."""
    api = make_api(client_address=PROXY, api_trusted_proxies=["10.0.0.7"], **SSO)
    for name in ("paweł", "Dvořák", "Ørsted"):
        answer = api.client.get("/api/me", headers={**SSO_CLERK, "X-Forwarded-User": name.encode()})
        assert answer.json() == {"name": name, "role": "clerk"}


def test_a_repeated_identity_header_is_refused_even_from_the_proxy():
    api = make_api(client_address=PROXY, api_trusted_proxies=["10.0.0.7"], **SSO)
    twice = [("X-Forwarded-User", "sso-sam"), ("X-Forwarded-User", "mallory"), ("X-Forwarded-Role", "clerk")]
    answer = api.client.post(RELEASE, json=REASON, headers=twice)
    assert answer.status_code == 400 and "x-forwarded-user" in answer.json()["detail"]
    roles = [("X-Forwarded-User", "sso-sam"), ("X-Forwarded-Role", "viewer"), ("X-Forwarded-Role", "clerk")]
    assert api.client.post(RELEASE, json=REASON, headers=roles).status_code == 400
    assert api.commands.published == []


def test_the_proxys_requests_pass_the_cross_site_check_too():
    api = make_api(client_address=PROXY, api_trusted_proxies=["10.0.0.7"], **SSO)
    cross_site = api.client.post(RELEASE, json=REASON, headers={**SSO_CLERK, "Sec-Fetch-Site": "cross-site"})
    assert cross_site.status_code == 403 and api.commands.published == []
    other_origin = api.client.post(RELEASE, json=REASON, headers={**SSO_CLERK, "Origin": "https://evil.example"})
    assert other_origin.status_code == 403 and api.commands.published == []


def test_the_proxy_names_the_client_so_failed_sign_ins_count_against_the_client():
    api = make_api(client_address=PROXY, api_trusted_proxies=["10.0.0.7"], api_sign_in_free_failures=2, **SSO)
    for _ in range(2):
        api.client.get("/api/me", auth=("ana", "wrong"), headers={"X-Forwarded-For": "198.51.100.1, 10.0.0.7"})
    from_that_client = api.client.get("/api/me", auth=("victor", "wrong"), headers={"X-Forwarded-For": "198.51.100.1"})
    assert from_that_client.status_code == 429
    # The leftmost address is the client's own claim: it cannot pass for another client's.
    spoofed = api.client.get("/api/me", auth=("victor", "wrong"),
                             headers={"X-Forwarded-For": "192.0.2.50, 198.51.100.1"})
    assert spoofed.status_code == 429
    other_client = api.client.get("/api/me", auth=("victor", "wrong"), headers={"X-Forwarded-For": "198.51.100.2"})
    assert other_client.status_code == 401


def test_the_header_means_nothing_unless_configured(api):
    assert api.client.get("/api/me", headers={"X-Forwarded-User": "sso-sam"}).status_code == 401
