"""Worker roles: which flows run in which consumer group, so 'decide' and 'mail' workers can run
as processes of their own without reading each other's topics."""

from __future__ import annotations

from connectors.rpa_mail import InMemoryRpaMailer
from connectors.sampro import InMemoryPurchaseOrderReader
from connectors.scheduler import InMemoryProcessScheduler
from streams.bootstrap import bootstrap
from streams.broker import KafkaStreamBroker
from streams.settings import Settings


def _pipeline(tmp_path):
    # Real brokers (librdkafka clients pointed at a closed port: built, never polled).
    settings = Settings(data_dir=tmp_path, marketplace_source="debezium", app_id="ap",
                        kafka_bootstrap_servers="127.0.0.1:9", sampro_changes="none", _env_file=None)
    return bootstrap(settings, purchase_orders=InMemoryPurchaseOrderReader([]),
                     scheduler=InMemoryProcessScheduler(), mailer=InMemoryRpaMailer())


def test_the_mailbox_flow_has_a_consumer_group_of_its_own_and_each_role_runs_its_own(tmp_path):
    pipeline = _pipeline(tmp_path)
    decide, mail = pipeline.runtime, pipeline.mail_runtime
    assert isinstance(decide.broker, KafkaStreamBroker) and isinstance(mail.broker, KafkaStreamBroker)
    assert (decide.broker.group_id, mail.broker.group_id) == ("ap", "ap-rpa-mail")
    assert mail.topics == ["rpa.requests"]
    assert "rpa.requests" not in decide.topics and "invoices" in decide.topics
    assert pipeline.runtimes("all") == [decide, mail]
    assert pipeline.runtimes("decide") == [decide]
    assert pipeline.runtimes("mail") == [mail]


def test_each_role_reports_only_the_dependencies_it_uses(tmp_path):
    """A `--role mail` worker reported Sampro and the marketplace up, which it never asks."""
    from prometheus_client import generate_latest

    def reported(role: str) -> set[str]:
        pipeline = _pipeline(tmp_path / role)
        pipeline.runtimes(role)
        lines = generate_latest(pipeline.health.registry).decode().splitlines()
        return {line.split('"')[1] for line in lines if line.startswith("invoice_automation_worker_dependency_up{")}

    assert reported("mail") == {"kafka", "smtp", "processscheduler"}
    assert reported("decide") == {"kafka", "sampro", "processscheduler", "marketplace"}
    assert reported("all") == {"kafka", "sampro", "processscheduler", "marketplace", "smtp"}


def test_with_one_broker_given_every_flow_shares_one_runtime(tmp_path):
    from streams.broker_memory import InMemoryBroker

    settings = Settings(data_dir=tmp_path, marketplace_source="debezium", sampro_changes="none", _env_file=None)
    pipeline = bootstrap(settings, broker=InMemoryBroker(partitions=1), purchase_orders=InMemoryPurchaseOrderReader([]),
                         scheduler=InMemoryProcessScheduler(), mailer=InMemoryRpaMailer())
    assert pipeline.runtimes("all") == [pipeline.runtime]
    assert "rpa.requests" in pipeline.runtime.topics


def test_a_worker_is_ready_only_once_every_runtime_it_runs_has_its_partitions():
    from streams.health import WorkerHealth

    health = WorkerHealth()
    assert not health.started  # nothing joined yet
    health.set_started("pipeline", True)
    health.set_started("rpa-mail", False)
    assert not health.readiness()[0]
    health.set_started("rpa-mail", True)
    assert health.readiness()[0]


def test_the_pollers_keep_their_watermarks_in_processscheduler_beside_a_file_an_older_version_left(tmp_path):
    """Where every worker reads them: a worker that takes the polling over goes on from there. A
    file in the data folder is read until the first commit; beside a processscheduler that is no
    database, the file alone (nothing is written in the working folder)."""
    from connectors.scheduler import SqlProcessScheduler, upgrade
    from connectors.sql import engine_for
    from connectors.watermarks import FileWatermark, SqlWatermark
    from streams.broker_memory import InMemoryBroker

    urls = {f"{name}_db_url": f"sqlite:///{tmp_path / name}.db" for name in ("marketplace", "sampro", "scheduler")}
    settings = Settings(data_dir=tmp_path, marketplace_source="polling", sampro_changes="polling", **urls,
                        sampro_clock="local", _env_file=None)
    engine = engine_for(settings.scheduler_db_url)
    upgrade(engine)
    pipeline = bootstrap(settings, broker=InMemoryBroker(partitions=1), purchase_orders=InMemoryPurchaseOrderReader([]),
                         scheduler=SqlProcessScheduler(engine), mailer=InMemoryRpaMailer())
    for source, name in ((pipeline.source, "marketplace"), (pipeline.sampro_changes, "sampro")):
        store = source.state.store
        assert isinstance(store, SqlWatermark) and store.engine is engine
        assert (store.source, store.older_file.path) == (name, tmp_path / f"{name}-watermark.json")
    assert pipeline.sampro_changes.stamped_in == "local"  # SAMPRO_CLOCK: the window is taken before it
    in_memory = bootstrap(settings, broker=InMemoryBroker(partitions=1), scheduler=InMemoryProcessScheduler(),
                          purchase_orders=InMemoryPurchaseOrderReader([]), mailer=InMemoryRpaMailer())
    store = in_memory.source.state.store
    assert isinstance(store, FileWatermark) and store.path.parent == tmp_path


def test_a_worker_polling_the_marketplace_warns_that_it_cannot_see_a_withdrawal(tmp_path, caplog):
    """A deleted row leaves nothing for a poll to read: a withdrawn invoice went on to the bot, and
    only a docstring said why."""
    for source in ("debezium", "polling"):
        caplog.clear()
        settings = Settings(data_dir=tmp_path, marketplace_source=source, kafka_bootstrap_servers="127.0.0.1:9",
                            marketplace_db_url=f"sqlite:///{tmp_path / 'marketplace.db'}", sampro_changes="none",
                            _env_file=None)
        bootstrap(settings, purchase_orders=InMemoryPurchaseOrderReader([]), scheduler=InMemoryProcessScheduler(),
                  mailer=InMemoryRpaMailer())
        warned = [r.getMessage() for r in caplog.records if "cannot see a deleted row" in r.getMessage()]
        assert len(warned) == (source == "polling")


def test_the_api_asks_the_lag_of_every_topic_a_workers_group_reads_and_no_other(tmp_path):
    """Only the topics a group had committed on were looked at: a `--role mail` worker never started
    showed no lag on rpa.requests. The API names them from the settings, as the agents subscribe."""
    from connectors.sampro.changes import InMemorySamproChanges
    from streams.topics import consumed_topics

    for marketplace, sampro in (("debezium", "none"), ("polling", "polling"), ("debezium", "debezium")):
        settings = Settings(data_dir=tmp_path, marketplace_source=marketplace, sampro_changes=sampro, app_id="ap",
                            kafka_bootstrap_servers="127.0.0.1:9", _env_file=None,
                            marketplace_db_url=f"sqlite:///{tmp_path / 'marketplace.db'}")
        pipeline = bootstrap(settings, purchase_orders=InMemoryPurchaseOrderReader([]), mailer=InMemoryRpaMailer(),
                             scheduler=InMemoryProcessScheduler(), sampro_changes=InMemorySamproChanges())
        subscribed = [*pipeline.runtime.topics, *pipeline.mail_runtime.topics]
        assert sorted(consumed_topics(settings)) == sorted(subscribed), (marketplace, sampro)
