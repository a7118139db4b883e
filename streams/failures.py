"""The runtime's failure policy, declared once: what happens to a record when its work fails.

Two kinds of error, told apart by type (see `rules.errors`):

- `Unavailable` -> pause and retry: the partition stops at the record, nothing of it is
  committed, and it is read again after a capped exponential back-off with jitter, until the
  dependency is back.
- `DataError`, or any other error once the record is alone -> dead-letter: the record goes to
  the DLQ with its bytes, source topic/partition/offset, the stage and the error; its flow may
  add a verdict; the rest of the batch goes on.

An error that is neither is first taken for a batch problem: the batch is tried again one record
at a time, so that only the record that fails on its own is dead-lettered.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable
from dataclasses import dataclass

from rules.errors import DataError, Unavailable
from streams.broker import Output, Record
from streams.record_size import too_large

MAX_ERROR_TEXT = 2000
MAX_DEAD_LETTER_BYTES = 1_000_000  # key, value and headers: under what Kafka takes (streams/record_size.py)
MAX_DEAD_LETTER_KEY_BYTES = 1_000  # a key is a PO number or an invoice id: one longer is kept in part
MAX_DEAD_LETTER_HEADER_BYTES = 64_000  # of the record's own headers (a trace id, where it was forwarded from)


class Policy(enum.Enum):
    PAUSE_AND_RETRY = "pause and retry"
    DEAD_LETTER = "dead-letter"


FAILURE_POLICY: tuple[tuple[type[BaseException], Policy], ...] = (
    (Unavailable, Policy.PAUSE_AND_RETRY),
    (DataError, Policy.DEAD_LETTER),
    (Exception, Policy.DEAD_LETTER),  # only once the record fails alone: see the module's docstring
)


def policy_for(error: BaseException) -> Policy:
    return next(policy for kind, policy in FAILURE_POLICY if isinstance(error, kind))


def describe(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}"
    return text if len(text) <= MAX_ERROR_TEXT else text[: MAX_ERROR_TEXT - 3] + "..."


def dead_letter(dlq_topic: str, record: Record, flow: str, stage: str, error: BaseException) -> Output:
    """The record as it came (its own headers under `source.header.`), where from, and why it
    could not be used."""
    return dead_letter_of(dlq_topic, record.key, record.value, (
        ("source.topic", record.topic.encode()),
        ("source.partition", str(record.partition).encode()),
        ("source.offset", str(record.offset).encode()),
        ("source.timestamp", str(record.timestamp_ms or "").encode()),
        ("flow", flow.encode()),
        ("stage", stage.encode()),
        *_its_headers(record.headers),
    ), describe(error))


def _its_headers(headers: tuple[tuple[str, bytes | None], ...]) -> list[tuple[str, bytes]]:
    """A record's own headers, as many as `MAX_DEAD_LETTER_HEADER_BYTES` hold: without them, a
    record forwarded to its key's partition was named only by where its copy was."""
    kept: list[tuple[str, bytes]] = []
    room = MAX_DEAD_LETTER_HEADER_BYTES
    for name, text in headers:
        header = (f"source.header.{name}", text or b"")
        room -= len(header[0]) + len(header[1])
        if room < 0:
            return [*kept, ("source.headers.left_out", str(len(headers) - len(kept)).encode())]
        kept.append(header)
    return kept


def dead_letter_of(dlq_topic: str, key: bytes | None, value: bytes | None,
                   provenance: tuple[tuple[str, bytes], ...], error: str) -> Output:
    """A dead letter of `value`, whatever it came from (a record, a database row). One Kafka would
    refuse, measured as `Batch.emit` measures an output (compressed), is cut, and says so: refused by
    the broker, it failed the commit of its batch, batch after batch. (A record of a 63 kB key and a
    985 kB value, which the broker took, made a dead letter it would refuse; cut at 1 MB as it
    stood, a 3 MB record the broker took compressed lost all but its first megabyte.)"""
    cut: list[tuple[str, bytes]] = []
    if key is not None and len(key) > MAX_DEAD_LETTER_KEY_BYTES:
        key, cut = key[:MAX_DEAD_LETTER_KEY_BYTES], [("key.length", str(len(key)).encode())]
    headers = [*provenance, ("error", error[:MAX_ERROR_TEXT].encode(errors="replace"))]
    besides = len(key or b"") + sum(len(name) + len(text) for name, text in headers) + 64
    if value is not None and too_large(value, besides) is not None:
        value, cut = value[:MAX_DEAD_LETTER_BYTES - besides], [*cut, ("value.length", str(len(value)).encode())]
    return Output(dlq_topic, key, value, headers=(*headers, *cut))


@dataclass
class Backoff:
    """Capped exponential back-off with jitter: first, 2x first, 4x first ... up to `cap` seconds,
    each drawn between half and all of it, so workers that failed together do not retry together."""

    first: float = 0.5
    cap: float = 10.0
    draw: Callable[[], float] = random.random

    def delay(self, attempt: int) -> float:
        ceiling = min(self.cap, self.first * 2.0 ** min(attempt, 30))
        return ceiling * (0.5 + self.draw() / 2)
