"""Sampro -> sampro.changes: what changed in Sampro's POs, keyed by PO, for the PO agent to judge
held invoices again. Polled by the one worker that owns partition 0 of the invoices topic, or
decoded from Debezium's change events of the PO tables (`SAMPRO_CHANGES=debezium`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from connectors.debezium import SamproCapture, decode_sampro_record, sampro_capture
from connectors.debezium.config import CHECK_EVERY_SECONDS, KeptRunning, deleted_po_problem
from rules.errors import Unavailable
from streams.runtime import Batch, Flow, Source

if TYPE_CHECKING:
    from streams.bootstrap import Pipeline


def register(pipeline: Pipeline) -> None:
    if pipeline.settings.sampro_changes == "debezium":
        _register_capture(pipeline)
    changes, topics = pipeline.sampro_changes, pipeline.topics
    if changes is None:
        return

    def poll_sampro(batch: Batch) -> None:
        for change in changes.poll():
            batch.emit(topics.sampro_changes, change.po_number, change)

    pipeline.runtime.add_source(Source("poll-sampro-changes", pipeline.settings.poll_interval_seconds,
                                       (topics.invoices, 0), poll_sampro, committed=changes.commit,
                                       taken=changes.forget, backlog=changes.backlog))


def _register_capture(pipeline: Pipeline) -> None:
    runtime, topics, settings, limits = pipeline.runtime, pipeline.topics, pipeline.settings, pipeline.limits
    names = settings.sampro_names

    def publish(batch: Batch) -> None:
        for changes in batch.messages:  # a row's change: of its PO, and of the one a line moved from
            for change in changes:
                batch.emit(topics.sampro_changes, change.po_number, change)

    runtime.add_flow(Flow("ingest-sampro-cdc", (settings.sampro_cdc_topic,),
                          decode=lambda record: decode_sampro_record(record.value, names, limits), handle=publish,
                          kinds=(tuple,), stage="ingest"))
    if settings.connect_url:
        # Built now, so that a Sampro Debezium cannot capture (SQLite) stops the worker at start.
        capture = sampro_capture(settings.sampro_db_url, settings.sampro_cdc_topic, names,
                                 settings.kafka, settings.app_id)

        def rows_kept_for_deletions() -> None:  # at each status check: /readyz names it until it is fixed
            if isinstance(capture, SamproCapture) and (problem := deleted_po_problem(capture)) is not None:
                raise Unavailable("sampro", problem)

        kept = KeptRunning(settings.connect_url, capture, rows_kept_for_deletions)
        runtime.add_source(Source("sampro-capture", CHECK_EVERY_SECONDS, (topics.invoices, 0), lambda batch: kept()))
