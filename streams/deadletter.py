"""Dead letters: what cannot be decoded goes to the DLQ with its original bytes and where it came from."""

from __future__ import annotations

import logging

from faust.types import EventT

log = logging.getLogger(__name__)


async def dead_letter(dlq_topic, event: EventT, error: Exception) -> None:
    message = event.message
    headers = {
        "source.topic": message.topic.encode(),
        "source.partition": str(message.partition).encode(),
        "source.offset": str(message.offset).encode(),
        "error": f"{type(error).__name__}: {error}".encode()[:4000],
    }
    log.warning("dead letter from %s[%s]@%s: %s", message.topic, message.partition, message.offset, error)
    await dlq_topic.send(key=message.key, value=message.value, headers=headers)
