"""Debezium connectors on Sampro's PO header and line tables, feeding `sampro.changes` without polling.

Two connectors, one shape of record: the PostgreSQL connector on the Sampro stand-in (and a Sampro
that runs on PostgreSQL), and the SQL Server connector for production Sampro. Both keep
Debezium's whole change envelope (before, after, source, op), since which table a record comes
from decides which column renames apply, and route both tables into one topic so that the worker
subscribes to one name it created itself. Table and column names come from `SamproNames`, as for
the reader and the poller.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sqlalchemy.engine import make_url

from connectors.debezium.wal_heartbeat import HEARTBEAT_MS, wal_heartbeat
from connectors.kafka_clients import KafkaCluster
from connectors.sampro.tables import SamproNames
from rules.errors import Misconfigured

POSTGRES_CONNECTOR = "io.debezium.connector.postgresql.PostgresConnector"
SQL_SERVER_CONNECTOR = "io.debezium.connector.sqlserver.SqlServerConnector"
JSON_CONVERTER = "org.apache.kafka.connect.json.JsonConverter"
DEFAULT_NAME = "invoice-automation-sampro"


def _envelope_settings(prefix: str, topic: str) -> dict[str, str]:
    """What both connectors share: plain JSON envelopes, numbers and times the decoder can read alike."""
    return {
        "tasks.max": "1",
        "decimal.handling.mode": "string",
        # Kafka Connect's own Timestamp (milliseconds since the epoch) for every timestamp column
        # without a time zone, whatever its precision: the decoder need not know the column's type,
        # and the change id is in milliseconds anyway. Columns with a zone stay ISO strings.
        "time.precision.mode": "connect",
        # A deleted row is a change of its PO, carried by the delete event itself; the tombstone
        # after it would only be skipped.
        "tombstones.on.delete": "false",
        "key.converter": JSON_CONVERTER,
        "key.converter.schemas.enable": "false",
        "value.converter": JSON_CONVERTER,
        "value.converter.schemas.enable": "false",
        # Only the tables' data topics (<prefix>.<...>.<table>) are routed; anything the connector
        # writes under the bare prefix (SQL Server's schema changes) stays out of the worker's topic.
        "transforms": "route",
        "transforms.route.type": "org.apache.kafka.connect.transforms.RegexRouter",
        "transforms.route.regex": rf"{re.escape(prefix)}\..+",
        "transforms.route.replacement": topic,
    }


def _include_list(schema: str, names: SamproNames) -> str:
    # The list is of regular expressions over schema-qualified names: escaped, so that a name
    # with `$` or `.` in it means itself.
    return ",".join(re.escape(f"{schema}.{table}") for table in (names.po_header, names.po_line))


def _column_list(schema: str, names: SamproNames) -> str:
    """Only the columns the decoder reads: a wide header (notes, free text) made a change larger
    than the decoder takes, and its PO was never rechecked. The optional leading name is the
    database, which SQL Server's connector may put before the schema."""
    return ",".join(r"(?:[^.]+\.)?" + re.escape(f"{schema}.{table}.{names.column(key_table, column)}")
                    for key_table, table in (("po_header", names.po_header), ("po_line", names.po_line))
                    for column in ("po_number", "updated_at"))


def postgres_login(database_url: str) -> dict[str, str]:
    """Where and as whom Connect reaches a PostgreSQL database (Sampro's, or the marketplace's): the
    URL the worker reads it with, password included, which Connect keeps in its config store."""
    url = make_url(database_url)
    return {
        "database.hostname": url.host or "127.0.0.1",
        "database.port": str(url.port or 5432),
        "database.user": url.username or "",
        "database.password": url.password or "",
        "database.dbname": url.database or "",
    }


def odbc_attributes(connection_string: str) -> dict[str, str]:
    """An ODBC connection string's attributes, names case-folded: `KEY=value;` pairs, a value in
    braces when it holds a `;` (`PWD={a;b}`, a `}` in it doubled)."""
    attributes, rest = {}, connection_string
    while rest.strip():
        key, _, rest = rest.partition("=")
        rest = rest.lstrip()
        if rest.startswith("{"):
            value, at = "", 1
            while at < len(rest) and not (rest[at] == "}" and rest[at + 1:at + 2] != "}"):
                value, at = value + rest[at], at + (2 if rest[at] == "}" else 1)
            rest = rest[at + 1:].partition(";")[2]
        else:
            value, _, rest = rest.partition(";")
            value = value.strip()
        attributes[key.strip().lower()] = value
    return attributes


