"""Marketplace -> invoices: Debezium records (or polled rows) become canonical events keyed by PO."""

from __future__ import annotations

import asyncio
import logging

from connectors.debezium import MarketplaceCapture, MarketplaceRecordError, decode_marketplace_record, register_connector
from streams.deadletter import dead_letter

log = logging.getLogger(__name__)


def register(pipeline) -> None:
    app, topics, codec, settings = pipeline.app, pipeline.topics, pipeline.codec, pipeline.settings

    async def publish(event) -> None:
        await topics.invoices.send(key=event.po_number.encode(), value=codec.encode(event))

    if settings.marketplace_source == "debezium":

        @app.agent(topics.marketplace, name="ingest-marketplace-cdc")
        async def ingest_cdc(stream):
            async for event in stream.events():
                try:
                    change = decode_marketplace_record(event.value)
                except MarketplaceRecordError as error:
                    await dead_letter(topics.dlq, event, error)
                    continue
                if change is not None:
                    await publish(change)

        if settings.connect_url:

            @app.task(on_leader=True)
            async def register_capture():
                capture = MarketplaceCapture(database_url=settings.marketplace_db_url, topic=settings.marketplace_topic)
                await asyncio.to_thread(register_connector, settings.connect_url, capture)

    source = pipeline.source
    if source is not None:

        @app.timer(settings.poll_interval_seconds, on_leader=True, name="poll-marketplace")
        async def poll_marketplace():
            events = await asyncio.to_thread(source.poll)
            for event in events:
                await publish(event)
            await app.producer.flush()  # produced before the watermark moves
            await asyncio.to_thread(source.commit)
            if events:
                log.info("polled %d invoice versions from the marketplace", len(events))
