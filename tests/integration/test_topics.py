"""The pipeline's topics as the broker creates them: PO partitions, and audit retention."""

from __future__ import annotations

from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from streams.settings import Settings
from streams.topics import ensure_topics


def test_topics_are_created_once_with_audit_retention_and_no_compaction(kafka_bootstrap, unique_name):
    names = {f"{field}": f"{unique_name}.{field}" for field in (
        "marketplace_topic", "invoices_topic", "completions_topic", "commands_topic", "verdicts_topic",
        "rpa_requests_topic", "dlq_topic")}
    settings = Settings(kafka_bootstrap_servers=kafka_bootstrap, topic_partitions=4, audit_retention_days=400,
                        **names)
    assert sorted(ensure_topics(settings)) == sorted(names.values())
    assert ensure_topics(settings) == []  # a second start creates nothing
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    try:
        metadata = admin.list_topics(timeout=10).topics
        assert {len(metadata[name].partitions) for name in names.values()} == {4}
        for field in ("invoices_topic", "verdicts_topic", "completions_topic"):
            resource = ConfigResource(ResourceType.TOPIC, names[field])
            config = admin.describe_configs([resource])[resource].result()
            assert config["cleanup.policy"].value == "delete"
            assert config["retention.ms"].value == str(400 * 24 * 60 * 60 * 1000)
    finally:
        admin.delete_topics(list(names.values()))
