"""verdicts -> processscheduler: each batch is written and committed before its offsets are."""

from __future__ import annotations

import asyncio

from schemas.codec import DecodeError
from streams.deadletter import dead_letter


def register(pipeline) -> None:
    app, topics, codec, settings, scheduler = (pipeline.app, pipeline.topics, pipeline.codec, pipeline.settings,
                                                pipeline.scheduler)

    @app.agent(topics.verdicts, name="record-in-processscheduler")
    async def record_in_processscheduler(stream):
        async for events in stream.take_events(settings.batch_size, within=settings.batch_seconds):
            decisions = []
            for event in events:
                try:
                    decisions.append(codec.decode(event.value))
                except DecodeError as error:
                    await dead_letter(topics.dlq, event, error)
            await asyncio.to_thread(scheduler.record, decisions)
