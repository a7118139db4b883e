"""verdicts -> processscheduler: each batch is written in one transaction before its offsets commit."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rules.lifecycle import StatusChanged
from rules.models import Verdict
from streams.runtime import Flow

if TYPE_CHECKING:
    from streams.bootstrap import Pipeline


def register(pipeline: Pipeline) -> None:
    codec, scheduler = pipeline.codec, pipeline.scheduler
    pipeline.runtime.add_flow(Flow("record-in-processscheduler", (pipeline.topics.verdicts,),
                                   decode=lambda record: codec.decode(record.value),
                                   handle=lambda batch: scheduler.record(batch.messages),
                                   kinds=(Verdict, StatusChanged), stage="record"))
