"""Bodies over real HTTP: who is calling is settled before a byte of the body is read, a body over
the limit is refused while it is read (413), and a flood of them leaves memory where it was."""

from __future__ import annotations

import base64
import socket
import time
import tracemalloc

import httpx
import pytest

from tests.unit.api.conftest import PASSWORD, TOKEN, make_api, served

RELEASE = "/api/invoices/MP-3/release"
CLERK = "Basic " + base64.b64encode(f"ana:{PASSWORD}".encode()).decode()


@pytest.fixture
def url():
    with served(make_api()) as base:
        yield base


def chunked_start(url: str, path: str, authorization: str | None) -> socket.socket:
    """Headers and the first chunk of a body that never ends: only a server that answers before
    reading the body answers at all."""
    host, port = url.removeprefix("http://").split(":")
    connection = socket.create_connection((host, int(port)), timeout=5)
    headers = [f"POST {path} HTTP/1.1", f"Host: {host}", "Content-Type: application/json",
               "Transfer-Encoding: chunked", *([f"Authorization: {authorization}"] if authorization else [])]
    connection.sendall(("\r\n".join(headers) + "\r\n\r\n").encode() + b"400\r\n" + b"[" * 0x400 + b"\r\n")
    return connection


def status_line(connection: socket.socket) -> str:
    try:
        return connection.recv(200).split(b"\r\n")[0].decode()
    except TimeoutError:
        return "no answer"
    finally:
        connection.close()


@pytest.mark.parametrize("path", [RELEASE, "/api/validate", "/rpa/invoices/MP-1/success"])
def test_without_credentials_the_answer_comes_before_the_body(url, path):
    assert status_line(chunked_start(url, path, None)) == "HTTP/1.1 401 Unauthorized"


def test_with_a_wrong_password_the_answer_comes_before_the_body(url):
    wrong = "Basic " + base64.b64encode(b"ana:wrong").decode()
    assert status_line(chunked_start(url, RELEASE, wrong)) == "HTTP/1.1 401 Unauthorized"


def test_a_declared_length_over_the_limit_is_413_at_once_even_unauthenticated(url):
    started = time.monotonic()
    answer = httpx.post(url + RELEASE, content=b"{" * 50_000_000, headers={"Content-Type": "application/json"})
    assert answer.status_code == 413 and time.monotonic() - started < 10


def test_a_body_without_a_declared_length_is_cut_off_at_the_limit_and_memory_stays_flat(url):
    def endless():
        for _ in range(50 * 16):  # 50 MiB in 64 KiB pieces, if anyone read it all
            yield b" " * 65536

    tracemalloc.start()
    try:
        answer = httpx.post(url + "/api/validate", content=endless(), timeout=30,
                            headers={"Content-Type": "application/json", "Authorization": CLERK})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert answer.status_code == 413
    assert peak < 16 * 1024 * 1024  # the limit is 1 MiB; 50 MiB read would show


def test_the_dry_run_takes_a_larger_body_than_the_rest(url):
    large = b'{"invoice_id": "MP-BIG", "po_number": "PO-5001", "padding": "' + b"x" * 300_000 + b'"}'
    headers = {"Content-Type": "application/json", "Authorization": CLERK}
    assert httpx.post(url + "/api/validate", content=large, headers=headers).status_code == 400  # a verdict
    assert httpx.post(url + RELEASE, content=large, headers=headers).status_code == 413
    bot = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    assert httpx.post(url + "/rpa/invoices/MP-1/success", content=large, headers=bot).status_code == 413


@pytest.mark.parametrize("declared", [True, False], ids=["declared length", "chunked"])
@pytest.mark.parametrize(("path", "authorization", "said"), [
    (RELEASE, CLERK, "the most this API takes (INVOICE_AUTOMATION_API_MAX_BODY_BYTES)"),
    ("/rpa/invoices/MP-1/success", f"Bearer {TOKEN}",
     "the most this API takes (INVOICE_AUTOMATION_API_MAX_BODY_BYTES)"),
    ("/api/validate", CLERK, "the most /api/validate takes (INVOICE_AUTOMATION_API_MAX_VALIDATE_BODY_BYTES)"),
], ids=["release", "rpa callback", "validate"])
def test_a_body_over_the_limit_is_a_json_problem_naming_the_limit_and_its_setting(url, declared, path,
                                                                                   authorization, said):
    """Starlette answered text/plain "Content Too Large" (a declared length) or {"detail": "Content
    Too Large"} (chunked): neither the Problem the OpenAPI document promises, nor how much is taken."""
    most = 1024 * 1024 if path == "/api/validate" else 64 * 1024
    body = b'{"padding": "' + b"x" * most + b'"}'
    answer = httpx.post(url + path, content=body if declared else iter([body[:1000], body[1000:]]),
                        headers={"Content-Type": "application/json", "Authorization": authorization})
    assert answer.status_code == 413 and answer.headers["Content-Type"] == "application/json"
    assert answer.json() == {"detail": f"the body is larger than {most} bytes, {said}"}


def test_the_limits_are_settings():
    api = make_api(api_max_body_bytes=2048, api_max_validate_body_bytes=4096)
    body = b'{"invoice_id": "MP-1", "po_number": "PO-5001", "padding": "' + b"x" * 3000 + b'"}'
    answer = api.client.post("/api/validate", content=body, auth=("ana", PASSWORD),
                             headers={"Content-Type": "application/json"})
    assert answer.status_code == 400
    refused = api.client.post(RELEASE, content=body, auth=("ana", PASSWORD),
                              headers={"Content-Type": "application/json"})
    assert refused.status_code == 413 and "larger than 2048 bytes" in refused.json()["detail"]


@pytest.mark.parametrize(("body", "said"), [
    (b'{"invoice_version": ' + b"9" * 5000 + b', "sampro_invoice_id": "S-1"}', "integer string conversion"),
    (b"[" * 30_000 + b"]" * 30_000, "nested too deeply"),  # within the body limit, beyond Python's parser
])
def test_json_python_cannot_read_is_a_422_naming_the_body_on_every_route_that_takes_one(body, said):
    """FastAPI answered 400 "There was an error parsing the body", naming nothing."""
    api, as_json = make_api(), {"Content-Type": "application/json"}
    for path, headers, auth in (("/rpa/invoices/MP-1/success", {"Authorization": f"Bearer {TOKEN}"}, None),
                                (RELEASE, {"X-Requested-With": "dashboard"}, ("ana", PASSWORD))):
        answer = api.client.post(path, content=body, headers={**headers, **as_json}, auth=auth)
        assert answer.status_code == 422, (path, answer.text)
        assert answer.json()["errors"][0]["field"] == "body" and said in answer.json()["detail"]
    not_text = api.client.post(RELEASE, content=b'{"reason": "\xff"}', auth=("ana", PASSWORD),
                               headers={"Content-Type": "application/json"})
    assert not_text.status_code == 400  # not UTF-8: the body cannot be read at all
