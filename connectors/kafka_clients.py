"""How every Kafka client of the service is configured: where the brokers are, how it proves
itself to them (`KafkaCluster`), and where librdkafka's own log lines go.

librdkafka's log lines go through Python logging: WARNING and above, each problem once.

Without a logger librdkafka writes every line to stderr itself, and a broker that is down makes it
repeat the same connection failure every second or so (620 lines for one `explain`). Through
these loggers a line shows at most once per `QUIET_SECONDS` for the same problem, told apart by
its text without librdkafka's timings ("(after 12ms in state CONNECT, 3 identical error(s)
suppressed)") and with the numbers taken out (client and thread names).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError

from rules.errors import Unavailable

QUIET_SECONDS = 300.0  # a problem that is still there after five minutes is worth another line
MAX_POLL_INTERVAL = 300.0  # seconds a step may take between two polls before the member leaves its group


def max_poll_interval(session_timeout_seconds: float) -> float:
    """librdkafka's max.poll.interval for a session timeout: it refuses one above the interval (its
    default, 300 s, is kept below it)."""
    return max(session_timeout_seconds, MAX_POLL_INTERVAL)
_TIMINGS = re.compile(r"\s*\(after \d+ms.*\)\s*$")  # librdkafka ends a failure with them
_NUMBERS = re.compile(r"\d+")


class OncePerProblem(logging.Filter):
    def __init__(self, quiet_seconds: float = QUIET_SECONDS, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.quiet_seconds, self.clock = quiet_seconds, clock
        self._shown: dict[str, float] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        problem = _NUMBERS.sub("#", _TIMINGS.sub("", record.getMessage()))
        now = self.clock()
        with self._lock:
            shown = self._shown.get(problem)
            if shown is not None and now - shown < self.quiet_seconds:
                return False
            self._shown[problem] = now
        return True


def kafka_logger(client: str) -> logging.Logger:
    """The logger a librdkafka client of this kind (consumer, producer, admin...) is given."""
    logger = logging.getLogger(f"librdkafka.{client}")
    logger.setLevel(logging.WARNING)
    if not any(isinstance(existing, OncePerProblem) for existing in logger.filters):
        logger.addFilter(OncePerProblem())
    return logger


@dataclass(frozen=True)
class KafkaCluster:
    """The brokers and how a client signs in to them, as Kafka names it: TLS (`SSL`), SASL
    (PLAIN, as Confluent Cloud takes it, or SCRAM, as Amazon MSK and Aiven do) or both. Every
    client of the worker, the API and the audit gets it, through `client_config`; the Debezium
    connector's own clients get it as Java clients read it (`java_client`)."""

    bootstrap_servers: str
    protocol: str = "PLAINTEXT"  # PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL
    sasl_mechanism: str | None = None  # PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None  # PEM; else the system's CAs
    certificate_file: Path | None = None  # PEM: the client's own certificate, where the brokers ask for one
    key_file: Path | None = None  # PEM: its private key
    key_password: str | None = field(default=None, repr=False)

    @classmethod
    def of(cls, kafka: KafkaCluster | str) -> KafkaCluster:
        """`kafka` itself, or a plain address (no TLS, no SASL) as a cluster."""
        return kafka if isinstance(kafka, KafkaCluster) else cls(kafka)

    def __str__(self) -> str:  # what an error names: where it asked
        return self.bootstrap_servers

    def librdkafka(self) -> dict[str, str]:
        """The settings librdkafka reads (CONFIGURATION.md), without the brokers' addresses."""
        config = {"security.protocol": self.protocol.lower()}
        if self.sasl_mechanism is not None:
            config |= {"sasl.mechanism": self.sasl_mechanism, "sasl.username": self.username or "",
                       "sasl.password": self.password or ""}
        if self.protocol.endswith("SSL"):
            # "probe": the system's CA bundle, wherever this system keeps it; the wheel's OpenSSL
            # looks where it was built otherwise, and trusted no broker.
            config["ssl.ca.location"] = str(self.ca_file) if self.ca_file else "probe"
        if self.certificate_file is not None and self.key_file is not None:
            config |= {"ssl.certificate.location": str(self.certificate_file), "ssl.key.location": str(self.key_file)}
            if self.key_password is not None:
                config["ssl.key.password"] = self.key_password
        return config

    def java_client(self) -> dict[str, str]:
        """The same for a Java client on another machine (Kafka Connect's): the CA file's text
        itself, which Kafka takes since 2.7, since the file is on this machine, not Connect's. No
        client certificate: its private key would be in Connect's configuration and in the
        connector's log, which masks passwords only (`sampro_capture` refuses mutual TLS)."""
        config = {"security.protocol": self.protocol}
        if self.sasl_mechanism is not None:
            module = ("org.apache.kafka.common.security.plain.PlainLoginModule" if self.sasl_mechanism == "PLAIN"
                      else "org.apache.kafka.common.security.scram.ScramLoginModule")
            config |= {"sasl.mechanism": self.sasl_mechanism,
                       "sasl.jaas.config": f'{module} required username="{_jaas(self.username or "")}" '
                                           f'password="{_jaas(self.password or "")}";'}
        if self.ca_file is not None:
            config |= {"ssl.truststore.type": "PEM", "ssl.truststore.certificates": self.ca_file.read_text()}
        return config


