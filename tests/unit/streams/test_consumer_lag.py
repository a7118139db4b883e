"""The worker's consumer-lag gauge, from librdkafka's statistics (no broker needed to check it)."""

from __future__ import annotations

import json

from prometheus_client import generate_latest

from streams.broker import KafkaStreamBroker
from streams.health import WorkerHealth, lag_from_statistics


def _statistics(**partitions: dict) -> str:
    return json.dumps({"name": "rdkafka#consumer-1", "topics": {"invoices": {"partitions": {
        "-1": {"desired": False, "app_offset": -1001, "ls_offset": -1001, "hi_offset": -1001},  # internal
        **partitions}}}})


def test_lag_is_the_stable_end_minus_what_the_worker_read():
    lag = lag_from_statistics(_statistics(**{
        "0": {"desired": True, "app_offset": 40, "ls_offset": 52, "hi_offset": 55, "committed_offset": 30},
        "1": {"desired": True, "app_offset": -1001, "ls_offset": 9, "hi_offset": 9, "committed_offset": 4},
        "2": {"desired": True, "app_offset": -1001, "ls_offset": 9, "hi_offset": 9, "committed_offset": -1001},
        "3": {"desired": False, "app_offset": 1, "ls_offset": 90, "hi_offset": 90, "committed_offset": 1},
        "4": {"desired": True, "app_offset": 7, "ls_offset": -1001, "hi_offset": 8, "committed_offset": 7},
    }))
    # 1: nothing read yet, so from the committed offset; 2: no position known; 3: no longer assigned.
    assert lag == {("invoices", 0): 12, ("invoices", 1): 5, ("invoices", 4): 1}


def test_the_brokers_statistics_set_the_gauge_and_a_revoked_partition_leaves_it():
    health = WorkerHealth()
    broker = KafkaStreamBroker("127.0.0.1:1", "lag-test", health=health)
    try:
        broker._statistics(_statistics(**{"0": {"desired": True, "app_offset": 3, "ls_offset": 10}}))
        broker._statistics(_statistics(**{"1": {"desired": True, "app_offset": 2, "ls_offset": 4}}))
    finally:
        broker.consumer.close()
    text = generate_latest(health.registry).decode()
    assert 'invoice_automation_worker_consumer_lag{partition="1",topic="invoices"} 2.0' in text
    assert 'partition="0",topic="invoices"' not in text
