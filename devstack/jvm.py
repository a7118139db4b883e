"""The JVM servers: a KRaft Kafka controller and broker, and a standalone Kafka Connect worker."""

from __future__ import annotations

import base64
import secrets
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
from confluent_kafka.admin import AdminClient

from devstack.install import debezium_plugins, kafka_lib
from devstack.process import StackError, port_answers, spawn, terminate, wait_until

LOG4J = Path(__file__).with_name("log4j2.properties")


def _java(heap: str, *args: str) -> list[str]:
    java = shutil.which("java")
    if java is None:
        raise StackError("java is not on PATH: the local stack needs Java 17.")
    return [java, f"-Xmx{heap}", "-XX:+UseG1GC", f"-Dlog4j2.configurationFile={LOG4J}",
            "-cp", f"{kafka_lib()}/*", *args]


def _properties(path: Path, values: dict[str, object]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    return path


def metadata_probe(bootstrap: str):
    """Ready means a client got cluster metadata back, not that a process exists."""
    # log_level 0: connection refusals while the broker boots are expected, not news.
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 2000, "log_level": 0})
    return lambda: bool(admin.list_topics(timeout=2).brokers)


def new_cluster_id() -> str:
    """A KRaft cluster id; like Kafka's Uuid.randomUuid, never one starting with '-', which the
    storage tool would read as a flag (one draw in 64 does)."""
    while (cluster_id := base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()).startswith("-"):
        pass
    return cluster_id


@dataclass(frozen=True)
class SignedInListener:
    """The broker's second listener, SASL_SSL, as managed Kafka is reached: TLS with a certificate
    of its own (`ca_file` is it) and a user who signs in with SCRAM-SHA-512 or PLAIN."""

    port: int
    ca_file: str
    username: str = "invoice-automation"
    password: str = ""

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"


def signed_in_listener(home: Path, port: int) -> SignedInListener:
    """A self-signed certificate for 127.0.0.1 (keytool, which comes with Java: nothing else to
    install) in a PKCS#12 keystore, and its certificate as PEM, which the clients trust."""
    tls = home / "tls"
    tls.mkdir(parents=True, exist_ok=True)
    keystore, listener = tls / "broker.p12", SignedInListener(port, str(tls / "ca.pem"), password=secrets.token_hex(12))
    store = ["-keystore", str(keystore), "-storetype", "PKCS12", "-storepass", listener.password]
    for command in (["-genkeypair", "-alias", "broker", "-keyalg", "RSA", "-keysize", "2048", "-validity", "3650",
                     "-dname", "CN=localhost", "-ext", "SAN=ip:127.0.0.1,dns:localhost", *store],
                    ["-exportcert", "-rfc", "-alias", "broker", "-file", listener.ca_file, *store]):
        keytool = shutil.which("keytool")
        if keytool is None:
            raise StackError("keytool is not on PATH: the local stack needs Java 17's JDK tools.")
        result = subprocess.run([keytool, *command], capture_output=True, text=True)
        if result.returncode != 0:
            raise StackError(f"keytool failed:\n{(result.stdout + result.stderr)[-2000:]}")
    return listener


