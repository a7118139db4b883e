"""The testcontainers path of tests/conftest.py, checked as configuration: no Docker engine runs
here, so the container objects are built with a stand-in Docker client and never started."""

from __future__ import annotations

import re

import pytest

from tests import containers


class NoDocker:
    """What testcontainers' DockerClient is asked for while a container is only configured: nothing."""

    def __init__(self, **kwargs):
        pass


@pytest.fixture(autouse=True)
def no_docker(monkeypatch):
    monkeypatch.setattr("testcontainers.core.container.DockerClient", NoDocker)


def test_kafka_4_runs_in_kraft_mode_as_broker_and_controller():
    kafka = containers.Kafka4Container()
    assert kafka.image.endswith("apache/kafka:4.3.1")
    env = kafka.env
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@localhost:9094"
    listeners = {item.split("://")[0]: item.split(":")[-1] for item in env["KAFKA_LISTENERS"].split(",")}
    assert listeners == {"HOST": "9092", "BROKER": "9093", "CONTROLLER": "9094"}
    assert set(env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")) == {
        f"{name}:PLAINTEXT" for name in listeners}
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] == "BROKER"
    assert list(kafka.ports) == ["9092"]
    assert all(isinstance(value, str) for value in env.values())  # Docker wants strings


def test_kafka_can_run_the_workers_transactions_on_one_broker():
    env = containers.Kafka4Container().env
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "1"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"


def test_kafka_starts_once_it_knows_the_host_listener_it_advertises():
    kafka = containers.Kafka4Container()
    shell, flag, command = kafka._command
    assert (shell, flag) == ("sh", "-c") and command.endswith(f". {kafka.START_SCRIPT}")
    script = kafka.start_script("192.0.2.7", 32781)
    assert "export KAFKA_ADVERTISED_LISTENERS=HOST://192.0.2.7:32781,BROKER://$(hostname -i" in script
    assert script.splitlines()[-1] == "exec /etc/kafka/docker/run"  # the image's own start
    assert kafka.STARTED.search("[2026-12-02 10:00:00,000] INFO [KafkaRaftServer nodeId=1] Kafka Server started")


def test_postgres_has_logical_decoding_and_the_compose_databases():
    pg = containers.postgres_container()
    assert pg.image.endswith("postgres:15.18")
    assert re.search(r"-c wal_level=logical\b", pg._command) and "max_replication_slots=10" in pg._command
    assert (pg.username, pg.password, pg.dbname, pg.driver) == ("invoice", "invoice", "marketplace", "+psycopg")
    (source, mount), = pg.volumes.items()
    assert mount == {"bind": "/docker-entrypoint-initdb.d/init-databases.sql", "mode": "ro"}
    init = containers.INIT_SQL.read_text()
    assert source == str(containers.INIT_SQL) and "REPLICA IDENTITY FULL" in init
    assert "CREATE DATABASE sampro" in init and "CREATE DATABASE scheduler" in init


def test_the_fixture_hands_out_one_database_per_role(monkeypatch):
    import contextlib

    from tests import conftest

    class Started:
        def __init__(self, configured):
            self.configured = configured

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def get_bootstrap_server(self):
            return "127.0.0.1:32781"

        def get_connection_url(self):
            return "postgresql+psycopg://invoice:invoice@127.0.0.1:32782/marketplace"

    monkeypatch.setattr(containers, "Kafka4Container", lambda: Started("kafka"))
    monkeypatch.setattr(containers, "postgres_container", lambda: Started("postgres"))
    with contextlib.ExitStack() as stack:
        endpoints = conftest._from_testcontainers(stack)
    assert endpoints.kafka_bootstrap == "127.0.0.1:32781"
    assert [url.rsplit("/", 1)[1] for url in (endpoints.marketplace_db_url, endpoints.sampro_db_url,
                                              endpoints.scheduler_db_url)] == ["marketplace", "sampro", "scheduler"]
