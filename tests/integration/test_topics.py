"""The pipeline's topics as the broker creates them: PO partitions, audit retention, the changelog."""

from __future__ import annotations

import time

import pytest
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    ResourceType,
)

from rules.errors import Misconfigured
from streams.ledgers import changelog_topic
from streams.settings import Settings
from streams.topics import check_co_partitioned, check_sizes_taken, ensure_topics

SET = AlterConfigOpType.SET


def test_topics_are_created_once_with_audit_retention_and_a_compacted_changelog(kafka_bootstrap, unique_name):
    names = {f"{field}": f"{unique_name}.{field}" for field in (
        "marketplace_topic", "invoices_topic", "completions_topic", "commands_topic", "sampro_changes_topic",
        "verdicts_topic", "rpa_requests_topic", "dlq_topic")}
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap, app_id=unique_name, topic_partitions=4,
                        audit_retention_days=400, **names)
    changelog = changelog_topic(settings)
    assert sorted(ensure_topics(settings)) == sorted([*names.values(), changelog])
    assert ensure_topics(settings) == []  # a second start creates nothing
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    try:
        metadata = known(admin, lambda topics: all(name in topics for name in [*names.values(), changelog]))
        assert {len(metadata[name].partitions) for name in [*names.values(), changelog]} == {4}
        for field in ("invoices_topic", "verdicts_topic", "completions_topic"):
            resource = ConfigResource(ResourceType.TOPIC, names[field])
            config = admin.describe_configs([resource])[resource].result()
            assert config["cleanup.policy"].value == "delete"
            assert config["retention.ms"].value == str(400 * 24 * 60 * 60 * 1000)
        resource = ConfigResource(ResourceType.TOPIC, changelog)
        assert admin.describe_configs([resource])[resource].result()["cleanup.policy"].value == "compact"
        check_co_partitioned(settings)
        check_sizes_taken(settings)
        admin.create_partitions([NewPartitions(names["commands_topic"], 6)])[names["commands_topic"]].result()
        known(admin, lambda topics: len(topics[names["commands_topic"]].partitions) == 6)
        with pytest.raises(Misconfigured, match="same number of partitions"):
            check_co_partitioned(settings)
    finally:
        admin.delete_topics([*names.values(), changelog])


def own_topics(kafka_bootstrap: str, unique_name: str) -> Settings:
    """Settings naming topics of this test's own."""
    return Settings(kafka_bootstrap_servers=kafka_bootstrap, app_id=unique_name,
                    **{f"{field}": f"{unique_name}.{field}" for field in (
                        "marketplace_topic", "invoices_topic", "completions_topic", "commands_topic",
                        "sampro_changes_topic", "verdicts_topic", "rpa_requests_topic", "dlq_topic")})


def known(admin: AdminClient, condition) -> dict:
    """The topics' metadata once `condition` holds of it: the broker learns of a change from the
    controller a moment after the change is made."""
    for _ in range(100):
        if condition(topics := admin.list_topics(timeout=10).topics):
            return topics
        time.sleep(0.1)
    raise AssertionError("the broker's metadata never showed the change")


def altered(admin: AdminClient, topic: str, name: str, value: str) -> None:
    """Sets a topic's config, and waits until the brokers describe it so (they apply it a moment later)."""
    resource = ConfigResource(ResourceType.TOPIC, topic,
                              incremental_configs=[ConfigEntry(name, value, incremental_operation=SET)])
    admin.incremental_alter_configs([resource])[resource].result()
    described = ConfigResource(ResourceType.TOPIC, topic)
    for _ in range(100):
        if admin.describe_configs([described])[described].result()[name].value == value:
            return
        time.sleep(0.1)
    raise AssertionError(f"{topic} never had {name}={value}")


@pytest.mark.parametrize(("name", "value", "said"), [
    ("compression.type", "gzip", "compression.type=gzip (keep producer or zstd)"),
    ("max.message.bytes", "500000", "max.message.bytes=500000 (at least 1048588, Kafka's default)"),
])
def test_the_worker_refuses_a_topic_that_may_refuse_what_it_sends(kafka_bootstrap, unique_name, name, value, said):
    """A verdict of 1 MB compressed, from a PO of thousands of lines, failed its whole batch, batch
    after batch, on a topic that compressed it again with gzip or took less than 1 MiB."""
    settings = own_topics(kafka_bootstrap, unique_name)
    created = ensure_topics(settings)
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    try:
        altered(admin, settings.invoices_topic, "compression.type", "zstd")
        check_sizes_taken(settings)  # zstd, the producer's own codec, is kept as it is
        altered(admin, settings.verdicts_topic, name, value)
        with pytest.raises(Misconfigured) as refused:
            check_sizes_taken(settings)
        assert f"{settings.verdicts_topic} has {said}" in str(refused.value)
        assert settings.invoices_topic not in str(refused.value)
        altered(admin, settings.verdicts_topic, name, "producer" if name == "compression.type" else "1048588")
        altered(admin, settings.marketplace_topic, "compression.type", "lz4")
        check_sizes_taken(settings.model_copy(update={"marketplace_source": "debezium"}))  # Connect writes it
    finally:
        admin.delete_topics(created)


def test_the_worker_refuses_a_changelog_that_deletes_the_ledgers(kafka_bootstrap, unique_name):
    """Created by the broker's auto.create.topics.enable, the changelog had cleanup.policy=delete:
    the ledgers of quiet POs went with its retention, and a restore went on without them."""
    settings = own_topics(kafka_bootstrap, unique_name)
    created = ensure_topics(settings)
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    try:
        altered(admin, changelog_topic(settings), "cleanup.policy", "compact,delete")
        with pytest.raises(Misconfigured, match=f"{changelog_topic(settings)} has cleanup.policy=compact,delete"):
            check_sizes_taken(settings)
        altered(admin, changelog_topic(settings), "cleanup.policy", "compact")
        check_sizes_taken(settings)
    finally:
        admin.delete_topics(created)


def test_replicated_topics_commit_once_two_replicas_have_a_batch():
    """At the broker's default min.insync.replicas of 1 the leader alone acknowledged a transaction;
    losing it lost committed verdicts and ledgers. (One broker here: the configuration is checked.)"""
    from streams.topics import pipeline_topics, topic_config

    # Two of two: no broker may restart. Unset: the brokers' defaults of both.
    for replicas, wanted in ((None, None), (1, None), (2, None), (3, "2"), (5, "2")):
        settings = Settings(topic_replication_factor=replicas, _env_file=None)
        assert {topic_config(settings, spec).get("min.insync.replicas") for spec in pipeline_topics(settings)} == {
            wanted}
