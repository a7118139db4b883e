"""How large a record the worker may send.

The worker's producer compresses what it sends (zstd), and a broker weighs a record batch as it
arrives, compressed, against the topic's `max.message.bytes` (1 MiB unless raised). So a record
of a few MiB is taken when it compresses under that: a verdict, and the PO ledger's record of
it, carry the PO snapshot the invoice was judged against, and a PO of 6,000 lines made them
larger than 1 MB as Avro, which turned a valid invoice into a `bad_invoice`.

A record Kafka would refuse fails the commit of the whole batch, batch after batch: such a
record is refused before it is sent, and its input is dead-lettered, naming the size. What zstd
makes of it is measured with zstd at the producer's level: no other codec bounds it (zlib at its
fastest, tried first, compressed text of short repeats to 0.98 MB that zstd made 1.24 MB of).
A record past the limit uncompressed is alone in its batch (`batch.size` is the limit), and only
it pays for the measure (about 3 ms a MiB); the broker's 1,048,588 leaves room for the batch's
framing and for librdkafka's zstd build.
"""

from __future__ import annotations

import zstandard

TOPICS_TAKE = 1_048_588  # a topic's max.message.bytes unless raised: the least the worker starts on
KAFKA_TAKES = 1_000_000  # compressed, under TOPICS_TAKE with the batch's framing
TOPIC_CODECS = ("producer", "zstd")  # a topic's compression.type that keeps the batch as the producer made it
MAX_RECORD_BYTES = 16_000_000  # uncompressed: the producer's message.max.bytes, what a reader holds at once
ZSTD_LEVEL = 3  # zstd's own default, which librdkafka takes; set here so that both say the same
PRODUCER_CONFIG = {"compression.type": "zstd", "compression.level": ZSTD_LEVEL, "batch.size": KAFKA_TAKES,
                   "message.max.bytes": MAX_RECORD_BYTES + 100_000}


def too_large(value: bytes, besides: int = 0) -> str | None:
    """Why Kafka would refuse a record of `value` and `besides` bytes of key and headers; None
    when it takes it."""
    size = len(value) + besides
    if size <= KAFKA_TAKES:
        return None
    if size > MAX_RECORD_BYTES:
        return f"{size:,} bytes; the worker sends {MAX_RECORD_BYTES:,} at most"
    # A compressor per call: one may not be shared between threads, and this is rarely called.
    compressed = len(zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(value)) + besides
    if compressed > KAFKA_TAKES:
        return f"{size:,} bytes, {compressed:,} compressed; Kafka takes {KAFKA_TAKES:,}"
    return None
