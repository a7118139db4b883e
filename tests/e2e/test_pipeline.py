"""From a marketplace row to a processscheduler row and an RPA email, through Debezium and Kafka."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from confluent_kafka import Producer
from sqlalchemy import update

from connectors.marketplace_table import marketplace_invoices
from devstack.demo import upload
from rules.models import PurchaseOrder
from tests.stack_pipeline import read_topic

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
FINAL = {"entered", "manual_review", "bad_invoice", "po_not_found", "rpa_failed"}
EXPECTED = {"01": "entered", "02": "manual_review", "03": "manual_review", "04": "bad_invoice", "05": "bad_invoice",
            "06": "bad_invoice", "07": "po_not_found", "08": "manual_review", "09": "entered", "10": "entered"}


def load_samples(pipeline, prefix: str) -> tuple[list[dict], dict[str, str]]:
    """The bundled samples with ids made unique to this test; returns invoices and expected statuses."""
    invoices, pos, expected = [], {}, {}
    for case in sorted(p for p in SAMPLES.iterdir() if (p / "invoice.json").exists()):
        invoice = json.loads((case / "invoice.json").read_text(), parse_float=Decimal)
        invoice["invoice_id"] = f"{prefix}-{invoice['invoice_id']}"
        invoice["po_number"] = f"{prefix}-{invoice['po_number']}"
        invoices.append(invoice)
        if (case / "po.json").exists():
            po = json.loads((case / "po.json").read_text(), parse_float=Decimal)
            po["po_number"] = invoice["po_number"]
            pos[po["po_number"]] = PurchaseOrder.model_validate(po)
        for earlier in json.loads((case / "history.json").read_text()) if (case / "history.json").exists() else []:
            pipeline.sampro.enter_invoice(sampro_invoice_id=f"{prefix}-{earlier['invoice_id']}",
                                          vendor_id=earlier["vendor_id"], invoice_number=earlier["invoice_number"],
                                          po_number="earlier", invoice_date=None, total_amount=None, lines=[])
        expected[invoice["invoice_id"]] = EXPECTED[case.name[:2]]
    pipeline.sampro.load_purchase_orders(pos.values())
    return invoices, expected


def test_marketplace_rows_become_the_right_processscheduler_rows_and_one_email_per_ready_invoice(
        pipeline, unique_name):
    invoices, expected = load_samples(pipeline, unique_name)
    pipeline.start_worker()
    upload(pipeline.settings, invoices)
    # The bot starts once the second invoice on PO-5001 waits: else Debezium may hand it over after
    # the first was entered already, and it would not wait.
    second_on_po = f"{unique_name}-MP-1010"
    pipeline.wait_for(lambda: pipeline.statuses().get(second_on_po) == "waiting_for_po", what="the second invoice")
    pipeline.start_bot()
    pipeline.wait_for(lambda: all(pipeline.statuses().get(i) in FINAL for i in expected), what="every invoice")
    assert pipeline.statuses() == expected
    ready = sorted(i for i, s in expected.items() if s == "entered")
    messages = pipeline.mailbox.mailbox.messages
    assert sorted(json.loads(m.get_body(("plain",)).get_content())["invoice_id"] for m in messages) == ready
    first = next(m for m in messages if m["Message-ID"] == f"<invoice-{unique_name}-MP-1001-v1@invoice-automation>")
    payload = json.loads(first.get_body(("plain",)).get_content())
    assert Decimal(payload["total_amount"]) == Decimal("57.52")
    assert [(line["invoice_line_no"], line["po_line_no"]) for line in payload["lines"]] == [(1, 1), (2, 2)]
    # The second invoice on PO-5001 waited for the first to be entered, then was decided.
    second = [h["status"] for h in pipeline.scheduler.history(second_on_po)]
    assert second == ["waiting_for_po", "ready_to_process", "sent_to_rpa", "entered"]


def test_a_failure_completion_also_releases_the_po(pipeline, unique_name):
    invoices, _ = load_samples(pipeline, unique_name)
    same_po = [i for i in invoices if i["po_number"] == f"{unique_name}-PO-5001"]
    pipeline.start_worker()
    upload(pipeline.settings, same_po)
    first, second = (i["invoice_id"] for i in same_po)
    pipeline.wait_for(lambda: pipeline.statuses().get(second) == "waiting_for_po", what="the second invoice")
    pipeline.start_bot(fail_invoices=frozenset({f"{unique_name}-MP-1001"}))
    pipeline.wait_for(lambda: pipeline.statuses().get(second) == "entered", what="the parked invoice")
    assert pipeline.statuses()[first] == "rpa_failed"
    assert [h["status"] for h in pipeline.scheduler.history(second)][0] == "waiting_for_po"


def test_a_vendor_edit_is_evaluated_again(pipeline, unique_name):
    invoices, _ = load_samples(pipeline, unique_name)
    price = next(i for i in invoices if i["invoice_id"].endswith("MP-1002"))
    pipeline.start_worker()
    pipeline.start_bot()
    upload(pipeline.settings, [price])
    invoice_id = price["invoice_id"]
    pipeline.wait_for(lambda: pipeline.statuses().get(invoice_id) == "manual_review", what="the first version")
    fixed = [{**line, "unit_price": "15.50", "amount": "31.00"} if line["line_no"] == 1 else line
             for line in json.loads(json.dumps(price["lines"], default=str))]
    with pipeline.marketplace.begin() as conn:
        conn.execute(update(marketplace_invoices).where(marketplace_invoices.c.invoice_id == invoice_id)
                     .values(version=2, lines=fixed, tax_amount=Decimal("3.52"), total_amount=Decimal("57.52")))
    pipeline.wait_for(lambda: any(r["invoice_version"] == 2 and r["status"] == "entered"
                                  for r in pipeline.scheduler.rows()), what="the edited version")
    versions = {r["invoice_version"]: r["status"] for r in pipeline.scheduler.rows()}
    assert versions == {1: "superseded", 2: "entered"}


def test_a_malformed_cdc_record_goes_to_the_dlq_and_the_next_one_is_processed(pipeline, unique_name):
    invoices, _ = load_samples(pipeline, unique_name)
    pipeline.start_worker()
    producer = Producer({"bootstrap.servers": pipeline.settings.kafka_bootstrap_servers})
    producer.produce(pipeline.settings.marketplace_topic, key=b"PO-X", value=b"{not json")
    producer.flush(10)
    upload(pipeline.settings, [invoices[3]])
    pipeline.wait_for(lambda: pipeline.statuses().get(invoices[3]["invoice_id"]) == "bad_invoice",
                      what="the record after the bad one")
    (dead,) = read_topic(pipeline.settings.kafka_bootstrap_servers, pipeline.settings.dlq_topic)
    headers = {k: v.decode() for k, v in dead.headers()}
    assert dead.value() == b"{not json"
    assert headers["source.topic"] == pipeline.settings.marketplace_topic and "source.offset" in headers
    assert "MarketplaceRecordError" in headers["error"] and "'value'" in headers["error"]


def test_a_ledger_kept_in_rocksdb_survives_a_kill_between_parking_and_completion(pipeline, unique_name):
    invoices, _ = load_samples(pipeline, unique_name)
    same_po = [i for i in invoices if i["po_number"] == f"{unique_name}-PO-5001"]
    first, second = (i["invoice_id"] for i in same_po)
    pipeline.settings = pipeline.settings.model_copy(update={"store": "rocksdb://"})
    worker = pipeline.start_worker()
    upload(pipeline.settings, same_po)
    pipeline.wait_for(lambda: (pipeline.statuses().get(first), pipeline.statuses().get(second))
                      == ("sent_to_rpa", "waiting_for_po"), what="the first at the bot, the second parked")
    worker.kill()
    assert list((pipeline.settings.data_dir / "state" / "po-ledgers").rglob("CURRENT")), "no RocksDB store on disk"
    pipeline.start_worker()
    pipeline.start_bot()  # reads the mailbox from the start: the first invoice's email came before the kill
    pipeline.wait_for(lambda: pipeline.statuses().get(second) == "entered", what="the parked invoice")
    assert [h["status"] for h in pipeline.scheduler.history(second)] == [
        "waiting_for_po", "ready_to_process", "sent_to_rpa", "entered"]
    mailed = sorted(json.loads(m.get_body(("plain",)).get_content())["invoice_id"]
                    for m in pipeline.mailbox.mailbox.messages)
    assert mailed == sorted([first, second])
