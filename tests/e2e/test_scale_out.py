"""A second worker joins while the first is busy: the partitions move, nothing is lost."""

from __future__ import annotations

from confluent_kafka import Producer

from devstack.workload import invoices, purchase_orders
from schemas.codec import SingleObjectCodec

INVOICES, POS = 20000, 1000


def test_a_worker_joining_early_loses_no_invoice(pipeline, unique_name):
    pos = purchase_orders(POS, unique_name)
    stream = invoices(INVOICES, pos, unique_name)
    pipeline.sampro.load_purchase_orders(pos)
    producer = Producer({"bootstrap.servers": pipeline.settings.kafka_bootstrap_servers,
                         "partitioner": "murmur2_random", "linger.ms": 20})
    codec = SingleObjectCodec()
    for submission in stream:
        producer.produce(pipeline.settings.invoices_topic, key=submission.po_number.encode(),
                         value=codec.encode(submission))
    assert producer.flush(60) == 0

    first = pipeline.start_worker()
    # The second joins while the first has fetched (and buffered) messages it has not processed
    # nor committed yet: the rebalance clears that buffer, and the messages must be read again.
    pipeline.start_worker()
    pipeline.worker = first  # wait_for watches one of them

    def missing() -> list[str]:
        found = {r["invoice_id"] for r in pipeline.scheduler.rows()}
        return [s.invoice_id for s in stream if s.invoice_id not in found]

    pipeline.wait_for(lambda: not missing(), timeout=300,
                      what=lambda: f"every invoice ({len(missing())} missing, e.g. {missing()[:5]})")