def sql_server_login(database_url: str) -> dict[str, str]:
    """Where and as whom Connect reaches Sampro, from the URL the worker reads it with: its host,
    port and database, or those of an `odbc_connect` string (SERVER, DATABASE, UID, PWD); its
    Encrypt, TrustServerCertificate and HostNameInCertificate, carried over to the JDBC driver
    (mssql-jdbc 12.4 in Debezium 3.6.1), which encrypts and checks the certificate by default as
    ODBC Driver 18 does. `Misconfigured` for what names no server or database (a DSN), and for a
    named instance without its port: Debezium's JDBC URL always has a port, which the driver takes
    over the instance name, so the capture read the default instance of the host (a test copy of
    Sampro, perhaps) while the worker read the named one."""
    url = make_url(database_url)
    odbc = odbc_attributes(str(url.query.get("odbc_connect", "")))
    attributes = {key.lower(): str(value) for key, value in url.query.items() if key != "odbc_connect"} | odbc
    options = {key: value.lower() for key, value in attributes.items()}
    host, port = url.host, url.port
    if server := odbc.get("server") or odbc.get("address") or odbc.get("addr"):
        host, _, given = re.sub(r"(?i)^tcp:", "", server).partition(",")
        given = given or odbc.get("port", "")  # FreeTDS names the port on its own
        port = int(given) if given.strip().isdigit() else None
    database = odbc.get("database") or url.database
    if not host or not database:
        raise Misconfigured(f"INVOICE_AUTOMATION_SAMPRO_DB_URL names no {'server' if not host else 'database'} "
                            "(a DSN?): the Sampro capture needs its host, port and database in the URL")
    host, _, instance = host.partition("\\")
    if instance and port is None:
        raise Misconfigured(f"INVOICE_AUTOMATION_SAMPRO_DB_URL names the instance {instance} of {host} without its "
                            f"port: Debezium reaches SQL Server by host and port alone (its default 1433 is the "
                            f"default instance's); give the instance's port ({host}\\{instance}:PORT)")
    encrypt = options.get("encrypt")
    # As the driver's pass-through properties, `driver.*` as the connector's documentation names them
    # (Debezium strips the prefix; `database.*` reaches the driver too). Strict (TDS 8.0, the
    # certificate always checked) stays strict: carried over as `true`, it was a downgrade, which a
    # server that forces strict encryption refuses. The name the certificate is checked against goes
    # too: left out, the certificate was checked against the host connected to, and one issued for
    # another name (an alias, a listener) failed the capture where the worker's reads passed.
    tls = {
        "driver.encrypt": encrypt if encrypt == "strict" else "false" if encrypt in ("no", "false", "optional")
        else "true",
        "driver.trustServerCertificate": "true" if options.get("trustservercertificate") in ("yes", "true")
        else "false",
    }
    if certified := attributes.get("hostnameincertificate"):
        tls["driver.hostNameInCertificate"] = certified
    return {
        "database.hostname": host,
        "database.port": str(port or 1433),
        "database.user": odbc.get("uid") or url.username or "",
        "database.password": odbc.get("pwd") or url.password or "",
        "database.names": database,
        **tls,
    }


@dataclass(frozen=True)
class SamproCapture:
    """Debezium's PostgreSQL connector (pgoutput) on the PO header and line tables of a Sampro on PostgreSQL."""

    name: str = DEFAULT_NAME  # the connector, and the prefix of its topics before they are routed
    database_url: str = ""  # SQLAlchemy URL of Sampro (INVOICE_AUTOMATION_SAMPRO_DB_URL)
    topic: str = "sampro.cdc"
    names: SamproNames = field(default_factory=SamproNames)
    # Its own slot and publication: the marketplace capture's must not be shared or dropped with it.
    slot: str = "invoice_automation_sampro"
    publication: str = "invoice_automation_sampro"
    # What changed before the capture ran cannot clear a held invoice (the poller starts at the
    # newest change for the same reason).
    snapshot_mode: str = "no_data"
    heartbeat_ms: int = HEARTBEAT_MS

    @property
    def tables(self) -> str:
        return _include_list(self.names.schema_name or "public", self.names)

    def connector_config(self) -> dict[str, str]:
        return {
            "connector.class": POSTGRES_CONNECTOR,
            "plugin.name": "pgoutput",
            **postgres_login(self.database_url),
            "topic.prefix": self.name,
            "table.include.list": self.tables,
            "column.include.list": _column_list(self.names.schema_name or "public", self.names),
            "slot.name": self.slot,
            "publication.name": self.publication,
            # Only the two PO tables in the publication: Sampro has many we must not read.
            "publication.autocreate.mode": "filtered",
            "snapshot.mode": self.snapshot_mode,
            **wal_heartbeat(self.heartbeat_ms),
            **_envelope_settings(self.name, self.topic),
        }


