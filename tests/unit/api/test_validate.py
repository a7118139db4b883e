"""The dry run: the verdict the rules give now, as the old endpoint answered (200/400/404), nothing written."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from decimal import Decimal

import pytest

from api.routes import validate
from tests.unit.api.conftest import PRICE_OFF, make_api
from tests.unit.rules.builders import invoice


def dry_run(api, document) -> tuple[int, dict]:
    body = document if isinstance(document, bytes) else json.dumps(document, default=str).encode()
    answer = api.client.post("/api/validate", content=body, headers={"Content-Type": "application/json"},
                             **api.as_viewer())
    return answer.status_code, answer.json()


def test_a_matching_invoice_is_200_with_the_rpa_payload_and_nothing_is_written(api):
    rows, events = dict(api.scheduler.table), dict(api.scheduler.events)
    status, verdict = dry_run(api, invoice(invoice_id="MP-NEW", invoice_number="INV-NEW"))
    assert status == 200 and verdict["status"] == "ready_to_process"
    assert verdict["rpa_payload"]["total_amount"] == "57.25"
    assert "audit" not in verdict  # the replay trail stays on the verdicts topic
    assert api.scheduler.table == rows and api.scheduler.events == events and api.commands.published == []


def test_a_price_off_the_po_is_400_manual_review_with_the_line_and_field(api):
    status, verdict = dry_run(api, invoice(invoice_id="MP-NEW", invoice_number="INV-NEW", lines=PRICE_OFF,
                                           tax_amount="3.58", total_amount="58.33"))
    (reason,) = verdict["reasons"]
    assert status == 400 and verdict["status"] == "manual_review"
    assert (reason["code"], reason["line_no"], reason["expected"], reason["actual"]) == (
        "PRICE_MISMATCH", 1, "15.50", "16.00")


def test_a_po_sampro_does_not_have_is_404(api):
    status, verdict = dry_run(api, invoice(invoice_id="MP-NEW", invoice_number="INV-NEW", po_number="PO-404"))
    assert status == 404 and verdict["status"] == "po_not_found"


def test_an_invoice_number_processscheduler_already_decided_is_a_duplicate(api):
    status, verdict = dry_run(api, invoice(invoice_id="MP-OTHER", invoice_number="INV-4"))
    assert status == 400 and [r["code"] for r in verdict["reasons"]] == ["DUPLICATE_INVOICE"]


def test_json_numbers_are_read_as_exact_decimals(api):
    raw = json.dumps(invoice(invoice_id="MP-NEW", invoice_number="INV-NEW"), default=str)
    raw = raw.replace('"unit_price": "15.50"', '"unit_price": 15.50').replace('"total_amount": "57.25"',
                                                                               '"total_amount": 57.25')
    status, verdict = dry_run(api, raw.encode())
    assert status == 200 and verdict["rpa_payload"]["lines"][0]["unit_price"] == "15.50"


def test_a_broken_invoice_is_a_bad_invoice_verdict_naming_the_field(api):
    status, verdict = dry_run(api, invoice(invoice_id="MP-NEW", invoice_number="INV-NEW", currency=None))
    assert status == 400 and verdict["reasons"][0]["field"] == "currency"


def test_a_body_that_is_not_a_json_object_is_422(api):
    status, problem = dry_run(api, b'{"invoice_id": ')
    assert status == 422 and problem["errors"][0]["field"] == "body" and "not valid JSON" in problem["detail"]
    status, problem = dry_run(api, b"[1, 2]")
    assert status == 422 and problem["errors"][0]["value"] == [1, 2] and "JSON object" in problem["detail"]


def test_a_po_number_no_database_could_hold_is_not_looked_up(api):
    status, verdict = dry_run(api, invoice(invoice_id="MP-NEW", po_number="PO\u00005001"))
    assert status == 404 and verdict["status"] == "po_not_found"


def test_a_lone_surrogate_escape_is_422_not_text(api):
    status, problem = dry_run(api, b'{"po_number": "\\ud800"}')
    assert status == 422 and problem["errors"][0]["field"] == "body"


def test_nesting_deeper_than_the_parser_follows_is_422_naming_the_body(api):
    for depth in (900, 5000, 50_000):
        status, problem = dry_run(api, b"[" * depth + b"]" * depth)
        assert status == 422 and problem["errors"][0]["field"] == "body", depth
    status, verdict = dry_run(api, b'{"lines": ' * 900 + b"1" + b"}" * 900)  # the parser follows: a verdict
    assert status == 404 and "INVALID_INVOICE" in {reason["code"] for reason in verdict["reasons"]}
    status, problem = dry_run(api, b'{"lines": ' * 5000 + b"1" + b"}" * 5000)
    assert status == 422 and problem["errors"][0]["field"] == "body"


@pytest.mark.parametrize("number", ["1e999999999", "-1e999999999", "1e-999999999", "9" * 4000])
def test_a_number_no_ledger_could_hold_is_a_finding_on_its_field(api, number):
    raw = json.dumps(invoice(invoice_id="MP-NEW", invoice_number="INV-NEW"), default=str)
    status, verdict = dry_run(api, raw.replace('"unit_price": "15.50"', f'"unit_price": {number}', 1).encode())
    assert status == 400 and verdict["reasons"][0]["field"] == "lines[1].unit_price"


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_is_not_json_as_the_worker_reads_it(api, constant):
    """No JSON standard allows it, and the worker's edges refuse it: a dry run that judged it
    answered for an invoice the worker never judges."""
    raw = json.dumps(invoice(invoice_id="MP-NEW", invoice_number="INV-NEW"), default=str)
    status, problem = dry_run(api, raw.replace('"invoice_number": "INV-NEW"', f'"invoice_number": {constant}',
                                               1).encode())
    assert status == 422 and f"{constant.lstrip('-')} is not JSON" in json.dumps(problem)


@pytest.mark.parametrize("number", ["1E+1000000", '"1E+1000000"', '"-1E+1000000"'])
def test_a_total_past_decimals_range_is_a_finding_on_the_total(api, number):
    """abs() of it overflows Python's decimal context: the duplicate lookup made it a 500."""
    raw = json.dumps(invoice(invoice_id="MP-NEW", invoice_number="INV-NEW"), default=str)
    status, verdict = dry_run(api, raw.replace('"total_amount": "57.25"', f'"total_amount": {number}', 1).encode())
    assert status == 400 and "total_amount" in {reason["field"] for reason in verdict["reasons"]}


