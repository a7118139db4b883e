"""The Debezium connector configurations for Sampro's PO tables: the PostgreSQL one (run for real in
tests/integration/test_debezium_sampro_capture.py) and the SQL Server one for production, which
no SQL Server here can run, so its generated config is checked key by key."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import quote_plus

import pytest

from connectors.debezium import SamproCapture, SqlServerSamproCapture, sampro_capture
from connectors.debezium.sampro_config import SQL_SERVER_CONNECTOR
from connectors.kafka_clients import KafkaCluster
from connectors.sampro.tables import SamproNames
from rules.errors import Misconfigured
from streams.settings import Settings

SQL_SERVER_URL = "mssql+pyodbc://svc_invoice:s3cr%40t@sampro-db.corp:1433/SAMPRO?Encrypt=yes&TrustServerCertificate=no"
RENAMED = SamproNames(schema_name="erp", po_header="POHDR", po_line="POLIN",
                      po_header_columns={"po_number": "PONUM"}, columns={"updated_at": "CHGDATE"})
# What the SQL Server connector cannot start without, and what the decoder relies on.
SQL_SERVER_REQUIRED = {
    "connector.class", "database.hostname", "database.port", "database.user", "database.password", "database.names",
    "table.include.list", "topic.prefix", "schema.history.internal.kafka.bootstrap.servers",
    "schema.history.internal.kafka.topic", "snapshot.mode", "time.precision.mode", "decimal.handling.mode",
    "value.converter", "value.converter.schemas.enable", "transforms", "transforms.route.type",
    "transforms.route.regex", "transforms.route.replacement",
}


def test_sql_server_config_has_every_required_key_with_the_urls_server_and_database():
    config = SqlServerSamproCapture(database_url=SQL_SERVER_URL, topic="sampro.cdc",
                                    kafka=KafkaCluster("kafka-1:9092,kafka-2:9092")).connector_config()
    assert SQL_SERVER_REQUIRED <= set(config)
    assert all(isinstance(value, str) and value != "" for value in config.values())
    assert config["connector.class"] == SQL_SERVER_CONNECTOR == "io.debezium.connector.sqlserver.SqlServerConnector"
    assert (config["database.hostname"], config["database.port"], config["database.names"]) == (
        "sampro-db.corp", "1433", "SAMPRO")
    assert config["database.user"] == "svc_invoice"
    assert config["schema.history.internal.kafka.bootstrap.servers"] == "kafka-1:9092,kafka-2:9092"
    assert config["schema.history.internal.kafka.topic"] == "invoice-automation-sampro.schema-history"
    assert config["snapshot.mode"] in ("no_data", "schema_only")
    assert config["time.precision.mode"] == "connect" and config["include.schema.changes"] == "false"
    assert (config["driver.encrypt"], config["driver.trustServerCertificate"]) == ("true", "false")
    assert "driver.hostNameInCertificate" not in config  # checked against the host connected to
    assert config["transforms.route.replacement"] == "sampro.cdc"
    # PostgreSQL's WAL heartbeat (connectors.debezium.wal_heartbeat) is not SQL that SQL Server runs.
    assert not any(key.startswith(("heartbeat.", "message.prefix.")) for key in config)


def test_sql_server_tables_are_schema_qualified_and_renamed_as_sampro_names_says():
    default = SqlServerSamproCapture(database_url=SQL_SERVER_URL).connector_config()
    assert default["table.include.list"] == r"dbo\.po_header,dbo\.po_line"
    renamed = SqlServerSamproCapture(database_url=SQL_SERVER_URL, names=RENAMED).connector_config()
    assert renamed["table.include.list"] == r"erp\.POHDR,erp\.POLIN"
    patterns = [re.compile(pattern) for pattern in renamed["table.include.list"].split(",")]
    assert [bool(p.fullmatch("erp.POHDR")) for p in patterns] == [True, False]
    assert not any(p.fullmatch("erpXPOHDR") for p in patterns)  # the dot means a dot


def test_only_the_columns_the_decoder_reads_are_captured_under_their_installations_names():
    """A wide header (notes, free text) made a change too large for the decoder to take."""
    for config in (SqlServerSamproCapture(database_url=SQL_SERVER_URL, names=RENAMED).connector_config(),
                   SamproCapture(database_url="postgresql://u:p@db/sampro", names=RENAMED).connector_config()):
        patterns = [re.compile(pattern) for pattern in config["column.include.list"].split(",")]
        captured = {name for name in ("erp.POHDR.PONUM", "erp.POHDR.CHGDATE", "erp.POLIN.po_number",
                                      "erp.POLIN.CHGDATE", "Sampro.erp.POHDR.PONUM", "erp.POHDR.NOTES",
                                      "erp.POLIN.unit_price", "erp.POHDR.po_number", "erpXPOHDR.PONUM")
                    if any(pattern.fullmatch(name) for pattern in patterns)}
        assert captured == {"erp.POHDR.PONUM", "erp.POHDR.CHGDATE", "erp.POLIN.po_number", "erp.POLIN.CHGDATE",
                            "Sampro.erp.POHDR.PONUM"}


def test_the_password_comes_from_the_sampro_url_and_nowhere_else():
    # As the marketplace capture does: Connect keeps it in its config store (README says so).
    config = SqlServerSamproCapture(database_url=SQL_SERVER_URL).connector_config()
    assert config["database.password"] == "s3cr@t"
    assert [key for key, value in config.items() if "s3cr" in value] == ["database.password"]


def test_a_test_servers_self_signed_certificate_and_an_unencrypted_link_carry_over():
    trusting = SqlServerSamproCapture(database_url="mssql+pyodbc://u:p@h/S?Encrypt=yes&TrustServerCertificate=yes")
    plain = SqlServerSamproCapture(database_url="mssql+pyodbc://u:p@h/S?encrypt=no")
    assert trusting.connector_config()["driver.trustServerCertificate"] == "true"
    assert plain.connector_config()["driver.encrypt"] == "false"
    assert plain.connector_config()["database.port"] == "1433"


@pytest.mark.parametrize("url", [
    "mssql+pyodbc://u:p@10.0.0.5:1433/SAMPRO?Encrypt=strict&HostNameInCertificate=Sampro-DB.corp",
    "mssql+pyodbc:///?odbc_connect=" + quote_plus("SERVER=tcp:10.0.0.5,1433;DATABASE=SAMPRO;UID=u;PWD=p;"
                                                  "Encrypt=Strict;HostNameInCertificate=Sampro-DB.corp"),
])
def test_strict_encryption_and_the_name_in_the_certificate_carry_over(url):
    """Strict became `encrypt=true`, a downgrade a server that forces strict encryption refuses, and
    HostNameInCertificate was dropped: the certificate was checked against 10.0.0.5 and failed."""
    config = SqlServerSamproCapture(database_url=url).connector_config()
    assert (config["driver.encrypt"], config["driver.hostNameInCertificate"]) == ("strict", "Sampro-DB.corp")


LOGIN = ("database.hostname", "database.port", "database.user", "database.password", "database.names",
         "driver.encrypt", "driver.trustServerCertificate")


def login(database_url: str) -> tuple[str, ...]:
    config = sampro_capture(database_url, "sampro.cdc", SamproNames(), KafkaCluster("kafka:9092")).connector_config()
    return tuple(config[key] for key in LOGIN)


def test_an_odbc_connection_string_gives_the_capture_its_server_database_login_and_encryption():
    """The reader takes an `odbc_connect` URL; the capture was registered for 127.0.0.1 with no
    database and no login, and Connect refused it on every start."""
    odbc = ("DRIVER={ODBC Driver 18 for SQL Server};SERVER=tcp:sampro-db.corp,1533;DATABASE=SAMPRO;"
            "UID=svc_invoice;PWD={pa;ss}}word};Encrypt=yes;TrustServerCertificate=yes")
    assert login("mssql+pyodbc:///?odbc_connect=" + quote_plus(odbc)) == (
        "sampro-db.corp", "1533", "svc_invoice", "pa;ss}word", "SAMPRO", "true", "true")


def test_a_named_instance_is_reached_by_its_port_and_refused_without_one():
    """Debezium's JDBC URL always has a port, which the driver takes over an instance name: the
    capture read the host's default instance (a test copy of Sampro, perhaps)."""
    assert login(r"mssql+pyodbc://u:p@sampro-db\SAMPRO01:1500/SAMPRO")[:2] == ("sampro-db", "1500")
    with pytest.raises(Misconfigured, match=r"instance SAMPRO01 of sampro-db without its port"):
        sampro_capture(r"mssql+pyodbc://u:p@sampro-db\SAMPRO01/SAMPRO", "sampro.cdc", SamproNames(),
                       KafkaCluster("kafka:9092"))
    odbc = quote_plus(r"SERVER=sampro-db\SAMPRO01;DATABASE=SAMPRO;UID=u;PWD=p")
    with pytest.raises(Misconfigured, match="without its port"):
        sampro_capture(f"mssql+pyodbc:///?odbc_connect={odbc}", "sampro.cdc", SamproNames(), KafkaCluster("kafka:9092"))
    freetds = quote_plus(r"SERVER=TCP:sampro-db\SAMPRO01;PORT=1450;DATABASE=SAMPRO;UID=u;PWD=p")
    assert login(f"mssql+pyodbc:///?odbc_connect={freetds}")[:2] == ("sampro-db", "1450")


