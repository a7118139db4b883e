"""A second worker joins while the first is busy: the partitions move, nothing is lost; and the two
never both hand one vendor's invoice number to the RPA bot."""

from __future__ import annotations

from collections import Counter

from devstack.workload import invoices, purchase_orders

INVOICES, POS = 20000, 1000
PAIRS = 50  # the workload gives PO n and n + 50 one vendor


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

    # Pairs of one vendor's invoice under one number on two idle POs, sent at once: where the two
    # workers each decide one, only the hand-off's gate (rpa_invoice_numbers) stands between them.
    fresh = purchase_orders(2 * PAIRS, f"{unique_name}-pair")
    pairs = invoices(2 * PAIRS, fresh, f"{unique_name}-pair")
    for first, second in zip(pairs[:PAIRS], pairs[PAIRS:], strict=True):
        assert first.document["vendor_id"] == second.document["vendor_id"]
        second.document["invoice_number"] = first.document["invoice_number"]
    pipeline.sampro.load_purchase_orders(fresh)
    pipeline.submit(pairs)
    handed = {"sent_to_rpa", "entered"}

    def statuses() -> dict[str, str]:
        return {r["invoice_id"]: r["status"] for r in pipeline.scheduler.rows() if "-pair-" in r["invoice_id"]}

    def twice() -> list[tuple[str, str]]:
        """Pairs both at the bot: the second's refused hand-off (rpa_failed) may still be on its way."""
        found = statuses()
        return [(a.invoice_id, b.invoice_id) for a, b in zip(pairs[:PAIRS], pairs[PAIRS:], strict=True)
                if {found.get(a.invoice_id), found.get(b.invoice_id)} <= handed]

    pipeline.wait_for(lambda: len(statuses()) == 2 * PAIRS and not twice(), timeout=120,
                      what=lambda: f"no pair handed to the RPA bot twice ({twice()})")
    subjects = Counter(str(message["Subject"]) for message in pipeline.mailbox.mailbox.messages
                       if "-pair-" in str(message["Subject"]))
    assert subjects and max(subjects.values()) == 1, subjects.most_common(3)  # one email per vendor and number
    found = statuses()
    print(f"pairs: {len(subjects)} emailed, {sum(s == 'rpa_failed' for s in found.values())} stopped at the "
          f"hand-off, {sum(s == 'bad_invoice' for s in found.values())} bad_invoice")
