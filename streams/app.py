"""The Faust application: broker, state store and delivery guarantee, built from settings."""

from __future__ import annotations

import faust
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer

from streams.settings import Settings


class RewindingConsumer(AIOKafkaConsumer):
    """After a rebalance, every partition restarts from its committed offset, or from its
    beginning when the group never committed one.

    Faust (with aiokafka) seeks only partitions whose committed offset is above 0. The others
    keep the fetch position they had before the rebalance, past the messages that were fetched
    and buffered, then cleared from the agents' queues by the rebalance: those were never
    processed, and an early commit further on made the loss final.
    """

    async def seek_to_committed(self):
        committed = await super().seek_to_committed()
        changelogs = self.app.tables.changelog_topics  # read by table recovery, never committed
        never = {tp: 0 for tp, offset in committed.items() if not offset and tp.topic not in changelogs}
        if never:
            self.log.info("reading %d partition(s) the group never committed from their beginning", len(never))
            await self.seek_wait(never)
        return committed


def broker_url(bootstrap_servers: str) -> str:
    """`host:port,host:port` as Faust wants it: `kafka://host:port;kafka://host:port`."""
    return ";".join(f"kafka://{server.strip()}" for server in bootstrap_servers.split(",") if server.strip())


def create_app(settings: Settings) -> faust.App:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        settings.app_id,
        broker=broker_url(settings.kafka_bootstrap_servers),
        store=settings.store,
        datadir=str(settings.data_dir / "faust"),
        processing_guarantee="at_least_once",
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        # Sinks write before the agent acks; Faust flushes the producer before every commit.
        broker_commit_every=500,
        broker_commit_interval=1.0,
        broker_session_timeout=settings.session_timeout_seconds,
        stream_wait_empty=True,
    )
    app.transport.Consumer = RewindingConsumer
    return app
