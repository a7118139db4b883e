"""Every knob of the service, read from INVOICE_AUTOMATION_* environment variables (or a .env file).

Settings are read when `Settings()` is built, never at import time, so tests and the demo can
point the same code at different brokers and databases.
"""

from __future__ import annotations

import difflib
import email.utils
import importlib
import ipaddress
import math
import os
import re
import ssl
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    Field,
    FilePath,
    IPvAnyNetwork,
    SecretStr,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import to_jsonable_python
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from connectors.kafka_clients import KafkaCluster, max_poll_interval
from connectors.sampro.tables import SamproNames, StampClock
from rules.limits import control_character
from rules.policy import PolicyError, load_policy

DEFAULT_DATA_DIR = Path(".invoice-automation")
PREFIX = "INVOICE_AUTOMATION_"
# INVOICE_AUTOMATION_* variables that are read outside these settings.
OTHER_VARIABLES = frozenset({"CACHE"})  # devstack/install.py: where the stack's downloads are kept
ApiRole = Literal["viewer", "clerk"]


MAX_USER_NAME = 200  # what a release's or a dispatch's `user` holds (rules.lifecycle)
MIN_SECRET_LENGTH = 32
# Estimated as length x the Shannon entropy of the secret's characters: a random hex or base64
# token of 32 characters scores about 115 (never below 95 in 2,000 draws), a word repeated to length
# far below.
MIN_SECRET_BITS = 90
# How .env.example's values begin: copied unchanged, a secret anyone can read in the repository.
SAMPLE_SECRET = "replace-with"
HOW_TO_MAKE_ONE = "make one with `openssl rand -hex 32`"
# The RPA signing key: 32 characters of `openssl rand -hex 32` or more; past 64 bytes HMAC only hashes it.
RPA_SIGNING_KEY_LENGTH = (MIN_SECRET_LENGTH, 256)


def guessable(secret: str) -> bool:
    """A secret anyone could know: short, a word repeated, or a sample value left as it was."""
    counts = Counter(secret)
    bits = -sum(n * math.log2(n / len(secret)) for n in counts.values()) if secret else 0.0
    return len(secret) < MIN_SECRET_LENGTH or bits < MIN_SECRET_BITS or SAMPLE_SECRET in secret.lower()


class ApiUser(BaseModel):
    """Someone who signs in to the dashboard; `password_hash` comes from `invoice-automation api hash-password`."""

    # Named in each release and dispatch the user sends, and in the invoice's history: a longer name
    # signed in, then made each of them a 500. No control character, as for a proxy's user header.
    name: str = Field(min_length=1, max_length=MAX_USER_NAME)
    # argon2's encoded form: a password written here in clear would never sign in, and sit in the environment.
    password_hash: str = Field(pattern=r"^\$argon2(id|i|d)\$")
    role: ApiRole = "viewer"

    @field_validator("name")
    @classmethod
    def _printable(cls, name: str) -> str:
        if found := control_character(name):
            raise ValueError(f"a user name cannot hold a control character ({found})")
        return name


# What Kafka takes as a topic name (a longer one, or another character, fails only when the
# topic is first created); the changelog topics add 30 characters to APP_ID.
TopicName = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._-]+$")]
# What an SMTP envelope, a mail header and smtplib's AUTH take: one line of printable ASCII. Any
# other value failed each email alike, and each invoice's hand-off with it.
SmtpText = Annotated[str, StringConstraints(min_length=1, max_length=320, pattern=r"^[ -~]+$")]


