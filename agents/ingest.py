"""Marketplace -> invoices: Debezium records, or polled rows, become canonical events keyed by PO.

Polling and registering the capture are sources: done by the one worker that owns partition 0
of the invoices topic, so two workers never poll the same rows.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from connectors.debezium import decode_marketplace_record
from connectors.debezium.config import (
    CHECK_EVERY_SECONDS,
    KeptRunning,
    marketplace_capture,
    replica_identity_problem,
)
from rules.errors import DataError, Unavailable
from rules.lifecycle import InvoiceSubmitted, InvoiceWithdrawn
from streams.runtime import Batch, Flow, Source

if TYPE_CHECKING:
    from streams.bootstrap import Pipeline


def register(pipeline: Pipeline) -> None:
    runtime, topics, settings, limits = pipeline.runtime, pipeline.topics, pipeline.settings, pipeline.limits
    anchor = (topics.invoices, 0)

    def publish(batch: Batch) -> None:
        for event in batch.messages:
            batch.emit(topics.invoices, event.po_number, event)

    if settings.marketplace_source == "debezium":
        runtime.add_flow(Flow("ingest-marketplace-cdc", (topics.marketplace,),
                              decode=lambda record: decode_marketplace_record(record.value, limits), handle=publish,
                              kinds=(InvoiceSubmitted, InvoiceWithdrawn), stage="ingest"))
        if settings.connect_url:
            capture = marketplace_capture(settings.marketplace_db_url, settings.marketplace_topic, settings.app_id)

            def full_rows_kept() -> None:  # at each status check: /readyz names it until it is fixed
                if (problem := replica_identity_problem(capture)) is not None:
                    raise Unavailable("marketplace", problem)

            kept = KeptRunning(settings.connect_url, capture, full_rows_kept)
            runtime.add_source(Source("marketplace-capture", CHECK_EVERY_SECONDS, anchor, lambda batch: kept()))

    source = pipeline.source
    if source is not None:

        def where(invoice_id: str) -> tuple[tuple[str, bytes], ...]:
            return ("source.table", b"marketplace_invoices"), ("source.invoice_id", invoice_id.encode())

        def poll_marketplace(batch: Batch) -> None:
            polled = source.poll()
            for event in polled.events:
                try:
                    batch.emit(topics.invoices, event.po_number, event)
                except DataError as error:  # a record Kafka would refuse (a 2 MB vendor id, which SQLite keeps)
                    batch.dead_letter(event.invoice_id, json.dumps(event.document, default=str).encode(),
                                      where(event.invoice_id), "emit", error)
            for row in polled.unreadable:  # its columns as text, which no limit bounds yet
                batch.dead_letter(row.invoice_id, row.raw, where(row.invoice_id), "read", DataError(row.error))

        runtime.add_source(Source("poll-marketplace", settings.poll_interval_seconds, anchor, poll_marketplace,
                                  committed=source.commit, taken=source.forget, backlog=source.backlog))
