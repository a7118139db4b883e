"""The PO agent: one ordered stream of work per purchase order, decided in batches."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from rules.lifecycle import RpaRequest
from schemas.codec import DecodeError
from streams.deadletter import dead_letter
from streams.tables import read_ledger, write_ledger


def register(pipeline) -> None:
    app, topics, codec, settings = pipeline.app, pipeline.topics, pipeline.codec, pipeline.settings
    table, desk = pipeline.ledgers, pipeline.desk

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
            ledgers = {po: ledger for po in event_of if (ledger := read_ledger(table, po)) is not None}
            before = dict(ledgers)
            emitted = await asyncio.to_thread(desk.decide, work, ledgers, datetime.now(UTC))
            for po, ledger in ledgers.items():
                if before.get(po) is not ledger:
                    write_ledger(table, event_of[po], ledger)
            for message in emitted:
                target = topics.rpa_requests if isinstance(message, RpaRequest) else topics.verdicts
                await target.send(key=message.po_number.encode(), value=codec.encode(message))