def _sqlite_in_data_dir(name: str) -> Callable[[dict[str, Any]], str]:
    """A default database URL: SQLite in DATA_DIR, as DATA_DIR is set. A path under the working
    folder was not writable where the working folder is not the process's (the image's /app):
    the API stopped at start on its sessions database."""
    return lambda settings: f"sqlite:///{settings.get('data_dir', DEFAULT_DATA_DIR)}/{name}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=PREFIX,
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
        hide_input_in_errors=True,  # a database URL holds its password
    )

    # Kafka
    kafka_bootstrap_servers: str = Field(default="127.0.0.1:9092", min_length=1)
    # How every client signs in to the brokers (`kafka`): TLS, SASL or both, as Kafka names them.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = Field(default=None, min_length=1, max_length=1024)
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_ca_file: FilePath | None = None  # PEM; the system's CAs without it
    kafka_ssl_certificate_file: FilePath | None = None  # PEM, with the key: where the brokers ask for one (mTLS)
    kafka_ssl_key_file: FilePath | None = None  # PEM (PKCS#8 for the Debezium connector's Java clients)
    kafka_ssl_key_password: SecretStr | None = None
    schema_registry_url: str | None = None
    # The registry subject of each record type, "{record}" being its full name (RecordNameStrategy);
    # a prefix such as "ap-prod.{record}" keeps two installations apart on one registry.
    schema_registry_subject: str = Field(default="{record}", min_length=8, max_length=255)
    # Names the consumer groups, the changelog topics and the Sampro capture: a topic name's characters.
    app_id: TopicName = "invoice-automation"
    topic_partitions: int = Field(default=6, ge=1, le=10_000)
    # None: the brokers' default.replication.factor (1 was sent: a 3-broker cluster got its ledgers
    # and verdicts on one replica, and one whose min.insync.replicas is 2 refused every commit).
    topic_replication_factor: int | None = Field(default=None, ge=1, le=32)
    audit_retention_days: int = Field(default=3650, ge=1)
    marketplace_topic: TopicName = "marketplace.invoices"
    invoices_topic: TopicName = "invoices"
    completions_topic: TopicName = "rpa.completions"
    commands_topic: TopicName = "po.commands"
    sampro_changes_topic: TopicName = "sampro.changes"
    verdicts_topic: TopicName = "verdicts"  # verdicts and the status changes after them, in order per PO
    rpa_requests_topic: TopicName = "rpa.requests"
    dlq_topic: TopicName = "invoices.dlq"
    store: Literal["memory://", "rocksdb://"] = "memory://"
    batch_size: int = Field(default=500, ge=1, le=100_000)  # librdkafka takes at most 1,000,000
    # A batch is what has arrived, up to batch_size: it grows with the load. batch_seconds is how
    # long a poll waits when nothing has arrived (a quiet worker's loop); batch_linger_seconds how
    # long it waits for more once something has, as a producer's linger.ms: each batch is one Kafka
    # transaction, and fuller ones commit less often. It adds at most that much to each hop.
    batch_seconds: float = Field(default=0.05, gt=0, le=60)
    batch_linger_seconds: float = Field(default=0.02, ge=0, le=5)
    # How soon a dead worker's partitions move on; within the broker's group.min/max.session.timeout.ms.
    # Above 300 s, a step may also take that long between two polls (librdkafka's max.poll.interval.ms).
    # At least 6 s, the brokers' default group.min.session.timeout.ms: below it every join of the group
    # was refused (INVALID_SESSION_TIMEOUT), the worker consumed nothing and only logged a warning.
    session_timeout_seconds: float = Field(default=30.0, ge=6, le=1800)
    # Every default SQLite database is in it (the settings below it read it: keep it above them).
    data_dir: Path = DEFAULT_DATA_DIR
    log_format: Literal["text", "json"] = "text"  # json: one JSON object per line, for a log collector
    # The worker's own /readyz and /metrics; off unless a port is given.
    worker_http_host: str = "127.0.0.1"
    worker_http_port: int | None = Field(default=None, ge=1, le=65535)  # 0 would be a port no one is told

    # Marketplace source
    marketplace_source: Literal["polling", "debezium"] = "polling"
    marketplace_db_url: str = Field(default_factory=_sqlite_in_data_dir("marketplace.db"))
    poll_interval_seconds: float = Field(default=2.0, gt=0, le=3600)
    # A transaction's rows carry its start's time (PostgreSQL's now()): one committed later than the
    # look-back after it is never read. At 0 every row committed after a later one's poll was lost.
    poll_lookback_seconds: float = Field(default=300.0, ge=60, le=7 * 24 * 3600)
    connect_url: str | None = None

    # Sampro (purchase orders, entered invoices)
    sampro_db_url: str = Field(default_factory=_sqlite_in_data_dir("sampro.db"))
    sampro_names: SamproNames = SamproNames()
    # How long a read of Sampro waits for an ERP session's lock (SQL Server's READ COMMITTED waits
    # behind writers); past it the read is an outage, waited out and tried again.
    sampro_lock_wait_seconds: float = Field(default=30.0, gt=0, le=3600)
    # How Sampro's changes reach sampro.changes, to re-judge held invoices: polled from the PO
    # tables' updated_at columns (every POLL_INTERVAL_SECONDS), captured by Debezium from the PO
    # header and line tables ("debezium": no updated_at needed, nothing polls Sampro), or "none"
    # where neither is possible (held invoices then wait for a clerk or a change of rules).
    sampro_changes: Literal["polling", "debezium", "none"] = "polling"
    # The database clock the poller reads `updated_at` against: "local" where Sampro stamps
    # GETDATE(), "utc" where it stamps SYSUTCDATETIME(), "later" for the later of the two (the same
    # on a server on UTC; right, too, for local time east of UTC and UTC west of it). Set wrongly,
    # rows committed late are never read (connectors/sampro/tables.py, StampClock).
    sampro_clock: StampClock = "later"
    # Where the Debezium capture of Sampro's PO tables writes its change events, both tables in one
    # topic (created at start, so that the worker's subscription finds it before the first change).
    sampro_cdc_topic: TopicName = "sampro.cdc"

    # processscheduler
    scheduler_db_url: str = Field(default_factory=_sqlite_in_data_dir("scheduler.db"))
    # How long the worker's statements wait for another session's lock on processscheduler (a DBA's
    # UPDATE left open, a migration's ALTER queued); past it processscheduler is an outage, waited out
    # and tried again. Without it the loop waited as long as the lock was held, readiness green.
    scheduler_lock_wait_seconds: float = Field(default=30.0, gt=0, le=3600)

    # Rules
    tolerances_file: FilePath | None = None  # named at start when it is not a file of tolerances
    max_invoice_lines: int = Field(default=1000, ge=1, le=100_000)  # more is INVALID_INVOICE

    # RPA hand-off
    dispatch_mode: Literal["automatic", "approval"] = "automatic"
    # Why a clerk may release a hold: the dashboard offers these, the API accepts only these.
    release_reason_codes: list[Annotated[str, StringConstraints(min_length=1, max_length=64)]] = Field(
        default=["PRICE_AGREED", "QUANTITY_AGREED", "GOODS_RECEIVED", "TAX_CONFIRMED", "CHARGE_AGREED",
                 "DATE_ACCEPTED", "PO_TO_BE_CORRECTED", "OTHER"], min_length=1)
    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=8025, ge=1, le=65535)
    smtp_starttls: bool = False  # the server's certificate and name are checked (the system's CAs)
    smtp_implicit_tls: bool = False  # TLS from the first byte (SMTPS, port 465), checked as STARTTLS is
    smtp_ca_file: FilePath | None = None  # ... or this CA bundle's (PEM), for an internal relay's own CA
    smtp_username: SmtpText | None = None
    smtp_password: SecretStr | None = None
    rpa_mail_from: SmtpText = "invoice-automation@localhost"
    rpa_mail_to: SmtpText = "rpa-bot@localhost"
    # Signs each RPA email (X-Invoice-Signature, README) for the bot to check: without it, anyone who
    # can mail the bot's mailbox has an invoice entered in Sampro.
    rpa_signing_key: SecretStr | None = None

    # HTTP API and dashboard. The API refuses to start without the token and the session secret
    # (api/startup.py); the worker needs neither, so they have no default here either.
    api_token: SecretStr | None = None  # the RPA bot's bearer token for its callbacks
    api_users: list[ApiUser] = Field(default_factory=list)
    api_session_secret: SecretStr | None = None  # signs the session cookies
    api_session_max_age_seconds: int = Field(default=8 * 3600, ge=60, le=30 * 24 * 3600)
    # Where sign-outs are remembered, so a signed-out cookie stays dead across restarts; every
    # replica of the API must share it.
    api_sessions_db_url: str = Field(default_factory=_sqlite_in_data_dir("api-sessions.db"))
    # The browser reaches the API over https (usually through a TLS proxy that speaks http to it):
    # session cookies are marked Secure and HSTS is sent.
    api_served_over_https: bool = False
    # Origins other than the API's own that may send changes (the dashboard's public address
    # when a proxy rewrites Host), e.g. ["https://ap.example.com"].
    api_allowed_origins: list[Annotated[str, StringConstraints(pattern=r"^https?://[^/?#\s]+$")]] = Field(
        default_factory=list, max_length=20)  # as a browser sends Origin: scheme://host[:port]
    # Single sign-on: the user (and role) from headers a proxy sets; honoured only from the
    # proxy's addresses or with its shared secret, and the API refuses to start without either.
    api_trusted_user_header: str | None = Field(default=None, max_length=100)
    api_trusted_role_header: str | None = Field(default=None, max_length=100)
    api_trusted_default_role: ApiRole = "viewer"
    api_trusted_proxies: list[IPvAnyNetwork] = Field(default_factory=list, max_length=100)
    api_trusted_proxy_secret: SecretStr | None = None  # sent by the proxy as X-Invoice-Automation-Proxy-Secret
    # Bodies: small by default, larger for a dry run of a whole invoice (the rules accept 256 kB).
    api_max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    api_max_validate_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=64 * 1024 * 1024)
    # Failed sign-ins: this many per user and per address are free, then each further attempt
    # waits twice as long as the last, from the first back-off up to the longest.
    api_sign_in_free_failures: int = Field(default=5, ge=1, le=100)
    api_sign_in_backoff_seconds: float = Field(default=1.0, gt=0, le=60)
    api_sign_in_backoff_max_seconds: float = Field(default=900.0, gt=0, le=24 * 3600)
    # Password checks (argon2, 64 MiB each) at once; more wait, and past the wait answer 503.
    api_password_checks_at_once: int = Field(default=2, ge=1, le=32)
    api_password_check_wait_seconds: float = Field(default=5.0, gt=0, le=60)
    # /metrics needs `Authorization: Bearer <token>` when set.
    api_metrics_token: SecretStr | None = None
    # /metrics, /readyz and /api/kpi answer from their last look at Kafka and the database for this long.
    api_status_cache_seconds: float = Field(default=5.0, ge=0, le=300)

    @property
    def kafka(self) -> KafkaCluster:
        """The brokers, and how every client signs in to them."""
        password, key_password = self.kafka_sasl_password, self.kafka_ssl_key_password
        return KafkaCluster(self.kafka_bootstrap_servers, self.kafka_security_protocol, self.kafka_sasl_mechanism,
                            self.kafka_sasl_username, password.get_secret_value() if password else None,
                            self.kafka_ssl_ca_file, self.kafka_ssl_certificate_file, self.kafka_ssl_key_file,
                            key_password.get_secret_value() if key_password else None)

    @property
    def rpa_mail_group(self) -> str:
        """The consumer group of the RPA mailbox's flow; every other flow's is `app_id`."""
        return f"{self.app_id}-rpa-mail"

    @property
    def ledgers_changelog_topic(self) -> str:
        """The compacted topic that keeps the per-PO ledgers (streams/ledgers.py)."""
        return f"{self.app_id}-po-ledgers-changelog"

    @model_validator(mode="after")
    def _no_unknown_variables(self) -> Settings:
        """A misspelt variable would otherwise be ignored, and its default used without a word."""
        from dotenv import dotenv_values  # pydantic-settings' own reader of the .env file

        env_file = Path(str(self.model_config.get("env_file") or ".env"))
        problems = unknown_variables({**(dotenv_values(env_file) if env_file.is_file() else {}), **os.environ})
        if problems:
            raise ValueError("\n".join(problems))
        return self

    @model_validator(mode="after")
    def _topics_apart(self) -> Settings:
        """Each topic carries one kind of record: a dead-letter topic that was a work topic failed each
        dead letter again and dead-lettered it again, forever."""
        variables: dict[str, list[str]] = {}
        for name in Settings.model_fields:
            if name.endswith("_topic"):
                variables.setdefault(getattr(self, name), []).append(f"{PREFIX}{name.upper()}")
        for topic, named in variables.items():
            if len(named) > 1:
                raise ValueError(f"{', '.join(named[:-1])} and {named[-1]} name the same topic {topic!r}: each "
                                 "needs a topic of its own")
        if clash := variables.get(self.ledgers_changelog_topic):
            raise ValueError(f"{clash[0]} names {self.ledgers_changelog_topic!r}, the topic of the PO ledgers' "
                             f"changelog ({PREFIX}APP_ID and '-po-ledgers-changelog'): each needs a topic of its own")
        return self

    @field_validator("marketplace_db_url", "sampro_db_url", "scheduler_db_url", "api_sessions_db_url")
    @classmethod
    def _database_url(cls, url: str) -> str:
        """Read now, so that a mistake is named at start and not in a connection error, which
        showed part of the password ('ap:Secr3t@Tail@db' connects to host 'Tail@db')."""
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise ValueError("not a database URL (dialect+driver://user:password@host:port/database)") from None
        except ValueError:  # int()'s message quoted the port it read: the password of a URL without '@host'
            raise ValueError("its port is not a number (without '@host' the password is read as the port)") from None
        if parsed.host is not None and "@" in parsed.host:
            raise ValueError("an '@' in the user or password must be written %40")
        return url

    @field_validator("store")
    @classmethod
    def _store_library(cls, store: str) -> str:
        """RocksDB's library comes with the rocksdb extra: without it, named at start, where it was a
        ModuleNotFoundError's traceback once the worker had made its topics."""
        if store == "rocksdb://":
            try:
                importlib.import_module("rocksdict")
            except ImportError as exc:
                raise ValueError(f"RocksDB's library cannot be loaded ({exc}): install the rocksdb extra "
                                 "(pip install 'invoice-automation[rocksdb]'), or set memory://") from None
        return store

    @field_validator("tolerances_file")
    @classmethod
    def _tolerances(cls, path: Path | None) -> Path | None:
        """Read now as the worker and the API read it at start, where a file that is no table of
        tolerances (not TOML, not UTF-8, unreadable) was a traceback naming no setting."""
        if path is not None:
            try:
                load_policy(path)
            except OSError as exc:
                raise ValueError(f"{path} cannot be read: {exc.strerror}") from None
            except PolicyError as exc:
                raise ValueError(str(exc).removeprefix(f"{path}: ")) from None  # the setting's value names the file
        return path

    @field_validator("smtp_username", "smtp_ca_file", "kafka_sasl_mechanism", "kafka_sasl_username",
                     "kafka_sasl_password", "kafka_ssl_ca_file", "kafka_ssl_certificate_file", "kafka_ssl_key_file",
                     "kafka_ssl_key_password", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value  # SMTP_USERNAME= : no sign-in, as it always meant

    @field_validator("kafka_security_protocol", "kafka_sasl_mechanism", mode="before")
    @classmethod
    def _as_kafka_spells_it(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value  # sasl_ssl, as librdkafka takes it too

    @field_validator("kafka_ssl_ca_file", "kafka_ssl_certificate_file", "kafka_ssl_key_file")
    @classmethod
    def _pem(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        """A file that is no PEM (a JKS truststore, a DER certificate) was refused by every
        client at its first connection, and every client retried it for good."""
        what, wanted = (("private key", "PRIVATE KEY-----") if info.field_name == "kafka_ssl_key_file"
                        else ("certificate", "-----BEGIN CERTIFICATE-----"))
        if path is not None:
            try:
                text = path.read_text(errors="replace")
            except OSError as exc:
                raise ValueError(f"{path} cannot be read: {exc.strerror}") from None
            if wanted not in text:
                raise ValueError(f"{path} holds no PEM {what} ({wanted})")
        return path

    @field_validator("smtp_ca_file")
    @classmethod
    def _smtp_trust(cls, path: Path | None) -> Path | None:
        """Loaded as the mail worker loads it, by Python's ssl (PEM, OpenSSL's TRUSTED CERTIFICATE form
        too): one it cannot load stopped the mail worker at start on ssl.SSLError's traceback."""
        if path is not None:
            try:
                ssl.create_default_context().load_verify_locations(cafile=str(path))
            except ssl.SSLError as exc:
                raise ValueError(f"{path} holds no certificate Python's ssl can load ({exc.reason})") from None
            except OSError as exc:
                raise ValueError(f"{path} cannot be read: {exc.strerror}") from None
        return path

    @field_validator("rpa_mail_to")
    @classmethod
    def _one_mailbox(cls, address: str) -> str:
        """The RPA bot's one mailbox: the mailer sends to the first address of a list alone (RCPT TO)
        while To: names them all, so "rpa-bot@corp, ap-audit@corp" never reached ap-audit."""
        addresses = email.utils.getaddresses([address])
        # local@domain, neither empty nor spaced: "@corp" and "rpa bot@corp" reached the server as
        # RCPT TO, which refused it, and every hand-off failed for AP to release.
        if len(addresses) != 1 or not re.fullmatch(r"[^@\s]+@[^@\s]+", addresses[0][1]):
            raise ValueError("not one email address: the RPA emails go to the bot's mailbox alone "
                             "(rpa-bot@example.com, or RPA Bot <rpa-bot@example.com>)")
        return address

    @field_validator("smtp_password")
    @classmethod
    def _smtp_password(cls, password: SecretStr | None) -> SecretStr | None:
        if password is not None and not password.get_secret_value().isascii():
            raise ValueError("SMTP AUTH (smtplib) sends the password as ASCII: other letters never sign in")
        return password

    @field_validator("rpa_signing_key")
    @classmethod
    def _rpa_signing_key(cls, key: SecretStr | None) -> SecretStr | None:
        """The bot keys its check with the very same bytes: printable ASCII, nothing a shell, a YAML file
        or a password field would change, and long enough not to be guessed."""
        if key is None:
            return None
        low, high = RPA_SIGNING_KEY_LENGTH
        value = key.get_secret_value()
        if not low <= len(value) <= high:
            raise ValueError(f"{len(value)} characters, where the RPA signing key takes {low} to {high} (make one "
                             "with `openssl rand -hex 32`)")
        if not all("!" <= ch <= "~" for ch in value):
            raise ValueError("printable ASCII only, without spaces: the RPA bot must hold the very same bytes "
                             "(make one with `openssl rand -hex 32`)")
        if guessable(value):  # a forger who guessed it has the bot enter his invoices
            raise ValueError(f"too easy to guess: at least {low} random characters ({HOW_TO_MAKE_ONE})")
        return key

    @property
    def rpa_signing_key_bytes(self) -> bytes | None:
        """The RPA signing key as HMAC takes it (its ASCII bytes), or None when unset."""
        return self.rpa_signing_key.get_secret_value().encode() if self.rpa_signing_key else None

    @model_validator(mode="after")
    def _settings_that_go_together(self) -> Settings:
        """Each value alone is fine, together they cannot work: named at start, not at the first
        email or the first guesser."""
        if self.smtp_username is not None and not (self.smtp_password and self.smtp_password.get_secret_value()):
            raise ValueError(f"{PREFIX}SMTP_USERNAME is set without {PREFIX}SMTP_PASSWORD: every email would "
                             "fail to sign in")
        tls = self.smtp_starttls or self.smtp_implicit_tls
        if self.smtp_starttls and self.smtp_implicit_tls:
            raise ValueError(f"{PREFIX}SMTP_STARTTLS and {PREFIX}SMTP_IMPLICIT_TLS are both set: a server speaks "
                             "TLS from its first byte (SMTPS, port 465) or after STARTTLS (587, 25), not both")
        if self.smtp_port == 465 and not self.smtp_implicit_tls:
            # Spoken to in clear text, an SMTPS server says nothing: every email waited, readiness
            # saying only "Connection unexpectedly closed: timed out".
            raise ValueError(f"{PREFIX}SMTP_PORT=465 is SMTPS, which speaks TLS from its first byte: set "
                             f"{PREFIX}SMTP_IMPLICIT_TLS=true")
        if self.smtp_username is not None and not tls and not _loopback(self.smtp_host):
            raise ValueError(f"{PREFIX}SMTP_USERNAME without {PREFIX}SMTP_STARTTLS=true (or SMTP_IMPLICIT_TLS) "
                             f"sends the password to {self.smtp_host} in clear text: set it, or relay through a "
                             "server on this machine")
        if self.smtp_ca_file is not None and not tls:
            raise ValueError(f"{PREFIX}SMTP_CA_FILE is set without {PREFIX}SMTP_STARTTLS=true (or SMTP_IMPLICIT_TLS): "
                             "no certificate would be checked with it")
        self._kafka_sign_in()
        waits = 2 * (self.sampro_lock_wait_seconds + self.scheduler_lock_wait_seconds)
        if waits > (poll := max_poll_interval(self.session_timeout_seconds)):
            # A batch reads Sampro twice (its POs, the invoices entered there) and writes processscheduler
            # twice (the invoice numbers it hands over, its verdicts): waiting out a lock in each, it
            # outlived the poll interval, lost its partitions and was decided again, as long as the
            # other session held its lock.
            raise ValueError(f"{PREFIX}SAMPRO_LOCK_WAIT_SECONDS={self.sampro_lock_wait_seconds:g} and "
                             f"{PREFIX}SCHEDULER_LOCK_WAIT_SECONDS={self.scheduler_lock_wait_seconds:g}, each waited "
                             f"twice a batch, make {waits:g} s, more than the {poll:g} s a worker may take between two "
                             f"polls of Kafka (max.poll.interval: {PREFIX}SESSION_TIMEOUT_SECONDS, 300 at the least): "
                             f"a batch waiting for locks would lose its partitions; keep the two at {poll / 2:g} s "
                             "or less together")
        if self.api_sign_in_backoff_max_seconds < self.api_sign_in_backoff_seconds:
            raise ValueError(f"{PREFIX}API_SIGN_IN_BACKOFF_MAX_SECONDS is below {PREFIX}API_SIGN_IN_BACKOFF_SECONDS")
        if (self.marketplace_source == "debezium" and self.connect_url
                and make_url(self.marketplace_db_url).get_backend_name() != "postgresql"):
            raise ValueError(f"{PREFIX}MARKETPLACE_SOURCE=debezium with {PREFIX}CONNECT_URL registers a capture of "
                             f"PostgreSQL: {PREFIX}MARKETPLACE_DB_URL must name the marketplace's PostgreSQL")
        names = [user.name for user in self.api_users]
        if twice := sorted({name for name in names if names.count(name) > 1}):
            raise ValueError(f"{PREFIX}API_USERS names {', '.join(map(repr, twice))} more than once: which "
                             "password and role would be theirs?")
        return self

    def _kafka_sign_in(self) -> None:
        protocol, variable = self.kafka_security_protocol, f"{PREFIX}KAFKA_SECURITY_PROTOCOL"
        sasl = {"KAFKA_SASL_MECHANISM": self.kafka_sasl_mechanism, "KAFKA_SASL_USERNAME": self.kafka_sasl_username,
                "KAFKA_SASL_PASSWORD": self.kafka_sasl_password}
        if protocol.startswith("SASL"):
            if missing := [f"{PREFIX}{name}" for name, value in sasl.items() if not value]:
                raise ValueError(f"{variable}={protocol} signs in with SASL: set {', '.join(missing)}")
        elif given := [f"{PREFIX}{name}" for name, value in sasl.items() if value]:
            raise ValueError(f"{', '.join(given)} set with {variable}={protocol}, which signs in without SASL: "
                             "set SASL_SSL (or SASL_PLAINTEXT)")
        if (protocol == "SASL_PLAINTEXT" and self.kafka_sasl_mechanism == "PLAIN"
                and not all(_loopback(address.rpartition(":")[0] or address)
                            for address in self.kafka_bootstrap_servers.split(","))):
            raise ValueError(f"{variable}=SASL_PLAINTEXT with SASL PLAIN sends the password to "
                             f"{self.kafka_bootstrap_servers} in clear text: use SASL_SSL")
        tls = {"KAFKA_SSL_CA_FILE": self.kafka_ssl_ca_file,
               "KAFKA_SSL_CERTIFICATE_FILE": self.kafka_ssl_certificate_file,
               "KAFKA_SSL_KEY_FILE": self.kafka_ssl_key_file, "KAFKA_SSL_KEY_PASSWORD": self.kafka_ssl_key_password}
        if not protocol.endswith("SSL") and (given := [f"{PREFIX}{name}" for name, value in tls.items() if value]):
            raise ValueError(f"{', '.join(given)} set with {variable}={protocol}, which does not use TLS: "
                             "set SSL (or SASL_SSL)")
        if (self.kafka_ssl_certificate_file is None) != (self.kafka_ssl_key_file is None):
            raise ValueError(f"{PREFIX}KAFKA_SSL_CERTIFICATE_FILE and {PREFIX}KAFKA_SSL_KEY_FILE go together: a "
                             "client certificate is shown with its key")
        if self.kafka_ssl_key_password is not None and self.kafka_ssl_key_file is None:
            raise ValueError(f"{PREFIX}KAFKA_SSL_KEY_PASSWORD is set without {PREFIX}KAFKA_SSL_KEY_FILE")

    @field_validator("api_allowed_origins", mode="before")
    @classmethod
    def _origins_as_browsers_send_them(cls, origins: object) -> object:
        """https://AP.example.com/ as https://ap.example.com, the Origin a browser sends."""
        if not isinstance(origins, list):
            return origins
        return [origin.strip().rstrip("/").lower() if isinstance(origin, str) else origin for origin in origins]

    @field_validator("schema_registry_url", "connect_url")
    @classmethod
    def _http_url(cls, url: str | None, info: ValidationInfo) -> str | None:
        parts = [urlsplit(one.strip()) for one in (url or "").split(",")]
        if url is not None and not all(part.scheme in ("http", "https") and part.netloc for part in parts):
            raise ValueError("not an http:// or https:// URL with a host")
        # The registry's client takes a list; httpx refused one for Connect at every check, every 30 s.
        if info.field_name == "connect_url" and len(parts) > 1:
            raise ValueError(f"{len(parts)} URLs: Kafka Connect is asked at one (a comma-separated list is for "
                             "SCHEMA_REGISTRY_URL)")
        return url

    @field_validator("worker_http_host", "smtp_host")
    @classmethod
    def _host_named(cls, host: str, info: ValidationInfo) -> str:
        """An empty host was taken: the worker's /readyz and /metrics listened on every interface,
        and no email could be sent (each hand-off waited for good)."""
        if host.strip():
            return host
        if info.field_name == "worker_http_host":
            raise ValueError("empty, /readyz and /metrics would listen on every interface: leave it unset for "
                             "127.0.0.1, or write 0.0.0.0 to listen on every interface")
        raise ValueError("empty, no email to the RPA bot could be sent: name the SMTP server (127.0.0.1 when unset)")

    @field_validator("schema_registry_subject")
    @classmethod
    def _subject_names_the_record(cls, template: str) -> str:
        try:
            named = template.format(record="\0")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"{template!r}: only {{record}} may be named ({type(exc).__name__}: {exc})") from None
        if "\0" not in named:
            raise ValueError(f"{template!r} must contain {{record}}: each record type needs a subject of its own")
        return template


def unknown_variables(environ: Mapping[str, str | None]) -> list[str]:  # a .env entry may have no value
    """One problem per INVOICE_AUTOMATION_* variable that names no setting, with the closest name."""
    known = sorted({name.upper() for name in Settings.model_fields} | OTHER_VARIABLES)
    problems = []
    for variable in sorted(environ):
        upper = variable.upper()  # pydantic-settings matches names whatever their case
        if not upper.startswith(PREFIX):
            continue
        name, _, nested = upper.removeprefix(PREFIX).partition("__")  # SAMPRO_NAMES__PO_LINE: checked by its model
        if name in known:
            continue
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {PREFIX}{close[0]}{'__' + nested if nested else ''}?" if close else ""
        problems.append(f"{variable} is not a setting{hint}")
    return problems


MAX_SHOWN_VALUE = 80


def shown_value(name: str, value: object) -> str | None:
    """A setting's value as an error about it shows it; None for a setting that may hold a secret:
    a password or token, a URL (it may carry its password), the users and their password hashes."""
    field = Settings.model_fields.get(name)
    if field is None or name.endswith("_url") or name == "api_users" or "SecretStr" in str(field.annotation):
        return None
    # A file or a folder (which one is in use is what a look at it is for), a list, a group of
    # settings (SAMPRO_NAMES, read from several variables): as JSON has it.
    return shortened(repr(value if isinstance(value, str | int | float) else to_jsonable_python(value)))


def shortened(text: str) -> str:
    """At most `MAX_SHOWN_VALUE` characters of a value shown, its end cut off."""
    return text if len(text) <= MAX_SHOWN_VALUE else text[:MAX_SHOWN_VALUE - 3] + "..."


def _loopback(host: str) -> bool:
    """Mail to a relay on this machine (a sidecar, a local Postfix) never crosses a network."""
    try:
        return host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
