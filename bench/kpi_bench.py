"""What the dashboard's figures cost on PostgreSQL as processscheduler grows: `kpi()` (the tiles,
AP's figures of the last 30 days; the live feed calls it), the first page of the invoice list, the
live feed's changes and the status figures /metrics reads on every scrape, at N invoice versions
and at five times N.

Baseline in the same run, at each size: one full scan of the history table (`count(*)`), the
least any figure over the whole history would cost. A figure whose ratio to it stays flat grows
with history; one whose ratio falls does not.

The history is AP's usual mix over 60 days, written through the processscheduler sink: most
invoices ready, sent to the RPA bot and entered three minutes later; some held for review (a few
of those released by a clerk), bad, awaiting their goods, failed by the bot, or parked.
Usage: python bench/kpi_bench.py [--invoices 10000]
Starts the local stack's PostgreSQL if it is not up, and stops it at the end.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from evaluate_bench import best_seconds, build  # noqa: E402
from sqlalchemy import create_engine, func, select, text  # noqa: E402

from connectors.scheduler import SqlProcessScheduler, upgrade  # noqa: E402
from connectors.scheduler.read_model import InvoiceQuery  # noqa: E402
from connectors.scheduler.read_model_sql import SqlInvoiceReadModel  # noqa: E402
from connectors.scheduler.tables import history  # noqa: E402
from connectors.sql import engine_for  # noqa: E402
from devstack import LocalStack  # noqa: E402
from rules import EvaluationContext, evaluate  # noqa: E402
from rules.lifecycle import InvoiceStatus, StatusChanged  # noqa: E402
from rules.models import Finding, Severity, Verdict, VerdictStatus  # noqa: E402

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
HELD = {VerdictStatus.MANUAL_REVIEW: "PRICE_MISMATCH", VerdictStatus.BAD_INVOICE: "TOTAL_MISMATCH"}


def history_of(number: int, rng: random.Random, documents, pos) -> list[Verdict | StatusChanged]:
    """One invoice's verdict and status changes, somewhere in the last 60 days."""
    at = NOW - timedelta(minutes=rng.uniform(5, 60 * 24 * 60))
    # Dated the day before it came: judged then, it is ready unless its held roll below says otherwise.
    document = {**documents[number % len(documents)], "invoice_id": f"MP-{number}", "invoice_number": f"N-{number}",
                "invoice_date": (at - timedelta(days=1)).date().isoformat()}
    verdict = evaluate(document, pos[number % len(pos)], EvaluationContext(now=at, today=at.date()))

    def change(status: InvoiceStatus, minutes: float, **extra) -> StatusChanged:
        return StatusChanged(event_id=f"{number}:{status.value}", invoice_id=verdict.invoice_id, invoice_version=1,
                             po_number=verdict.po_number, status=status, occurred_at=at + timedelta(minutes=minutes),
                             **extra)

    roll = rng.random()
    if roll < 0.13:  # held: manual review or a bad invoice; a third of the reviews released by a clerk
        status = VerdictStatus.MANUAL_REVIEW if roll < 0.09 else VerdictStatus.BAD_INVOICE
        finding = Finding(code=HELD[status], severity=Severity.ERROR, message="held")
        held = verdict.model_copy(update={"status": status, "http_status": status.http_status, "reasons": [finding],
                                          "rpa_payload": None})
        if roll < 0.03:
            return [held, change(InvoiceStatus.RELEASED, 60, actor="ana", reason="agreed"),
                    change(InvoiceStatus.SENT_TO_RPA, 61), change(InvoiceStatus.ENTERED, 64)]
        return [held]
    if roll < 0.15:
        return [verdict, change(InvoiceStatus.AWAITING_RECEIPT, 0)]
    if roll < 0.17:
        return [change(InvoiceStatus.WAITING_FOR_PO, 0)]
    if roll < 0.19:
        return [verdict, change(InvoiceStatus.SENT_TO_RPA, 0), change(InvoiceStatus.RPA_FAILED, 3)]
    return [verdict, change(InvoiceStatus.SENT_TO_RPA, 0), change(InvoiceStatus.ENTERED, 3)]


def best_ms(fn: Callable[[], object]) -> float:
    return best_seconds(fn, 3) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--invoices", type=int, default=10_000, help="invoice versions at the first size")
    args = parser.parse_args()
    stack = LocalStack(ROOT)
    fresh = stack.not_running(("postgres",))
    endpoints = stack.up(("postgres",))
    schema = f"kpi{uuid.uuid4().hex[:6]}"
    admin = create_engine(endpoints.scheduler_db_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        # As the worker's sink and the API make theirs: JSON columns written as they write them.
        engine = engine_for(f"{endpoints.scheduler_db_url}?options=-csearch_path%3D{schema}")
        upgrade(engine)
        scheduler, read_model = SqlProcessScheduler(engine), SqlInvoiceReadModel(engine)
        documents, pos = build(500)
        pos = [po.model_copy(update={"order_date": date(2026, 1, 1)}) for po in pos]  # ordered before any invoice
        rng, written = random.Random(11), 0
        print(f"dashboard figures on PostgreSQL, {args.invoices:,} and {5 * args.invoices:,} invoice versions "
              "over 60 days; best of 3, ms")
        for size in (args.invoices, 5 * args.invoices):
            started = time.perf_counter()
            while written < size:
                upto = min(size, written + 1_000)
                scheduler.record([m for n in range(written, upto) for m in history_of(n, rng, documents, pos)])
                written = upto
            with engine.begin() as conn:
                conn.execute(text("ANALYZE"))
                events = conn.execute(select(func.count()).select_from(history)).scalar_one()
            print(f"{size:,} invoice versions, {events:,} history events "
                  f"(written in {time.perf_counter() - started:,.0f} s)")

            def scan() -> None:
                with engine.connect() as conn:
                    conn.execute(select(func.count()).select_from(history)).scalar_one()

            baseline = best_ms(scan)
            print(f"  {'baseline: a full scan of the history':<40} {baseline:9.1f}")
            for label, fn in (("kpi() (tiles and AP figures)", lambda: read_model.kpi(NOW)),
                              ("invoice list, first page", lambda: read_model.invoices(InvoiceQuery())),
                              ("live feed changes, first 500", lambda: read_model.changes(0)),
                              ("/metrics: status_figures()", lambda: read_model.status_figures(NOW))):
                figure = best_ms(fn)
                print(f"  {label:<40} {figure:9.1f}   ({figure / baseline:5.1f} scans)")
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        stack.down(fresh)
    print(f"run finished {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")


if __name__ == "__main__":
    main()