def test_a_dsn_that_names_no_server_or_database_is_refused_at_start():
    with pytest.raises(Misconfigured, match=r"names no database \(a DSN\?\)"):
        sampro_capture("mssql+pyodbc://u:p@SamproDSN", "sampro.cdc", SamproNames(), KafkaCluster("kafka:9092"))


def test_only_the_tables_data_topics_are_routed_into_the_one_topic():
    route = re.compile(SqlServerSamproCapture(database_url=SQL_SERVER_URL).connector_config()["transforms.route.regex"])
    assert route.fullmatch("invoice-automation-sampro.SAMPRO.dbo.po_line")
    assert not route.fullmatch("invoice-automation-sampro")  # SQL Server's schema change topic


def test_postgresql_config_uses_pgoutput_its_own_slot_and_publication_and_the_named_tables():
    capture = SamproCapture(database_url="postgresql+psycopg://invoice:pw@127.0.0.1:5433/sampro", topic="s.cdc",
                            names=RENAMED)
    config = capture.connector_config()
    assert config["connector.class"] == "io.debezium.connector.postgresql.PostgresConnector"
    assert config["plugin.name"] == "pgoutput" and config["publication.autocreate.mode"] == "filtered"
    assert (config["slot.name"], config["publication.name"]) == ("invoice_automation_sampro",) * 2
    assert (config["database.port"], config["database.dbname"]) == ("5433", "sampro")
    assert (config["database.user"], config["database.password"]) == ("invoice", "pw")
    assert config["table.include.list"] == r"erp\.POHDR,erp\.POLIN"
    assert config["topic.prefix"] == "invoice-automation-sampro" and config["transforms.route.replacement"] == "s.cdc"
    assert config["snapshot.mode"] == "no_data" and config["tombstones.on.delete"] == "false"
    assert "transforms.unwrap.type" not in config  # the whole envelope: the decoder needs source.table
    public = SamproCapture(database_url="postgresql+psycopg://u:p@h/sampro").connector_config()
    assert public["table.include.list"] == r"public\.po_header,public\.po_line"