def _jaas(value: str) -> str:
    """A value inside a JAAS option's double quotes, which Kafka reads with backslash escapes."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


# librdkafka's errors that say a broker answered and the sign-in failed: a password refused, or a
# TLS handshake that failed (a certificate either side would not take), not an outage. It tells
# them to error_cb alone; the call that then fails says only "Broker transport failure" or "timed out".
REFUSED_SIGN_IN = {KafkaError._AUTHENTICATION: "the brokers refused the sign-in",
                   KafkaError._SSL: "the TLS handshake with the brokers failed"}
REFUSAL_REMEMBERED_SECONDS = 60.0
_refusals: dict[KafkaCluster, tuple[float, str]] = {}  # a sign-in -> (when, what failed and librdkafka's word)


def client_config(kafka: KafkaCluster | str, client: str, **config: Any) -> dict[str, Any]:
    """A librdkafka configuration for `kafka` (a plain address: no TLS, no SASL) that logs
    through `kafka_logger(client)` and remembers a refused sign-in for `kafka_down` (before
    calling an `error_cb` of the caller's)."""
    cluster = KafkaCluster.of(kafka)
    callback = config.pop("error_cb", None)

    def error_cb(error: KafkaError) -> None:
        if (failed := REFUSED_SIGN_IN.get(error.code())) is not None:
            _refusals[cluster] = (time.monotonic(), f"{failed}: {error.str()}")
        if callback is not None:
            callback(error)

    return {"bootstrap.servers": cluster.bootstrap_servers, **cluster.librdkafka(), "logger": kafka_logger(client),
            "error_cb": error_cb, **config}


def kafka_down(bootstrap_servers: KafkaCluster | str, doing: str, error: Any, client: Any = None) -> Unavailable:
    """What a command says when no broker answers: where it asked, and librdkafka's reason, with
    the brokers' refusal of the sign-in when they refused it a moment ago. `client`: the one whose
    call failed, whose callbacks librdkafka holds until it is polled (a metadata request serves none)."""
    if client is not None:
        client.poll(0)
    reason = error.str() if hasattr(error, "str") else str(error)
    cluster = KafkaCluster.of(bootstrap_servers)
    refused = _refusals.get(cluster)
    if refused is not None and time.monotonic() - refused[0] < REFUSAL_REMEMBERED_SECONDS:
        reason = f"{reason}; {refused[1]}"
    return Unavailable("kafka", f"{doing} at {bootstrap_servers}: {reason}")
