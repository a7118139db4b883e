"""A held invoice clears itself when Sampro changes: the PO price corrected by the buyer, polled from
Sampro's tables, re-judges the invoice, which reaches the RPA mailbox once."""

from __future__ import annotations

import json
from decimal import Decimal

from confluent_kafka import Producer

from devstack.demo import upload
from rules.models import PurchaseOrder
from tests.e2e.test_pipeline import SAMPLES, load_samples
from tests.stack_pipeline import read_topic


def _priced(po: PurchaseOrder, price: str) -> PurchaseOrder:
    lines = [line.model_copy(update={"unit_price": Decimal(price)}) if line.line_no == 1 else line for line in po.lines]
    return po.model_copy(update={"lines": lines})


def test_a_price_corrected_in_sampro_clears_the_held_invoice_which_is_mailed_once(pipeline, unique_name):
    invoices, _ = load_samples(pipeline, unique_name)
    held = next(invoice for invoice in invoices if invoice["invoice_id"] == f"{unique_name}-MP-1002")
    po = PurchaseOrder.model_validate({**json.loads((SAMPLES / "02_manual_review_price" / "po.json").read_text()),
                                       "po_number": held["po_number"]})
    invoice_id = held["invoice_id"]
    pipeline.start_worker()
    pipeline.start_bot()
    upload(pipeline.settings, [held])

    def po_price() -> Decimal | None:
        """The PO price the invoice's PRICE_MISMATCH quotes (Sampro's numeric(18, 4): "15.5000")."""
        row = next((r for r in pipeline.scheduler.rows(po.po_number) if r["invoice_id"] == invoice_id), None)
        found = [r["expected"] for r in (row or {}).get("reasons") or [] if r["code"] == "PRICE_MISMATCH"]
        return Decimal(found[0]) if found else None

    pipeline.wait_for(lambda: po_price() == Decimal("15.50"), what="PRICE_MISMATCH at 15.50")
    # The buyer corrects the PO price, wrongly at first: held still, with the reason as it is now.
    pipeline.sampro.load_purchase_orders([_priced(po, "15.70")])
    pipeline.wait_for(lambda: po_price() == Decimal("15.70"), what="PRICE_MISMATCH at 15.70")
    assert pipeline.statuses()[invoice_id] == "manual_review"
    # Every change on sampro.changes so far again, as a replay of the topic brings them: nothing changes.
    changes = read_topic(pipeline.settings.kafka_bootstrap_servers, pipeline.settings.sampro_changes_topic)
    assert changes
    producer = Producer({"bootstrap.servers": pipeline.settings.kafka_bootstrap_servers})
    for message in changes:
        producer.produce(message.topic(), message.value(), message.key())
    assert producer.flush(30) == 0
    pipeline.wait_for(lambda: pipeline.unread()[pipeline.settings.sampro_changes_topic] == 0, what="the replay read")
    assert len(pipeline.scheduler.history(invoice_id)) == 2 and po_price() == Decimal("15.70")
    pipeline.sampro.load_purchase_orders([_priced(po, "15.75")])  # ... then right: the invoice clears
    pipeline.wait_for(lambda: pipeline.statuses().get(invoice_id) == "entered", what="the cleared invoice entered")
    mailed = [m for m in pipeline.mailbox.mailbox.messages
              if json.loads(m.get_body(("plain",)).get_content())["invoice_id"] == invoice_id]
    assert len(mailed) == 1
    history = [event["status"] for event in pipeline.scheduler.history(invoice_id)]
    assert history == ["manual_review", "manual_review", "ready_to_process", "sent_to_rpa", "entered"]


def test_an_invoice_awaiting_its_goods_clears_when_the_receipt_reaches_sampro(pipeline, unique_name, tmp_path):
    tolerances = tmp_path / "three-way.toml"
    tolerances.write_text("[default]\nthree_way_match = true\n")
    pipeline.settings = pipeline.settings.model_copy(update={"tolerances_file": tolerances})
    invoices, _ = load_samples(pipeline, unique_name)
    ready = next(invoice for invoice in invoices if invoice["invoice_id"] == f"{unique_name}-MP-1001")
    po = PurchaseOrder.model_validate({**json.loads((SAMPLES / "01_ready_to_process" / "po.json").read_text()),
                                       "po_number": ready["po_number"]})
    short = [line.model_copy(update={"quantity_received": Decimal(0)}) if line.line_no == 1 else line
             for line in po.lines]
    pipeline.sampro.load_purchase_orders([po.model_copy(update={"lines": short})])  # nothing received yet
    pipeline.start_worker()
    pipeline.start_bot()
    upload(pipeline.settings, [ready])
    invoice_id = ready["invoice_id"]
    pipeline.wait_for(lambda: pipeline.statuses().get(invoice_id) == "awaiting_receipt", what="awaiting_receipt")
    pipeline.sampro.load_purchase_orders([po])  # the goods arrive
    pipeline.wait_for(lambda: pipeline.statuses().get(invoice_id) == "entered", what="the received invoice entered")
    history = [event["status"] for event in pipeline.scheduler.history(invoice_id)]
    assert history == ["manual_review", "awaiting_receipt", "ready_to_process", "sent_to_rpa", "entered"]