def test_the_capture_follows_the_database_sampro_runs_on_and_is_named_after_the_pipeline():
    names = SamproNames()
    postgres = sampro_capture("postgresql+psycopg://u:p@h/sampro", "t", names, KafkaCluster("k:9092"), "AP-Test.2")
    assert isinstance(postgres, SamproCapture)
    assert (postgres.name, postgres.slot, postgres.publication) == ("AP-Test.2-sampro", "ap_test_2_sampro",
                                                                    "ap_test_2_sampro")
    default = sampro_capture("postgresql+psycopg://u:p@h/sampro", "t", names, KafkaCluster("k:9092"))
    assert (default.name, default.slot) == ("invoice-automation-sampro", "invoice_automation_sampro")
    sql_server = sampro_capture(SQL_SERVER_URL, "t", names, KafkaCluster("k:9092"), "ap")
    assert isinstance(sql_server, SqlServerSamproCapture) and sql_server.kafka == KafkaCluster("k:9092")
    assert sql_server.schema_history_topic == "ap-sampro.schema-history"
    with pytest.raises(ValueError, match="not sqlite"):
        sampro_capture("sqlite:///sampro.db", "t", names, KafkaCluster("k:9092"))


def test_the_schema_history_clients_sign_in_to_the_brokers_as_the_pipelines_do():
    """The connector's own producer and consumer of its schema history: without the sign-in, a
    capture of Sampro on a secured cluster failed at its first start, its topic never written."""
    kafka = KafkaCluster("b-1.msk:9096", "SASL_SSL", "SCRAM-SHA-512", "ap", "s3cret")
    config = SqlServerSamproCapture(database_url=SQL_SERVER_URL, kafka=kafka).connector_config()
    for client in ("producer", "consumer"):
        assert config[f"schema.history.internal.{client}.security.protocol"] == "SASL_SSL"
        assert config[f"schema.history.internal.{client}.sasl.mechanism"] == "SCRAM-SHA-512"
        assert config[f"schema.history.internal.{client}.sasl.jaas.config"] == (
            'org.apache.kafka.common.security.scram.ScramLoginModule required username="ap" password="s3cret";')


def test_the_readmes_command_prints_the_config_the_worker_registers(monkeypatch, tmp_path, capsys):
    """It passed KAFKA_BOOTSTRAP_SERVERS where the capture takes the cluster: an AttributeError on SQL
    Server, and a config registered by hand from it would have dropped the schema history's SASL."""
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    (command,) = re.findall(r'`python -c "([^"`]*sampro_capture[^"`]*)"`', readme)
    monkeypatch.chdir(tmp_path)  # no .env
    for name, value in {"DATA_DIR": str(tmp_path), "SAMPRO_CHANGES": "debezium", "SAMPRO_DB_URL": SQL_SERVER_URL,
                        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                        "KAFKA_SASL_USERNAME": "ap", "KAFKA_SASL_PASSWORD": "kafka-s3cret"}.items():
        monkeypatch.setenv(f"INVOICE_AUTOMATION_{name}", value)
    exec(command, {})  # as an operator runs it
    printed = json.loads(capsys.readouterr().out)
    settings = Settings()
    assert printed == sampro_capture(settings.sampro_db_url, settings.sampro_cdc_topic, settings.sampro_names,
                                     settings.kafka, settings.app_id).connector_config()  # as agents/sampro_changes
    assert printed["schema.history.internal.producer.security.protocol"] == "SASL_SSL"
