"""The API against the real stack with a real worker: what it publishes travels through Kafka and
the per-PO ledger, and processscheduler changes."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from devstack.demo import upload
from tests.api_fixtures import CLERK, PASSWORD, TOKEN, load_sample, with_api
from tests.stack_pipeline import pipeline  # noqa: F401 (the fixture: Debezium, Kafka, worker, PostgreSQL)

BOT = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def api(pipeline):  # noqa: F811
    with TestClient(create_app(with_api(pipeline.settings))) as client:
        yield client


def status_of(stack, invoice_id: str) -> str | None:
    return stack.statuses().get(invoice_id)


def decided_sample(pipeline, case: str, unique_name: str, status: str) -> str:  # noqa: F811 (the fixture's name)
    """A sample invoice through a started worker until its row has `status`; its invoice id."""
    document = load_sample(pipeline, case, unique_name)
    pipeline.start_worker()
    upload(pipeline.settings, [document])
    pipeline.wait_for(lambda: status_of(pipeline, document["invoice_id"]) == status, what=f"{status} for sample {case}")
    return document["invoice_id"]


def test_a_success_callback_travels_through_kafka_and_the_row_becomes_entered(pipeline, api, unique_name):  # noqa: F811
    invoice_id = decided_sample(pipeline, "01", unique_name, "sent_to_rpa")

    url = f"/rpa/invoices/{invoice_id}/success"
    answer = api.post(url, json={"invoice_version": 1, "sampro_invoice_id": "S-77"}, headers=BOT)
    assert answer.status_code == 202 and answer.json()["already_recorded"] is False
    pipeline.wait_for(lambda: status_of(pipeline, invoice_id) == "entered", what="the completion")
    (row,) = [r for r in pipeline.scheduler.rows() if r["invoice_id"] == invoice_id]
    assert row["sampro_invoice_id"] == "S-77"
    entered = pipeline.scheduler.history(invoice_id)[-1]
    assert entered["event_id"].endswith(f"rpa:{invoice_id}:v1:attempt1:success:S-77")

    again = api.post(url, json={"invoice_version": 1, "sampro_invoice_id": "S-77"}, headers=BOT)
    assert again.status_code == 202 and again.json()["already_recorded"] is True
    assert api.post(f"/rpa/invoices/{invoice_id}/failure", json={"invoice_version": 1, "error": "late"},
                    headers=BOT).status_code == 409

    scraped = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
               for family in text_string_to_metric_families(api.get("/metrics").text) for sample in family.samples}
    assert scraped[("invoice_automation_scrape_ok", (("source", "processscheduler"),))] == 1
    assert scraped[("invoice_automation_scrape_ok", (("source", "kafka"),))] == 1
    assert scraped[("invoice_automation_invoices", (("status", "entered"),))] == 1
    assert scraped[("invoice_automation_rpa_emails_in_doubt", ())] == 0


def test_a_released_manual_review_invoice_goes_to_the_rpa_bot_with_who_and_why(pipeline, api, unique_name):  # noqa: F811
    invoice_id = decided_sample(pipeline, "02", unique_name, "manual_review")

    blank = api.post(f"/api/invoices/{invoice_id}/release", json={"invoice_version": 1, "reason": ""},
                     auth=(CLERK, PASSWORD))
    assert blank.status_code == 422
    answer = api.post(f"/api/invoices/{invoice_id}/release",
                      json={"invoice_version": 1, "reason": "Buyer confirmed the new price"}, auth=(CLERK, PASSWORD))
    assert answer.status_code == 202, answer.text
    pipeline.wait_for(lambda: status_of(pipeline, invoice_id) == "sent_to_rpa", what="the release")

    history = pipeline.scheduler.history(invoice_id)
    assert [h["status"] for h in history] == ["manual_review", "released", "sent_to_rpa"]
    assert (history[1]["actor"], history[1]["reason"]) == (CLERK, "OTHER: Buyer confirmed the new price")
    pipeline.wait_for(lambda: len(pipeline.mailbox.mailbox.messages) == 1, what="the RPA email")
    (email,) = pipeline.mailbox.mailbox.messages
    assert json.loads(email.get_body(("plain",)).get_content())["lines"][0]["unit_price"] == "15.75"  # as invoiced
    detail = api.get(f"/api/invoices/{invoice_id}", auth=(CLERK, PASSWORD)).json()
    assert detail["status"] == "sent_to_rpa" and detail["history"][1]["actor"] == CLERK


def test_releasing_one_of_two_holds_leaves_the_invoice_held_and_a_duplicate_is_not_a_clerks_to_release(
        pipeline, api, unique_name):  # noqa: F811
    document = load_sample(pipeline, "02", unique_name)  # line 1 at 15.75 on a 15.50 PO line ...
    second = {**document["lines"][1], "unit_price": "3.30", "amount": "13.20"}  # ... and line 2 at 3.30 on 3.25
    document.update(lines=[document["lines"][0], second], tax_amount="3.58", total_amount="58.28")
    pipeline.start_worker()
    upload(pipeline.settings, [document])
    invoice_id = document["invoice_id"]
    pipeline.wait_for(lambda: status_of(pipeline, invoice_id) == "manual_review", what="two holds")
    shown = api.get(f"/api/invoices/{invoice_id}", auth=(CLERK, PASSWORD)).json()
    assert [hold["id"] for hold in shown["holds"]] == ["PRICE_MISMATCH:1:unit_price", "PRICE_MISMATCH:2:unit_price"]

    answer = api.post(f"/api/invoices/{invoice_id}/release", auth=(CLERK, PASSWORD), json={
        "invoice_version": 1, "reason": "Buyer agreed line 1", "holds": ["PRICE_MISMATCH:1:unit_price"],
        "reason_code": "PRICE_AGREED"})
    assert answer.status_code == 202, answer.text
    pipeline.wait_for(lambda: len(pipeline.scheduler.history(invoice_id)) == 2, what="the release of one hold")
    step = pipeline.scheduler.history(invoice_id)[1]
    assert (step["status"], step["actor"], step["holds"]) == ("manual_review", CLERK, ["PRICE_MISMATCH:1:unit_price"])
    assert step["reason"] == "PRICE_AGREED: Buyer agreed line 1"
    assert status_of(pipeline, invoice_id) == "manual_review" and pipeline.mailbox.mailbox.messages == []
    (line_1, line_2) = api.get(f"/api/invoices/{invoice_id}", auth=(CLERK, PASSWORD)).json()["holds"]
    assert (line_1["released_by"], line_2["released_by"]) == (CLERK, None)

    # The vendor uploads the same invoice number again, under another record: a duplicate.
    again = {**document, "invoice_id": f"{invoice_id}-again"}
    upload(pipeline.settings, [again])
    pipeline.wait_for(lambda: status_of(pipeline, again["invoice_id"]) == "bad_invoice", what="the duplicate")
    refused = api.post(f"/api/invoices/{again['invoice_id']}/release", auth=(CLERK, PASSWORD), json={
        "invoice_version": 1, "reason": "looks fine", "holds": ["DUPLICATE_INVOICE::invoice_number"]})
    assert refused.status_code == 409 and "may not be released by a clerk" in refused.json()["detail"]
