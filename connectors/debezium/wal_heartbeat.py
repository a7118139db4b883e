"""What a capture on PostgreSQL needs so that its replication slot never fills the database's disk.

A slot keeps every WAL segment from the position its connector last confirmed, and Debezium
confirms a position only when something reaches it. PostgreSQL 15's pgoutput sends nothing for
transactions on tables outside the publication, so a captured table that stays quiet (no invoice
uploaded over a weekend, no PO changed overnight) while the database's other tables are busy
held all the WAL written since its last change: 9 MB after 20,000 rows into another table here,
growing until the disk is full and the marketplace or Sampro stops. Every interval the heartbeat
writes a logical decoding message into the WAL of the captured database; the connector reads it,
confirms its position, and the slot lets the WAL go (measured: 192 bytes behind, against 9 MB).

Messages are read, not emitted: the exclude list drops every prefix, ours and any other
application's, whose records would otherwise land in the capture's topic. The heartbeat records
go to Debezium's own topic (`__debezium-heartbeat.<connector>`), which Connect creates with the
broker's defaults where the broker does not create topics itself.
"""

from __future__ import annotations

HEARTBEAT_MS = 60_000  # WAL held at most about a minute's worth, plus Connect's offset flush interval
MESSAGE_PREFIX = "invoice-automation-heartbeat"


def wal_heartbeat(interval_ms: int) -> dict[str, str]:
    return {
        "heartbeat.interval.ms": str(interval_ms),
        # Non-transactional: written at once, whatever the connection's transaction state.
        "heartbeat.action.query": f"SELECT pg_logical_emit_message(false, '{MESSAGE_PREFIX}', now()::text)",
        "message.prefix.exclude.list": ".*",
        "topic.creation.default.replication.factor": "-1",
        "topic.creation.default.partitions": "1",
    }