def start_kafka(home: Path, port: int, controller_port: int, signed_in_port: int,
                timeout: float = 60) -> tuple[int, int, SignedInListener]:
    """Formats fresh KRaft storage under `home` and starts a controller and a broker; returns
    their pids (controller, broker) and the broker's SASL_SSL listener (`SignedInListener`).

    Two processes, as production runs KRaft, not one combined node. A combined node killed in the
    middle of a commit restarts its controller too, which keeps the dead broker registered for
    `broker.session.timeout.ms` (9 s): the restarted transaction coordinator starts writing the
    commit markers meanwhile, the fencing at the end leaves the partitions without a leader, and
    Kafka 4.3.1 takes them for deleted and completes the commit without its markers ("Couldn't
    find leader endpoint ... likely deleted"), a transaction that stops every read_committed
    reader of them for good. A controller that stays up fences the dead broker while it is down
    longer than that, so the broker comes back to a clean registration (README, "A hanging
    transaction").
    """
    shutil.rmtree(home, ignore_errors=True)
    signed_in = signed_in_listener(home, signed_in_port)
    quorum = f"127.0.0.1:{controller_port}"
    topics = {"num.partitions": 6, "default.replication.factor": 1}
    controller = _properties(home / "controller.properties", {
        "process.roles": "controller", "node.id": 1, "controller.quorum.bootstrap.servers": quorum,
        "listeners": f"CONTROLLER://{quorum}", "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT", "log.dirs": home / "controller-data", **topics,
    })
    broker = _properties(home / "server.properties", {
        "process.roles": "broker", "node.id": 2, "controller.quorum.bootstrap.servers": quorum,
        "listeners": (listeners := f"PLAINTEXT://127.0.0.1:{port},SASL_SSL://{signed_in.bootstrap}"),
        "advertised.listeners": listeners,
        "controller.listener.names": "CONTROLLER", "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
        "sasl.enabled.mechanisms": "SCRAM-SHA-512,PLAIN",
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config":
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        "listener.name.sasl_ssl.plain.sasl.jaas.config": "org.apache.kafka.common.security.plain.PlainLoginModule "
                                                         f'required user_{signed_in.username}="{signed_in.password}";',
        "ssl.keystore.type": "PKCS12", "ssl.keystore.location": home / "tls" / "broker.p12",
        "ssl.keystore.password": signed_in.password,
        "log.dirs": home / "data", **topics,
        "auto.create.topics.enable": "true",
        "offsets.topic.replication.factor": 1,
        "offsets.topic.num.partitions": 6,
        "transaction.state.log.replication.factor": 1,
        "transaction.state.log.min.isr": 1,
        "share.coordinator.state.topic.replication.factor": 1,
        "group.initial.rebalance.delay.ms": 0,
    })
    cluster_id = new_cluster_id()
    # SCRAM's credentials are cluster metadata: written with the controller's first records.
    _format(controller, cluster_id, "--standalone", "--add-scram",
            f"SCRAM-SHA-512=[name={signed_in.username},password={signed_in.password}]")
    _format(broker, cluster_id)
    log = home / "controller.log"
    controller_pid, broker_pid = spawn(_java("256m", "kafka.Kafka", str(controller)), log), None
    try:  # the broker starts meanwhile: it waits for the quorum by itself
        broker_pid = spawn_broker(home)
        wait_until(lambda: port_answers(controller_port), timeout, controller_pid, "Kafka controller", log)
        return controller_pid, wait_for_broker(home, port, broker_pid, timeout), signed_in
    except BaseException:  # neither is left behind, whatever stopped the start
        terminate(broker_pid)
        terminate(controller_pid)
        raise


def _format(config: Path, cluster_id: str, *flags: str) -> None:
    result = subprocess.run(_java("256m", "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(config),
                                  *flags), capture_output=True, text=True)
    if result.returncode != 0:
        raise StackError(f"Formatting Kafka storage ({config.name}) failed:\n{(result.stdout + result.stderr)[-3000:]}")


def restart_kafka(home: Path, port: int, timeout: float = 60) -> int:
    """Starts the broker on its existing storage and configuration, as after a crash; the
    controller is the one still running."""
    return wait_for_broker(home, port, spawn_broker(home), timeout)


def spawn_broker(home: Path) -> int:
    return spawn(_java("768m", "kafka.Kafka", str(home / "server.properties")), home / "server.log")


def wait_for_broker(home: Path, port: int, pid: int, timeout: float) -> int:
    wait_until(metadata_probe(f"127.0.0.1:{port}"), timeout, pid, "Kafka broker", home / "server.log")
    return pid


def connect_answers(url: str) -> bool:
    plugins = httpx.get(f"{url}/connector-plugins", timeout=2).json()
    return any(p.get("class") == "io.debezium.connector.postgresql.PostgresConnector" for p in plugins)


def start_connect(home: Path, bootstrap: str, port: int, timeout: float = 120) -> int:
    """A standalone worker with the Debezium plugin; connectors are registered over its REST API."""
    shutil.rmtree(home, ignore_errors=True)
    log = home / "connect.log"
    config = _properties(home / "worker.properties", {
        "bootstrap.servers": bootstrap,
        "listeners": f"http://127.0.0.1:{port}",
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "key.converter.schemas.enable": "false",
        "value.converter.schemas.enable": "false",
        "offset.storage.file.filename": home / "offsets",
        "offset.flush.interval.ms": 1000,
        "plugin.path": debezium_plugins(),
        "plugin.discovery": "hybrid_warn",
        # The capture's producer.override.* (a record over 1 MiB): Kafka's default since 3.0, said.
        "connector.client.config.override.policy": "All",
    })
    pid = spawn(_java("768m", "org.apache.kafka.connect.cli.ConnectStandalone", str(config)), log)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: connect_answers(url), timeout, pid, "Kafka Connect", log)
    return pid

