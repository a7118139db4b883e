"""The Faust application: broker, state store and delivery guarantee, built from settings."""

from __future__ import annotations

import asyncio

import faust
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer

from streams.settings import Settings


class RewindingConsumer(AIOKafkaConsumer):
    """Reads every stream partition from its committed offset after a rebalance, and only then.
    Faust and aiokafka, left alone, lost messages there in three ways (each seen in tests here):

    - Faust seeks only partitions whose committed offset is above 0. The others kept the fetch
      position they had before the rebalance, past messages that were fetched, then cleared from
      the agents' queues by the rebalance. They now restart from their beginning.
    - Faust resumes the stream partitions before it seeks them, so a batch is fetched from the
      old positions. Flow control clears what of it reached the queues, and the rest is handed
      out after the seek: its first offset then looks like a gap after the committed one, which
      Faust counts as acked (it assumes a compacted topic), and the same messages fetched again
      are dropped as already read. Stream partitions are therefore not fetched at all between
      an assignment and the end of its seek; table recovery reads its changelogs meanwhile.
    - A gap on these topics (never compacted, never transactional) is logged as a warning: it
      means messages were skipped, and the e2e tests fail on it.
    """

    _seek_done = False  # since the last assignment

    async def on_partitions_revoked(self, revoked):
        self._seek_done = False
        await super().on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned, generation_id: int = 0):
        self._seek_done = False
        await super().on_partitions_assigned(assigned, generation_id)

    def resume_partitions(self, tps) -> None:
        # Faust resumes the stream partitions right before it seeks them to committed offsets.
        tps = set(tps)
        if any(tp.topic not in self.app.tables.changelog_topics for tp in tps):
            self._seek_done = False
        super().resume_partitions(tps)

    async def seek_to_committed(self):
        committed = await super().seek_to_committed()
        changelogs = self.app.tables.changelog_topics  # read by table recovery, never committed
        never = {tp: 0 for tp, offset in committed.items() if not offset and tp.topic not in changelogs}
        if never:
            self.log.info("reading %d partition(s) the group never committed from their beginning", len(never))
            await self.seek_wait(never)
        self._seek_done = True
        return committed

    async def _getmany(self, active_partitions, timeout: float):
        if self._seek_done or active_partitions is None:
            return await super()._getmany(active_partitions, timeout)
        changelogs = self.app.tables.changelog_topics
        recovering = {tp for tp in active_partitions if tp.topic in changelogs}
        if not recovering:  # an empty set would mean every partition to aiokafka
            await asyncio.sleep(min(timeout, 0.05))
            return {}
        return await super()._getmany(recovering, timeout)

    async def _add_gap(self, tp, offset_from: int, offset_to: int) -> None:
        self.log.warning("gap in %s[%s]: offsets %s..%s were never delivered and count as acked",
                         tp.topic, tp.partition, offset_from, offset_to)
        await super()._add_gap(tp, offset_from, offset_to)


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
