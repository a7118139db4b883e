"""A PO of thousands of lines, on the real stack: each verdict, and the PO ledger's record of it,
carries the PO snapshot the invoice was judged against, and past 1 MB Kafka refused them. At
6,302 lines of 64-character part numbers a valid invoice was a bad_invoice no clerk could release."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal

from devstack.demo import upload
from devstack.workload import invoices, purchase_orders
from rules.models import PurchaseOrderLine
from streams.record_size import KAFKA_TAKES
from tests.stack_pipeline import pipeline, read_topic  # noqa: F401 (the fixture: Debezium, Kafka, worker, PostgreSQL)

LINES = 12_000


def test_an_invoice_against_a_po_of_twelve_thousand_lines_is_decided_and_handed_to_the_bot(pipeline, unique_name):  # noqa: F811
    po = purchase_orders(2, unique_name)[1]  # the first is closed, and its first invoice off
    # Part numbers as an ERP makes them, 64 characters that repeat little, and prices that differ.
    parts = [hashlib.sha256(f"{unique_name}-{n}".encode()).hexdigest() for n in range(LINES)]
    big = po.model_copy(update={"lines": [*po.lines, *(
        PurchaseOrderLine(line_no=len(po.lines) + n + 1, part_number=part, unit_price=Decimal(n % 9973) / 100 + 1,
                          quantity_ordered=Decimal(n % 500 + 1), quantity_received=Decimal(n % 500 + 1))
        for n, part in enumerate(parts))]})
    pipeline.sampro.load_purchase_orders([big])
    submission = invoices(2, [big], unique_name)[1]
    pipeline.start_worker()
    upload(pipeline.settings, [submission.document])
    invoice_id = submission.invoice_id
    pipeline.wait_for(lambda: pipeline.statuses().get(invoice_id) == "sent_to_rpa", timeout=120,
                      what="the invoice against the big PO")
    assert pipeline.dead_letters() == []
    (verdict,) = [m for m in read_topic(pipeline.settings.kafka_bootstrap_servers, pipeline.settings.verdicts_topic)
                  if invoice_id.encode() in m.value() and len(m.value()) > KAFKA_TAKES]
    assert len(verdict.value()) > 1_100_000  # as Avro, uncompressed; Kafka holds it compressed

    def mailed() -> list[str]:
        return [invoice_id for m in list(pipeline.mailbox.mailbox.messages)
                if json.loads(m.get_body(("plain",)).get_content())["invoice_id"] == invoice_id]

    pipeline.wait_for(lambda: mailed() == [invoice_id], timeout=60, what="the RPA email")