def test_an_integer_longer_than_python_converts_is_422(api):
    raw = json.dumps(invoice(invoice_id="MP-NEW", invoice_number="INV-NEW"), default=str)
    status, problem = dry_run(api, raw.replace('"line_no": 1', f'"line_no": {"1" * 5000}', 1).encode())
    assert status == 422 and problem["errors"][0]["field"] == "body"


def test_a_refused_password_is_never_echoed(api):
    answer = api.client.post("/login", data={"username": "ana", "password": "p" * 1000 + "MY-REAL-PASSWORD"})
    assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == "body.password"
    assert "MY-REAL-PASSWORD" not in answer.text and "ppp" not in answer.text


def test_the_dry_run_judges_with_the_line_limit_the_worker_has():
    two_lines = invoice(invoice_id="MP-NEW", invoice_number="INV-NEW")
    assert dry_run(make_api(), two_lines)[0] == 200
    status, verdict = dry_run(make_api(max_invoice_lines=1), two_lines)
    assert status == 400 and verdict["status"] == "bad_invoice"
    reasons = [(r["code"], r["field"], r["actual"]) for r in verdict["reasons"]]
    assert reasons == [("INVALID_INVOICE", "lines", "2 lines")]


def test_the_body_is_read_and_the_answer_written_off_the_event_loop(api, monkeypatch):
    """A 1 MiB body took 431 ms to read (a Decimal for each number) and its answer 181 ms to write,
    both on the event loop: /healthz, which runs there, waited meanwhile (p95 649 ms)."""
    on_the_loop = {}

    def loop_running() -> bool:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return False
        return True

    def read(number: str) -> Decimal:
        on_the_loop["read"] = loop_running()
        return Decimal(number)

    class Written(validate.JSONResponse):
        def render(self, content) -> bytes:
            on_the_loop["written"] = loop_running()
            return super().render(content)

    monkeypatch.setattr(validate, "Decimal", read)
    monkeypatch.setattr(validate, "JSONResponse", Written)
    raw = json.dumps(invoice(invoice_id="MP-NEW", invoice_number="INV-NEW"), default=str)
    status, _ = dry_run(api, raw.replace('"total_amount": "57.25"', '"total_amount": 57.25').encode())
    assert status == 200 and on_the_loop == {"read": False, "written": False}


def test_reading_a_body_of_many_numbers_lets_the_event_loop_run_meanwhile():
    """json's C parser calling Decimal (C too) held the GIL for the whole body: read in the thread
    pool or not, the event loop waited for all of it."""
    raw = ('{"numbers": [' + ",".join(["1.1"] * 100_000) + "]}").encode()
    reading, turns = threading.Thread(target=validate._invoice_document, args=(raw,)), 0
    reading.start()
    while reading.is_alive():
        time.sleep(0.001)
        turns += 1
    assert turns >= 10
