"""Sampro -> sampro.changes: what changed in Sampro's POs, keyed by PO, for the PO agent to judge
held invoices again. Polled by the one worker that owns partition 0 of the invoices topic."""

from __future__ import annotations

from typing import TYPE_CHECKING

from streams.runtime import Batch, Source

if TYPE_CHECKING:
    from streams.bootstrap import Pipeline


def register(pipeline: Pipeline) -> None:
    changes, topics = pipeline.sampro_changes, pipeline.topics
    if changes is None:
        return

    def poll_sampro(batch: Batch) -> None:
        for change in changes.poll():
            batch.emit(topics.sampro_changes, change.po_number, change)

    pipeline.runtime.add_source(Source("poll-sampro-changes", pipeline.settings.poll_interval_seconds,
                                       (topics.invoices, 0), poll_sampro, committed=changes.commit))
