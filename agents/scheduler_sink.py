"""verdicts -> processscheduler: each batch is written in one transaction before its offsets commit."""

from __future__ import annotations

from typing import TYPE_CHECKING

from connectors.ports import SchedulerEntry
from connectors.scheduler.rows import entry_of, verdict_entry
from rules.errors import DataError
from rules.lifecycle import StatusChanged
from rules.models import Verdict
from schemas.codec import from_record
from streams.broker import Record
from streams.runtime import Flow

if TYPE_CHECKING:
    from streams.bootstrap import Pipeline

SINK = "record-in-processscheduler"


def register(pipeline: Pipeline) -> None:
    codec, scheduler = pipeline.codec, pipeline.scheduler

    def decode(record: Record) -> SchedulerEntry | None:
        """A verdict is written from its record as read, not validated again: the PO agent wrote
        it (`rows.verdict_entry`); a status change, small, is decoded in full."""
        kind, data = codec.read_unvalidated(record.value)
        if kind is Verdict:
            return verdict_entry(data)
        message = from_record(kind, data)
        if not isinstance(message, StatusChanged):
            raise DataError(f"a {kind.__name__} is not a message {SINK} takes (Verdict, StatusChanged)")
        return entry_of(message)

    pipeline.runtime.add_flow(Flow(SINK, (pipeline.topics.verdicts,), decode=decode,
                                   handle=lambda batch: scheduler.record(batch.messages),
                                   kinds=(SchedulerEntry,), stage="record"))
