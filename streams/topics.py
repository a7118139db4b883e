"""The topics of the pipeline, created at start with the partitions and retention they need.

Everything that carries work for a purchase order is keyed by `po_number` and has the same
partition count, so one partition of each topic belongs to the same agent instance: that is
what serializes a PO without a lock. Audit topics keep history long and are never compacted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, ResourceType

from connectors.kafka_clients import client_config, kafka_down
from rules.errors import Misconfigured
from streams.ledgers import changelog_topic
from streams.record_size import TOPIC_CODECS, TOPICS_TAKE
from streams.settings import PREFIX, Settings

DAY_MS = 24 * 60 * 60 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    audit: bool  # kept for replay and explain: long retention, delete cleanup; else a compacted changelog


def pipeline_topics(settings: Settings) -> list[TopicSpec]:
    # Debezium's Sampro topic only where it feeds sampro.changes: the worker subscribes to it before
    # the first change would make Connect create it.
    sampro_cdc = [TopicSpec(settings.sampro_cdc_topic, audit=True)] if settings.sampro_changes == "debezium" else []
    return [
        TopicSpec(settings.marketplace_topic, audit=True),
        TopicSpec(settings.invoices_topic, audit=True),
        TopicSpec(settings.completions_topic, audit=True),
        TopicSpec(settings.commands_topic, audit=True),
        TopicSpec(settings.sampro_changes_topic, audit=True),
        TopicSpec(settings.verdicts_topic, audit=True),
        TopicSpec(settings.rpa_requests_topic, audit=True),
        TopicSpec(settings.dlq_topic, audit=True),
        TopicSpec(changelog_topic(settings), audit=False),
        *sampro_cdc,
    ]


def consumed_topics(settings: Settings) -> list[str]:
    """The topics the workers' consumer groups read, as agents/ registers their flows: the API
    reports the lag of each, also where a group has committed nothing yet."""
    cdc = [topic for topic, source in ((settings.marketplace_topic, settings.marketplace_source),
                                       (settings.sampro_cdc_topic, settings.sampro_changes)) if source == "debezium"]
    return [*cdc, settings.invoices_topic, settings.completions_topic, settings.commands_topic,
            settings.sampro_changes_topic, settings.verdicts_topic, settings.rpa_requests_topic]


def topic_config(settings: Settings, spec: TopicSpec) -> dict[str, str]:
    # From three replicas, a batch is committed once two have it, as Kafka advises: at the broker's
    # default of one, the leader alone acknowledged it, and losing that broker lost verdicts and
    # ledgers whose input offsets were committed. (With two replicas, two in sync would stop every
    # commit while one broker restarts.)
    # Unset, the brokers' defaults of both apply.
    durable = {"min.insync.replicas": "2"} if (settings.topic_replication_factor or 0) >= 3 else {}
    if not spec.audit:  # the latest ledger of each PO is all a restore needs
        return {"cleanup.policy": "compact", **durable}
    return {"cleanup.policy": "delete", "retention.ms": str(settings.audit_retention_days * DAY_MS), **durable}


def ensure_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Creates the missing topics; returns the names it created. Existing topics are left alone."""
    admin = AdminClient(client_config(settings.kafka, "admin"))
    try:
        existing = set(admin.list_topics(timeout=timeout).topics)
    except KafkaException as exc:  # at start: the worker has nothing to wait out yet, it says so and exits
        raise kafka_down(settings.kafka, "listing the topics", exc.args[0], admin) from None
    wanted = [spec for spec in pipeline_topics(settings) if spec.name not in existing]
    if not wanted:
        return []
    futures = admin.create_topics(
        [
            NewTopic(
                spec.name,
                num_partitions=settings.topic_partitions,
                replication_factor=settings.topic_replication_factor or -1,  # -1: the brokers' default
                config=topic_config(settings, spec),
            )
            for spec in wanted
        ],
        operation_timeout=timeout,
    )
    created: list[str] = []
    refused: list[tuple[str, KafkaError]] = []
    for name, future in futures.items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            error = exc.args[0]
            if error.code() == KafkaError.TOPIC_ALREADY_EXISTS:  # a concurrent creator won the race: fine
                continue
            if error.retriable():
                raise kafka_down(settings.kafka, f"creating the topic {name}", error, admin) from None
            refused.append((name, error))
    if refused:
        # Raised as it came, a topic Kafka will never create (more replicas than brokers) stopped
        # the worker with a traceback, start after start.
        reason = refused[0][1]
        raise Misconfigured(f"Kafka refused to create the topic{'s' if len(refused) > 1 else ''} "
                            f"{', '.join(name for name, _ in refused)} "
                            f"({reason.str()}): {_what_to_change(settings, reason)}")
    # Every one wanted, also one another worker starting beside it created a moment before (the
    # race lost, TOPIC_ALREADY_EXISTS): that one too the brokers may not know yet, and the check of
    # its configs found it unknown.
    _until_the_brokers_know(settings, admin, [spec.name for spec in wanted], timeout)
    return created


