"""The rule that keeps Faust from losing messages after a rebalance: no stream partition is read
between an assignment (or a resume of stream partitions) and the end of the seek to committed
offsets. The broker-level proof is the e2e suite, whose worker logs must show no gap."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer
from faust.types import TP

from streams.app import RewindingConsumer

CHANGELOG, VERDICTS, REQUESTS = TP("po-ledgers-changelog", 0), TP("verdicts", 0), TP("rpa.requests", 1)


@pytest.fixture
def consumer(monkeypatch):
    asked = []

    async def getmany(self, active_partitions, timeout):
        asked.append(set(active_partitions) if active_partitions is not None else None)
        return {}

    async def seek_to_committed(self):
        return {VERDICTS: 12, REQUESTS: 3}

    monkeypatch.setattr(AIOKafkaConsumer, "_getmany", getmany)
    monkeypatch.setattr(AIOKafkaConsumer, "seek_to_committed", seek_to_committed)
    monkeypatch.setattr(AIOKafkaConsumer, "resume_partitions", lambda self, tps: None)
    made = RewindingConsumer.__new__(RewindingConsumer)
    made.app = SimpleNamespace(tables=SimpleNamespace(changelog_topics={CHANGELOG.topic}))
    return made, asked


def test_before_the_seek_only_changelogs_are_read(consumer):
    made, asked = consumer
    asyncio.run(made._getmany({CHANGELOG, VERDICTS, REQUESTS}, 1.0))
    assert asked == [{CHANGELOG}]


def test_with_no_changelog_to_recover_nothing_is_read_until_the_seek(consumer):
    made, asked = consumer
    assert asyncio.run(made._getmany({VERDICTS, REQUESTS}, 0.01)) == {}
    assert asked == []  # an empty set would have meant every partition to aiokafka


def test_after_the_seek_every_partition_is_read_and_a_stream_resume_waits_for_the_next_seek(consumer):
    made, asked = consumer
    asyncio.run(made.seek_to_committed())
    asyncio.run(made._getmany({CHANGELOG, VERDICTS, REQUESTS}, 1.0))
    made.resume_partitions({CHANGELOG})  # a changelog resume changes nothing
    asyncio.run(made._getmany({CHANGELOG, VERDICTS}, 1.0))
    made.resume_partitions({VERDICTS, REQUESTS})
    asyncio.run(made._getmany({CHANGELOG, VERDICTS, REQUESTS}, 1.0))
    assert asked == [{CHANGELOG, VERDICTS, REQUESTS}, {CHANGELOG, VERDICTS}, {CHANGELOG}]
