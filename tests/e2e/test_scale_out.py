"""A second worker joins while the first is busy: the partitions move, nothing is lost."""

from __future__ import annotations

from devstack.workload import invoices, purchase_orders

INVOICES, POS = 20000, 1000


def test_a_worker_joining_early_loses_no_invoice(pipeline, unique_name):
    pos = purchase_orders(POS, unique_name)
    stream = invoices(INVOICES, pos, unique_name)
    pipeline.sampro.load_purchase_orders(pos)
    pipeline.submit(stream)

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
