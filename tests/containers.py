"""The containers of the testcontainers path (tests/conftest.py), when a Docker engine answers:
Kafka 4 in KRaft mode and PostgreSQL with logical decoding, set up as the local stack is.

testcontainers' own KafkaContainer drives Confluent's cp-kafka start scripts and refuses any image
tag below 7.0.0 in KRaft mode, so `apache/kafka:4.3.1` runs here on a plain DockerContainer with
the image's own KAFKA_* settings. The host's address and port for the advertised listener are
known only once the container runs, so the container waits for a start script that says them.
"""

from __future__ import annotations

import re
from pathlib import Path

from testcontainers.community.postgres import PostgresContainer
from testcontainers.core.container import DockerContainer
from testcontainers.core.wait_strategies import LogMessageWaitStrategy

KAFKA_IMAGE = "apache/kafka:4.3.1"
POSTGRES_IMAGE = "postgres:15.18"
INIT_SQL = Path(__file__).resolve().parents[1] / "connectors" / "compose" / "init-databases.sql"


class Kafka4Container(DockerContainer):
    HOST_PORT = 9092  # the listener for the tests, published on a random host port
    START_SCRIPT = "/testcontainers-start.sh"
    STARTED = re.compile(r"Kafka Server started")

    def __init__(self, image: str = KAFKA_IMAGE, startup_timeout: int = 120):
        super().__init__(image)
        self.startup_timeout = startup_timeout
        self.with_exposed_ports(self.HOST_PORT)
        self.with_envs(
            KAFKA_NODE_ID="1",
            KAFKA_PROCESS_ROLES="broker,controller",
            # HOST for the tests; BROKER for the broker itself (transaction markers go to the
            # partition leader over the inter-broker listener, even on one broker); CONTROLLER for KRaft.
            KAFKA_LISTENERS=f"HOST://:{self.HOST_PORT},BROKER://:9093,CONTROLLER://:9094",
            KAFKA_LISTENER_SECURITY_PROTOCOL_MAP="HOST:PLAINTEXT,BROKER:PLAINTEXT,CONTROLLER:PLAINTEXT",
            KAFKA_INTER_BROKER_LISTENER_NAME="BROKER",
            KAFKA_CONTROLLER_LISTENER_NAMES="CONTROLLER",
            KAFKA_CONTROLLER_QUORUM_VOTERS="1@localhost:9094",
            # One broker: the worker's transactions need a transaction log it can write.
            KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR="1",
            KAFKA_TRANSACTION_STATE_LOG_MIN_ISR="1",
            KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS="0",
        )
        # The image's entrypoint runs this command; it starts Kafka once start() has written the script.
        wait_then_start = f"while [ ! -f {self.START_SCRIPT} ]; do sleep 0.1; done; . {self.START_SCRIPT}"
        self.with_command(["sh", "-c", wait_then_start])

    def start_script(self, host: str, port: int) -> str:
        return (f"export KAFKA_ADVERTISED_LISTENERS=HOST://{host}:{port},BROKER://$(hostname -i | cut -d' ' -f1):9093\n"
                "exec /etc/kafka/docker/run\n")

    def start(self) -> Kafka4Container:
        super().start()
        script = self.start_script(self.get_container_host_ip(), self.get_exposed_port(self.HOST_PORT))
        self.copy_into_container(script.encode(), self.START_SCRIPT)
        LogMessageWaitStrategy(self.STARTED).with_startup_timeout(self.startup_timeout).wait_until_ready(self)
        return self

    def get_bootstrap_server(self) -> str:
        return f"{self.get_container_host_ip()}:{self.get_exposed_port(self.HOST_PORT)}"


def postgres_container(image: str = POSTGRES_IMAGE) -> PostgresContainer:
    """PostgreSQL with logical decoding for Debezium, and the databases and tables docker-compose
    creates (the other databases, the marketplace table with REPLICA IDENTITY FULL, Sampro's)."""
    return (PostgresContainer(image, username="invoice", password="invoice", dbname="marketplace", driver="psycopg")
            .with_command("postgres -c wal_level=logical -c max_replication_slots=10 -c max_wal_senders=10")
            .with_volume_mapping(str(INIT_SQL), "/docker-entrypoint-initdb.d/init-databases.sql", "ro"))
