"""The PO agent: one ordered stream of work per purchase order, decided in batches."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from rules.lifecycle import RpaRequest
from schemas.codec import DecodeError
from streams.deadletter import dead_letter
from streams.tables import hand_over_changelog


def register(pipeline) -> None:
    app, topics, codec, settings = pipeline.app, pipeline.topics, pipeline.codec, pipeline.settings
    store, desk = pipeline.ledgers, pipeline.desk

    @app.agent(topics.work, name="decide-purchase-order-work")
    async def decide_purchase_order_work(stream):
        async for events in stream.take_events(settings.batch_size, within=settings.batch_seconds):
            work, event_of = [], {}
            for event in events:
                try:
                    message = codec.decode(event.value)
                except DecodeError as error:
                    await dead_letter(topics.dlq, event, error)
                    continue
                work.append(message)
                event_of[message.po_number] = event
            before = {po: stored for po in event_of if (stored := store.load(event_of[po], po)) is not None}
            ledgers = {po: stored.ledger for po, stored in before.items()}
            emitted = await asyncio.to_thread(desk.decide, work, ledgers, datetime.now(UTC))
            for po, ledger in ledgers.items():
                if po not in before or before[po].ledger is not ledger:
                    store.save(event_of[po], ledger, before.get(po))
            for message in emitted:
                target = topics.rpa_requests if isinstance(message, RpaRequest) else topics.verdicts
                await target.send(key=message.po_number.encode(), value=codec.encode(message))
            await hand_over_changelog(app)
