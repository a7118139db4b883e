"""The pipeline's topics as the broker creates them: PO partitions, audit retention, the changelog."""

from __future__ import annotations

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, ResourceType

from streams.ledgers import changelog_topic
from streams.settings import Settings
from streams.topics import check_co_partitioned, ensure_topics


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
        metadata = admin.list_topics(timeout=10).topics
        assert {len(metadata[name].partitions) for name in [*names.values(), changelog]} == {4}
        for field in ("invoices_topic", "verdicts_topic", "completions_topic"):
            resource = ConfigResource(ResourceType.TOPIC, names[field])
            config = admin.describe_configs([resource])[resource].result()
            assert config["cleanup.policy"].value == "delete"
            assert config["retention.ms"].value == str(400 * 24 * 60 * 60 * 1000)
        resource = ConfigResource(ResourceType.TOPIC, changelog)
        assert admin.describe_configs([resource])[resource].result()["cleanup.policy"].value == "compact"
        check_co_partitioned(settings)
        admin.create_partitions([NewPartitions(names["commands_topic"], 6)])[names["commands_topic"]].result()
        with pytest.raises(ValueError, match="same number of partitions"):
            check_co_partitioned(settings)
    finally:
        admin.delete_topics([*names.values(), changelog])
