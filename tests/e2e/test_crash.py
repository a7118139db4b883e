"""kill -9 in the middle of a stream: after a restart, nothing is lost and nothing is doubled."""

from __future__ import annotations

import json
from collections import Counter

from connectors.rpa_mail.smtp import SqlSentLog
from devstack.workload import invoices, purchase_orders, uninterrupted
from schemas.codec import SingleObjectCodec
from tests.stack_pipeline import read_topic

INVOICES, POS = 5000, 3500


def test_a_killed_worker_resumes_without_loss_or_duplicates(pipeline, unique_name):
    pos = purchase_orders(POS, unique_name)
    stream = invoices(INVOICES, pos, unique_name)
    expected = {row["invoice_id"]: row for row in uninterrupted(pos, stream).rows()}
    pipeline.sampro.load_purchase_orders(pos)
    pipeline.submit(stream)

    worker = pipeline.start_worker()
    pipeline.wait_for(lambda: len(pipeline.scheduler.rows()) >= INVOICES // 4, timeout=180, what="a quarter")
    worker.kill()
    done_before_crash = len(pipeline.scheduler.rows())
    assert done_before_crash < INVOICES, "the crash came too late to prove anything"

    pipeline.start_worker()

    def mismatches() -> list[tuple[str, str, str]]:
        found = {r["invoice_id"]: r["status"] for r in pipeline.scheduler.rows()}
        return [(i, found.get(i, "-"), want["status"]) for i, want in expected.items()
                if found.get(i) != want["status"]]

    pipeline.wait_for(lambda: not mismatches(), timeout=300,
                      what=lambda: f"every invoice after the restart ({len(mismatches())} left: {mismatches()[:5]})")

    # Only this stream's rows: the fixture's CDC capture also sees rows that tests running beside
    # this one insert into the shared marketplace table.
    rows = [r for r in pipeline.scheduler.rows() if r["invoice_id"].startswith(f"{unique_name}-")]
    assert len({(r["invoice_id"], r["invoice_version"]) for r in rows}) == len(rows) == INVOICES
    for row in rows:
        want = expected[row["invoice_id"]]
        assert (row["status"], [r["code"] for r in row["reasons"] or []], row["rpa_payload"]) == (
            want["status"], [r["code"] for r in want.get("reasons") or []], want.get("rpa_payload")), row["invoice_id"]
    sent = [r["invoice_id"] for r in rows if r["status"] == "sent_to_rpa"]

    def mailed() -> list[str]:
        return [invoice_id for m in list(pipeline.mailbox.mailbox.messages)
                if (invoice_id := json.loads(m.get_body(("plain",)).get_content())["invoice_id"])
                .startswith(unique_name)]

    def missing_emails() -> str:
        missing = sorted(set(sent) - set(mailed()))
        codec = SingleObjectCodec()
        requested = Counter(codec.decode(m.value()).invoice_id
                            for m in read_topic(pipeline.settings.kafka_bootstrap_servers,
                                                pipeline.settings.rpa_requests_topic))
        return (f"{len(sent)} emails ({len(mailed())} came; missing {len(missing)}: {missing[:10]}; "
                f"their requests on rpa.requests: {[requested[i] for i in missing[:10]]})\n"
                f"sent log:\n{pipeline.sent_log(missing[:10])}")

    def in_doubt() -> set[str]:
        """Cut off by the kill between the sent log's claim and the server's answer: reported for AP
        to check the mailbox (rpa_emails_in_doubt), never sent twice."""
        return {invoice_id for invoice_id, _ in SqlSentLog(pipeline.scheduler.engine).in_doubt()}

    pipeline.wait_for(lambda: not set(sent) - set(mailed()) - in_doubt(), timeout=120, what=missing_emails)
    doubt = in_doubt()  # before the mailbox: one in doubt now may come in, none mailed can go
    mailed = mailed()
    assert len(mailed) == len(set(mailed)) and set(mailed) <= set(sent)  # never two emails for one invoice
    missing = set(sent) - set(mailed)
    assert missing <= doubt and len(missing) <= 1  # the kill cuts one off at most, and the sent log says which
    assert {"sent_to_rpa", "waiting_for_po", "manual_review", "bad_invoice"} <= {r["status"] for r in rows}