@dataclass(frozen=True)
class SqlServerSamproCapture:
    """Debezium's SQL Server connector on production Sampro's PO tables, which need CDC enabled first
    (`sys.sp_cdc_enable_db`, `sys.sp_cdc_enable_table`: README, "Deployment: Sampro on SQL Server")."""

    name: str = DEFAULT_NAME
    database_url: str = ""  # the mssql+pyodbc URL of Sampro (INVOICE_AUTOMATION_SAMPRO_DB_URL)
    topic: str = "sampro.cdc"
    names: SamproNames = field(default_factory=SamproNames)
    # The connector keeps the tables' schema history in a topic of its own, written and read by
    # clients of its own (not Connect's), through these brokers as Connect reaches them, signed in
    # as the pipeline's clients are.
    kafka: KafkaCluster = KafkaCluster("localhost:9092")
    snapshot_mode: str = "no_data"

    @property
    def tables(self) -> str:
        return _include_list(self.names.schema_name or "dbo", self.names)

    @property
    def schema_history_topic(self) -> str:
        return f"{self.name}.schema-history"

    def connector_config(self) -> dict[str, str]:
        return {
            "connector.class": SQL_SERVER_CONNECTOR,
            **sql_server_login(self.database_url),
            "topic.prefix": self.name,
            "table.include.list": self.tables,
            "column.include.list": _column_list(self.names.schema_name or "dbo", self.names),
            "snapshot.mode": self.snapshot_mode,
            "include.schema.changes": "false",
            "schema.history.internal.kafka.bootstrap.servers": self.kafka.bootstrap_servers,
            **{f"schema.history.internal.{client}.{key}": value
               for client in ("producer", "consumer") for key, value in self.kafka.java_client().items()},
            "schema.history.internal.kafka.topic": self.schema_history_topic,
            # The history only for the captured tables: Sampro's other tables may use types the
            # connector cannot parse, and there is no reason to read them.
            "schema.history.internal.store.only.captured.tables.ddl": "true",
            **_envelope_settings(self.name, self.topic),
        }


def sampro_capture(database_url: str, topic: str, names: SamproNames, kafka: KafkaCluster,
                   app_id: str = "invoice-automation") -> SamproCapture | SqlServerSamproCapture:
    """The capture for the database Sampro runs on; refuses one Debezium cannot capture.

    Named after the pipeline's app id, so that two pipelines sharing a Connect and a database (a
    test and production, two installations) never take over each other's connector or slot.
    """
    name = f"{app_id}-sampro"
    backend = make_url(database_url).get_backend_name()
    if backend == "postgresql":
        slot = re.sub(r"[^a-z0-9_]", "_", app_id.lower())[:56] + "_sampro"  # PostgreSQL: [a-z0-9_], 63 at most
        return SamproCapture(name=name, database_url=database_url, topic=topic, names=names, slot=slot,
                             publication=slot)
    if backend == "mssql":
        sql_server_login(database_url)  # what it cannot reach stops the worker at start
        if kafka.certificate_file is not None:
            raise Misconfigured("SAMPRO_CHANGES=debezium on SQL Server with KAFKA_SSL_CERTIFICATE_FILE: the "
                                "connector's schema-history clients would carry the private key in Connect's "
                                "configuration and log; sign in with SASL_SSL, or use SAMPRO_CHANGES=polling")
        return SqlServerSamproCapture(name=name, database_url=database_url, topic=topic, names=names,
                                      kafka=kafka)
    raise ValueError(f"SAMPRO_CHANGES=debezium captures Sampro on PostgreSQL or SQL Server, not {backend}; "
                     "use SAMPRO_CHANGES=polling")
