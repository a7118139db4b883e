"""verdicts -> processscheduler: each batch is written in one transaction before its offsets commit."""

from __future__ import annotations

from typing import TYPE_CHECKING

from connectors.ports import SchedulerEntry
from connectors.scheduler.rows import status_change_entry, verdict_entry
from rules.errors import DataError
from rules.lifecycle import StatusChanged
from rules.models import Verdict
from streams.broker import Record
from streams.runtime import Batch, Flow

if TYPE_CHECKING:
    from streams.bootstrap import Pipeline

SINK = "record-in-processscheduler"


def register(pipeline: Pipeline) -> None:
    codec, scheduler, recent = pipeline.codec, pipeline.scheduler, pipeline.desk.recent

    def decode(record: Record) -> SchedulerEntry | None:
        """Written from the record as read, not validated again: the PO agent wrote it (see
        `rows.verdict_entry`)."""
        kind, data = codec.read_unvalidated(record.value)
        if kind is Verdict:
            return verdict_entry(data)
        if kind is StatusChanged:
            return status_change_entry(data)
        raise DataError(f"a {kind.__name__} is not a message {SINK} takes (Verdict, StatusChanged)")

    def record(batch: Batch) -> None:
        scheduler.record(batch.messages)
        # The duplicate checks find these verdicts there now.
        recent.recorded((*entry.key, entry.event["event_id"]) for entry in batch.messages)

    pipeline.runtime.add_flow(Flow(SINK, (pipeline.topics.verdicts,), decode=decode, handle=record,
                                   kinds=(SchedulerEntry,), stage="record"))
