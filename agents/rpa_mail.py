"""rpa.requests -> the RPA bot's mailbox. An unreachable mailbox holds the offset, never drops."""

from __future__ import annotations

import asyncio
import logging

from connectors.rpa_mail import RpaMailError
from schemas.codec import DecodeError
from streams.deadletter import dead_letter

log = logging.getLogger(__name__)


def register(pipeline) -> None:
    app, topics, codec, mailer = pipeline.app, pipeline.topics, pipeline.codec, pipeline.mailer

    @app.agent(topics.rpa_requests, name="send-to-rpa-mailbox")
    async def send_to_rpa_mailbox(stream):
        async for event in stream.events():
            try:
                request = codec.decode(event.value)
            except DecodeError as error:
                await dead_letter(topics.dlq, event, error)
                continue
            while True:
                try:
                    await asyncio.to_thread(mailer.send, request)
                    break
                except RpaMailError as error:  # back-pressure: wait, keep the offset, try again
                    log.error("%s; retrying in 30 s", error)
                    await asyncio.sleep(30)