def _until_the_brokers_know(settings: Settings, admin: AdminClient, names: list[str], timeout: float) -> None:
    """A topic the controller has created (for this worker or another) is known to the brokers a
    moment later: the check of its configs that follows at start found it unknown
    (UNKNOWN_TOPIC_OR_PART), and a worker starting on a new cluster stopped saying Kafka did not
    answer."""
    deadline = time.monotonic() + timeout
    while names:
        try:
            topics = admin.list_topics(timeout=max(deadline - time.monotonic(), 1.0)).topics
        except KafkaException as exc:
            raise kafka_down(settings.kafka, "listing the topics it needs", exc.args[0], admin) from None
        unknown = [name for name in names if name not in topics or topics[name].error is not None]
        if not unknown:
            return
        if time.monotonic() >= deadline:
            raise kafka_down(settings.kafka, f"waiting {timeout:g} s for the brokers to know the topics it needs",
                             f"{', '.join(unknown)} still unknown", admin)
        time.sleep(0.1)


def _what_to_change(settings: Settings, error: KafkaError) -> str:
    if error.code() == KafkaError.INVALID_REPLICATION_FACTOR:
        if settings.topic_replication_factor is None:
            return (f"the brokers' default.replication.factor is more than the cluster has brokers: set "
                    f"{PREFIX}TOPIC_REPLICATION_FACTOR to no more")
        return (f"set {PREFIX}TOPIC_REPLICATION_FACTOR={settings.topic_replication_factor} to no more replicas "
                "than the cluster has brokers")
    if error.code() == KafkaError.INVALID_PARTITIONS:
        return f"set {PREFIX}TOPIC_PARTITIONS={settings.topic_partitions} to a count the brokers take"
    if error.code() in (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED):
        return "let the worker's Kafka user create topics, or create them beforehand"
    return (f"check {PREFIX}TOPIC_PARTITIONS, {PREFIX}TOPIC_REPLICATION_FACTOR and {PREFIX}AUDIT_RETENTION_DAYS "
            "against the brokers' limits")


def check_co_partitioned(settings: Settings, timeout: float = 30.0) -> None:
    """Refuses to start when the topics of a PO's work (and its changelog) differ in partitions:
    the same PO would then be on different partition numbers, and no longer serialized."""
    admin = AdminClient(client_config(settings.kafka, "admin"))
    names = [settings.invoices_topic, settings.completions_topic, settings.commands_topic,
             settings.sampro_changes_topic, changelog_topic(settings)]
    try:
        metadata = admin.list_topics(timeout=timeout).topics
    except KafkaException as exc:
        raise kafka_down(settings.kafka, "listing the topics", exc.args[0], admin) from None
    counts = {name: len(metadata[name].partitions) for name in names if name in metadata}
    if len(set(counts.values())) > 1:
        raise Misconfigured("the topics that carry a purchase order's work must have the same number of partitions, "
                         f"but have {counts}; a PO's ledger is kept by partition number, so added partitions move "
                         "POs away from it: partitions cannot be added under a running pipeline (README, \"Scaling "
                         "out\")")


def check_sizes_taken(settings: Settings, timeout: float = 30.0) -> None:
    """Refuses to start on a topic that may refuse a record the worker sends: what it sends is
    weighed compressed with zstd against 1 MiB (`streams.record_size`), and a record the broker
    refuses fails its whole batch, batch after batch. A topic that compresses again with another
    codec, or takes less than Kafka's default, would do that. Debezium's topics are Connect's."""
    admin = AdminClient(client_config(settings.kafka, "admin"))
    debezium_writes = {settings.sampro_cdc_topic, *([settings.marketplace_topic]
                                                    if settings.marketplace_source == "debezium" else [])}
    resources = [ConfigResource(ResourceType.TOPIC, spec.name) for spec in pipeline_topics(settings)
                 if spec.name not in debezium_writes]
    problems = []
    try:
        for resource, future in admin.describe_configs(resources, request_timeout=timeout).items():
            config = future.result()
            if resource.name == changelog_topic(settings):
                # Made by something else than ensure_topics (auto.create.topics.enable), it deleted
                # the ledgers of quiet POs with its retention, and a restore went on without them.
                policy = config["cleanup.policy"].value
                if "compact" not in policy or "delete" in policy:
                    problems.append(f"{resource.name} has cleanup.policy={policy} (keep compact: it holds the "
                                    "PO ledgers)")
            codec, takes = config["compression.type"].value, int(config["max.message.bytes"].value)
            if codec not in TOPIC_CODECS:
                problems.append(f"{resource.name} has compression.type={codec} (keep {' or '.join(TOPIC_CODECS)})")
            if takes < TOPICS_TAKE:
                problems.append(f"{resource.name} has max.message.bytes={takes} (at least {TOPICS_TAKE}, "
                                "Kafka's default)")
    except KafkaException as exc:
        raise kafka_down(settings.kafka, "reading the topics' configs", exc.args[0], admin) from None
    if problems:
        raise Misconfigured("the topics must take every record the worker sends, as it sends them, and keep "
                            f"the ledgers, but {'; '.join(problems)}: set that with kafka-configs --alter (README, "
                            "\"The pipeline\")")
