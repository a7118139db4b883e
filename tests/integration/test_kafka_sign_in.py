"""The worker and the API on a broker that asks for TLS and SASL, as managed Kafka does (Amazon MSK,
Confluent Cloud, Aiven): the stack's broker has a SASL_SSL listener with a certificate of its own
and a SCRAM-SHA-512 user (devstack/jvm.py). What the settings make of it is in
tests/unit/connectors/test_kafka_sign_in.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.app import create_app
from connectors.api_ports import TopicNotFound
from connectors.kafka_clients import KafkaCluster
from connectors.topic_reader import KafkaTopicReader
from rules.errors import Unavailable
from streams.settings import Settings
from streams.topics import ensure_topics
from tests.api_fixtures import TOKEN, with_api
from tests.integration.test_api_pipeline import decided_sample, status_of
from tests.stack_pipeline import pipeline  # noqa: F401 (the fixture: Debezium, Kafka, worker, PostgreSQL)


@pytest.fixture
def listener(stack_endpoints):
    assert stack_endpoints.kafka_signed_in is not None, (
        "the stack's broker has no SASL_SSL listener (started before it had one): run "
        "`invoice-automation stack down` and `stack up`")
    return stack_endpoints.kafka_signed_in


def test_an_invoice_goes_through_the_worker_and_the_api_signed_in_with_scram_over_tls(
        pipeline, listener, unique_name):  # noqa: F811
    # The marketplace's rows still come through Debezium, whose Connect speaks plaintext: one broker, two doors.
    pipeline.settings = pipeline.settings.model_copy(update={
        "kafka_bootstrap_servers": listener.bootstrap, "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": "SCRAM-SHA-512", "kafka_sasl_username": listener.username,
        "kafka_sasl_password": SecretStr(listener.password), "kafka_ssl_ca_file": listener.ca_file})
    invoice_id = decided_sample(pipeline, "01", unique_name, "sent_to_rpa")
    pipeline.wait_for(lambda: len(pipeline.mailbox.mailbox.messages) == 1, what="the RPA email")
    with TestClient(create_app(with_api(pipeline.settings))) as api:  # its producer signs in too
        answer = api.post(f"/rpa/invoices/{invoice_id}/success", headers={"Authorization": f"Bearer {TOKEN}"},
                          json={"invoice_version": 1, "sampro_invoice_id": "S-9"})
        assert answer.status_code == 202
        pipeline.wait_for(lambda: status_of(pipeline, invoice_id) == "entered", what="the completion")
        assert api.get("/readyz").status_code == 200


@pytest.mark.parametrize(("password", "other_ca", "said"), [
    ("wrong", False, "the brokers refused the sign-in: .*Authentication failed"),
    (None, True, "the TLS handshake with the brokers failed: .*certificate verify failed"),  # a CA that did not sign it
])
def test_a_wrong_password_or_ca_is_named_where_it_said_only_broker_transport_failure(
        listener, tmp_path, password, other_ca, said):
    ca_file = Path(listener.ca_file)
    if other_ca:
        trustme.CA().cert_pem.write_to_path(str(ca_file := tmp_path / "other-ca.pem"))
    kafka = KafkaCluster(listener.bootstrap, "SASL_SSL", "SCRAM-SHA-512", listener.username,
                         password or listener.password, ca_file=ca_file)
    with pytest.raises(Unavailable, match=said):
        KafkaTopicReader(kafka, timeout=5).ranges("any-topic")
    settings = Settings(_env_file=None, kafka_bootstrap_servers=listener.bootstrap, kafka_security_protocol="SASL_SSL",
                        kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username=listener.username,
                        kafka_sasl_password=password or listener.password, kafka_ssl_ca_file=ca_file)
    with pytest.raises(Unavailable, match=said):  # the worker's start
        ensure_topics(settings, timeout=5)


def test_sasl_plain_signs_in_as_a_confluent_cloud_api_key_does(listener, unique_name):
    kafka = KafkaCluster(listener.bootstrap, "SASL_SSL", "PLAIN", listener.username, listener.password,
                         ca_file=Path(listener.ca_file))
    with pytest.raises(TopicNotFound):  # an answer from the broker, signed in: no such topic
        KafkaTopicReader(kafka, timeout=5).ranges(unique_name)
