"""How the clients sign in to the brokers: the settings that say it, refused at start when they
cannot work, and what librdkafka and the Debezium connector's Java clients are given. The stack's
broker takes SASL_SSL too, where tests/integration/test_kafka_sign_in.py runs the worker on it."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme
from confluent_kafka import KafkaError
from pydantic import ValidationError

from connectors.debezium import sampro_capture
from connectors.kafka_clients import KafkaCluster, client_config, kafka_down
from connectors.sampro.tables import SamproNames
from rules.errors import Misconfigured
from streams.settings import Settings

PREFIX = "INVOICE_AUTOMATION_"


@pytest.fixture(scope="module")
def pem(tmp_path_factory) -> dict[str, Path]:
    """A CA, and a client certificate and key it signed, as PEM files."""
    folder = tmp_path_factory.mktemp("pem")
    ca = trustme.CA()
    client = ca.issue_cert("invoice-automation")
    files = {"ca": folder / "ca.pem", "cert": folder / "client.pem", "key": folder / "client.key"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    client.cert_chain_pems[0].write_to_path(str(files["cert"]))
    client.private_key_pem.write_to_path(str(files["key"]))
    return files


def settings(monkeypatch, **variables: object) -> Settings:
    for name, value in variables.items():
        monkeypatch.setenv(f"{PREFIX}{name.upper()}", str(value))
    return Settings(_env_file=None)


def test_by_default_every_client_speaks_plaintext_to_the_brokers(monkeypatch):
    config = client_config(settings(monkeypatch).kafka, "admin")
    assert config["security.protocol"] == "plaintext"
    assert not any(key.startswith(("sasl.", "ssl.")) for key in config)


def test_sasl_scram_over_tls_with_the_systems_cas_as_msk_and_aiven_take_it(monkeypatch):
    kafka = settings(monkeypatch, kafka_bootstrap_servers="b-1.msk:9096,b-2.msk:9096",
                     kafka_security_protocol="sasl_ssl", kafka_sasl_mechanism="scram-sha-512",
                     kafka_sasl_username="ap", kafka_sasl_password="pa\"ss\\word").kafka
    config = client_config(kafka, "consumer", **{"group.id": "g"})
    assert {key: config[key] for key in ("bootstrap.servers", "security.protocol", "sasl.mechanism", "sasl.username",
                                         "sasl.password", "ssl.ca.location", "group.id")} == {
        "bootstrap.servers": "b-1.msk:9096,b-2.msk:9096", "security.protocol": "sasl_ssl",
        "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "ap", "sasl.password": 'pa"ss\\word',
        "ssl.ca.location": "probe", "group.id": "g"}
    assert "pa\"ss" not in repr(kafka) and str(kafka) == "b-1.msk:9096,b-2.msk:9096"  # errors name where, not how
    java = kafka.java_client()
    assert java["sasl.jaas.config"] == ('org.apache.kafka.common.security.scram.ScramLoginModule required '
                                        'username="ap" password="pa\\"ss\\\\word";')
    assert "ssl.truststore.type" not in java  # the JVM's own CAs, as librdkafka's "probe"


def test_mutual_tls_with_a_private_ca_gives_librdkafka_the_files_and_java_the_cas_text_alone(monkeypatch, pem):
    """The private key inline was in Connect's configuration and in the connector's log (Debezium
    masks passwords only): the SQL Server capture refuses mutual TLS instead."""
    kafka = settings(monkeypatch, kafka_security_protocol="SSL", kafka_ssl_ca_file=pem["ca"],
                     kafka_ssl_certificate_file=pem["cert"], kafka_ssl_key_file=pem["key"]).kafka
    config = kafka.librdkafka()
    assert (config["ssl.ca.location"], config["ssl.certificate.location"], config["ssl.key.location"]) == (
        str(pem["ca"]), str(pem["cert"]), str(pem["key"]))
    assert "sasl.mechanism" not in config and "ssl.key.password" not in config
    java = kafka.java_client()
    assert java["security.protocol"] == "SSL" and "sasl.jaas.config" not in java
    assert java["ssl.truststore.certificates"] == pem["ca"].read_text()
    assert not any(key.startswith("ssl.keystore") for key in java) and "PRIVATE KEY" not in str(java)
    with pytest.raises(Misconfigured, match="private key in Connect's configuration"):
        sampro_capture("mssql+pyodbc://u:p@sampro:1433/SAMPRO", "sampro.cdc", SamproNames(), kafka)


def test_sasl_plain_as_confluent_cloud_takes_it_is_javas_plain_login_module():
    java = KafkaCluster("pkc.confluent.cloud:9092", "SASL_SSL", "PLAIN", "KEY", "SECRET").java_client()
    assert java["sasl.jaas.config"] == ('org.apache.kafka.common.security.plain.PlainLoginModule required '
                                        'username="KEY" password="SECRET";')


@pytest.mark.parametrize(("variables", "said"), [
    ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_mechanism": "PLAIN", "kafka_sasl_username": "ap"},
     f"{PREFIX}KAFKA_SECURITY_PROTOCOL=SASL_SSL signs in with SASL: set {PREFIX}KAFKA_SASL_PASSWORD"),
    ({"kafka_sasl_mechanism": "SCRAM-SHA-256"},
     f"{PREFIX}KAFKA_SASL_MECHANISM set with {PREFIX}KAFKA_SECURITY_PROTOCOL=PLAINTEXT, which signs in without "
     "SASL: set SASL_SSL (or SASL_PLAINTEXT)"),
    ({"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_mechanism": "GSSAPI", "kafka_sasl_username": "ap",
      "kafka_sasl_password": "p"}, "Input should be 'PLAIN', 'SCRAM-SHA-256' or 'SCRAM-SHA-512'"),
    ({"kafka_security_protocol": "TLS"}, "Input should be 'PLAINTEXT', 'SSL', 'SASL_PLAINTEXT' or 'SASL_SSL'"),
])
def test_sign_in_settings_that_cannot_work_are_refused_at_start(monkeypatch, variables, said):
    with pytest.raises(ValidationError, match=said.replace("(", r"\(").replace(")", r"\)")):
        settings(monkeypatch, **variables)


def test_sasl_plaintext_may_send_a_plain_password_only_to_brokers_on_this_machine(monkeypatch):
    kafka = settings(monkeypatch, kafka_bootstrap_servers="127.0.0.1:9092,localhost:9093",
                     kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="PLAIN",
                     kafka_sasl_username="ap", kafka_sasl_password="p").kafka
    assert kafka.librdkafka()["security.protocol"] == "sasl_plaintext" and "ssl.ca.location" not in kafka.librdkafka()


def test_tls_files_without_tls_or_a_certificate_without_its_key_are_refused(monkeypatch, pem):
    with pytest.raises(ValidationError, match=f"{PREFIX}KAFKA_SSL_CA_FILE set with {PREFIX}KAFKA_SECURITY_PROTOCOL="
                                              "PLAINTEXT, which does not use TLS"):
        settings(monkeypatch, kafka_ssl_ca_file=pem["ca"])
    with pytest.raises(ValidationError, match="KAFKA_SSL_CERTIFICATE_FILE and .*KAFKA_SSL_KEY_FILE go together"):
        settings(monkeypatch, kafka_security_protocol="SSL", kafka_ssl_certificate_file=pem["cert"])


@pytest.mark.parametrize(("variable", "holds", "said"), [
    ("kafka_ssl_ca_file", "a JKS truststore", "holds no PEM certificate"),
    ("kafka_ssl_key_file", "-----BEGIN CERTIFICATE-----", "holds no PEM private key"),
])
def test_a_file_that_is_not_pem_is_named_at_start(monkeypatch, tmp_path, pem, variable, holds, said):
    wrong = tmp_path / "wrong"
    wrong.write_text(holds)
    with pytest.raises(ValidationError, match=f"{wrong} {said}"):
        settings(monkeypatch, **{"kafka_security_protocol": "SSL", "kafka_ssl_certificate_file": pem["cert"],
                                 "kafka_ssl_key_file": pem["key"], variable: wrong})


def test_a_refused_sign_in_is_named_by_the_next_failure_and_the_clients_own_error_cb_still_called():
    taken: list[KafkaError] = []
    client_config("127.0.0.1:2", "audit", error_cb=taken.append)["error_cb"](
        KafkaError(KafkaError._AUTHENTICATION, "SASL authentication error: invalid credentials"))
    assert [error.code() for error in taken] == [KafkaError._AUTHENTICATION]
    assert str(kafka_down("127.0.0.1:2", "listing the topics", "Local: Broker transport failure")).endswith(
        "listing the topics at 127.0.0.1:2: Local: Broker transport failure; the brokers refused the sign-in: "
        "SASL authentication error: invalid credentials")
    assert "refused" not in str(kafka_down("127.0.0.1:1", "listing the topics", "Local: Broker transport failure"))


def test_a_failed_tls_handshake_is_told_apart_from_a_refused_password_and_kept_for_its_own_sign_in():
    """Said "the brokers refused the sign-in" for a CA of the client's that did not take the brokers'
    certificate; and a refusal of one sign-in was blamed for another client's outage."""
    wrong_ca = KafkaCluster("127.0.0.1:3", "SSL", ca_file=Path("/nowhere/ca.pem"))
    client_config(wrong_ca, "audit")["error_cb"](KafkaError(KafkaError._SSL, "certificate verify failed"))
    assert str(kafka_down(wrong_ca, "listing", "timed out")).endswith(
        "timed out; the TLS handshake with the brokers failed: certificate verify failed")
    assert "failed:" not in str(kafka_down(KafkaCluster("127.0.0.1:3", "SSL"), "listing", "timed out"))
