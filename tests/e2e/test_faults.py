"""Outages while invoices flow and the stand-in bot completes them: the Kafka broker killed and
restarted, processscheduler's PostgreSQL stopped, the RPA mailbox down, Sampro unreachable, each
for 30 s. Each ends with nothing lost, nothing doubled, nothing stuck and no manual step, and
prints how long the pipeline took to recover."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager, contextmanager

import pytest
from confluent_kafka import Producer
from sqlalchemy.engine import make_url

from devstack.stack import LocalStack
from devstack.workload import decided, invoices, purchase_orders
from rules.models import Verdict, VerdictStatus
from schemas.codec import SingleObjectCodec
from tests.conftest import ROOT
from tests.faults import TcpProxy

POS, PER_PO, RATE, OUTAGE = 40, 6, 12.0, 30.0


def expected_statuses(pos, stream) -> dict[str, str]:
    """What an uninterrupted run ends with when the bot enters every ready invoice."""
    return {m.invoice_id: "entered" if m.status is VerdictStatus.READY_TO_PROCESS else m.status.value
            for m in decided(pos, stream) if isinstance(m, Verdict)}


def offer(pipeline, stream, rate: float) -> threading.Thread:
    """Produces the stream at `rate` per second in the background, keyed by PO, as the ingest does."""
    def run() -> None:
        producer = Producer({"bootstrap.servers": pipeline.settings.kafka_bootstrap_servers,
                             "partitioner": "murmur2_random", "linger.ms": 5})
        codec, started = SingleObjectCodec(), time.monotonic()
        for n, submission in enumerate(stream):
            time.sleep(max(0.0, started + n / rate - time.monotonic()))
            producer.produce(pipeline.settings.invoices_topic, key=submission.po_number.encode(),
                             value=codec.encode(submission))
            producer.poll(0)
        assert producer.flush(180) == 0

    thread = threading.Thread(target=run, name="offer", daemon=True)
    thread.start()
    return thread


def history_events(pipeline) -> int:
    try:
        return sum(len(pipeline.scheduler.history(row["invoice_id"])) for row in pipeline.scheduler.rows())
    except Exception:  # processscheduler itself may be the one that is down
        return -1


def run_through(pipeline, unique_name, outage: Callable[[], AbstractContextManager], *dependencies: str) -> None:
    """`dependencies`: what the worker may name as down while it waits (one of them at least)."""
    pos = purchase_orders(POS, unique_name)
    stream = invoices(POS * PER_PO, pos, unique_name)
    expected = expected_statuses(pos, stream)
    pipeline.sampro.load_purchase_orders(pos)
    pipeline.start_worker()
    pipeline.start_bot()
    feeding = offer(pipeline, stream, RATE)
    pipeline.wait_for(lambda: len(pipeline.statuses()) >= 20, what="the first invoices")
    with outage():
        cut = time.monotonic()
        # The worker says what it waits for once it has tried it (a mailbox is tried at the next email).
        pipeline.wait_for(lambda: set(dependencies) & set(pipeline.readiness()[1]["down"]), timeout=OUTAGE,
                          what=f"/readyz naming one of {dependencies} as down")
        status, body = pipeline.readiness()
        assert status == 503 and set(dependencies) & set(body["down"]), body
        time.sleep(max(0.0, OUTAGE - (time.monotonic() - cut)))
        before = history_events(pipeline)
    back = time.monotonic()
    pipeline.wait_for(lambda: history_events(pipeline) > before, timeout=120, what="the first progress after it")
    first_progress = time.monotonic() - back
    feeding.join(180)

    def wrong() -> list[tuple[str, str, str]]:
        found = pipeline.statuses()
        return [(i, found.get(i, "-"), want) for i, want in expected.items() if found.get(i) != want]

    pipeline.wait_for(lambda: not wrong(), timeout=240,
                      what=lambda: f"every invoice ({len(wrong())} left: {wrong()[:5]})")
    caught_up = time.monotonic() - back
    print(f"\n{dependencies[0]} down for {OUTAGE:.0f} s: first progress {first_progress:.1f} s after it came back, "
          f"every invoice decided and entered {caught_up:.1f} s after it")

    rows = pipeline.scheduler.rows()
    assert len(rows) == len(stream) == len({(r["invoice_id"], r["invoice_version"]) for r in rows})
    hand_offs = Counter(h["invoice_id"] for r in rows for h in pipeline.scheduler.history(r["invoice_id"])
                        if h["status"] == "sent_to_rpa")
    assert set(hand_offs.values()) == {1}  # never handed to the bot twice
    mailed = Counter(m["Message-ID"] for m in pipeline.mailbox.mailbox.messages)
    assert len(mailed) == sum(1 for s in expected.values() if s == "entered") and set(mailed.values()) == {1}
    assert pipeline.dead_letters() == []
    assert pipeline.worker.running()
    assert set(pipeline.unread().values()) == {0}, pipeline.unread()
    assert pipeline.readiness() == (200, {"ready": True, "started": True, "down": {}})


@contextmanager
def stack_outage(name: str):
    stack = LocalStack(ROOT)
    stack.outage(name)
    try:
        yield
    finally:
        stack.recover(name)


def test_the_kafka_broker_killed_and_restarted(pipeline, unique_name):
    run_through(pipeline, unique_name, lambda: stack_outage("kafka"), "kafka")


def test_processscheduler_postgresql_stopped(pipeline, unique_name):
    # The stack's one PostgreSQL also holds the Sampro stand-in: whichever is read first is the one named.
    run_through(pipeline, unique_name, lambda: stack_outage("postgres"), "processscheduler", "sampro")


def test_the_rpa_mailbox_down(pipeline, unique_name):
    @contextmanager
    def mailbox_outage():
        pipeline.mailbox.outage()
        try:
            yield
        finally:
            pipeline.mailbox.recover()

    run_through(pipeline, unique_name, mailbox_outage, "smtp")


def test_sampro_unreachable(pipeline, unique_name):
    url = make_url(pipeline.settings.sampro_db_url)
    proxy = TcpProxy(url.port)
    pipeline.settings = pipeline.settings.model_copy(
        update={"sampro_db_url": url.set(port=proxy.port).render_as_string(hide_password=False)})

    @contextmanager
    def sampro_outage():
        proxy.cut()
        try:
            yield
        finally:
            proxy.restore()

    try:
        run_through(pipeline, unique_name, sampro_outage, "sampro")
    finally:
        proxy.cut()


pytestmark = pytest.mark.e2e
