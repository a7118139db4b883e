"""The Faust application: broker, state store and delivery guarantee, built from settings."""

from __future__ import annotations

import faust

from streams.settings import Settings


def broker_url(bootstrap_servers: str) -> str:
    """`host:port,host:port` as Faust wants it: `kafka://host:port;kafka://host:port`."""
    return ";".join(f"kafka://{server.strip()}" for server in bootstrap_servers.split(",") if server.strip())


def create_app(settings: Settings) -> faust.App:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return faust.App(
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
