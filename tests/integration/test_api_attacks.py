"""Attacks on the API that need the real stack: the real read model, Kafka client and PostgreSQL
behind /readyz, /metrics and a release, served over real HTTP."""

from __future__ import annotations

from contextlib import contextmanager

import confluent_kafka.admin
import httpx
import pytest
from confluent_kafka import Consumer
from sqlalchemy import create_engine, make_url, text

from api.app import create_app
from api.server import ThreadedServer
from connectors.scheduler import SqlProcessScheduler, upgrade
from devstack.process import free_port
from streams.settings import Settings
from streams.topics import ensure_topics
from tests.api_fixtures import CLERK, PASSWORD, with_api
from tests.stack_pipeline import in_schema
from tests.unit.api.conftest import PRICE_OFF
from tests.unit.rules.builders import invoice, judge


@pytest.fixture
def stack_settings(kafka_bootstrap, scheduler_db_url, unique_name, tmp_path):
    engine = create_engine(scheduler_db_url)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{unique_name}"'))
    settings = with_api(Settings(
        _env_file=None, kafka_bootstrap_servers=kafka_bootstrap, app_id=unique_name, data_dir=tmp_path,
        completions_topic=f"{unique_name}.rpa.completions", commands_topic=f"{unique_name}.po.commands",
        scheduler_db_url=in_schema(scheduler_db_url, unique_name), sampro_db_url=f"sqlite:///{tmp_path}/sampro.db"))
    ensure_topics(settings)
    upgrade(create_engine(settings.scheduler_db_url))
    yield settings
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{unique_name}" CASCADE'))
    engine.dispose()


@contextmanager
def served(app):
    """The app on a real HTTP port, as clients reach it."""
    server = ThreadedServer(app, port=free_port()).start()
    try:
        yield server.url
    finally:
        server.stop()


def test_readyz_names_the_dependency_that_is_down_but_not_its_address_user_or_driver(stack_settings):
    url = make_url(stack_settings.scheduler_db_url)
    wrong = url.set(password="not-the-password").render_as_string(hide_password=False)
    with served(create_app(stack_settings.model_copy(update={"scheduler_db_url": wrong}))) as url_of_api:
        answer = httpx.get(f"{url_of_api}/readyz", timeout=30)
    assert answer.status_code == 503 and answer.json()["checks"] == {"database": "down", "kafka": "ok"}
    shown = answer.text.replace(answer.json()["down_since"]["database"], "")
    for leaked in (url.host, str(url.port), url.username, "not-the-password", "psycopg", "Operational"):
        assert leaked not in shown, leaked


def test_a_flood_of_scrapes_builds_no_kafka_client_per_scrape(stack_settings, monkeypatch):
    built = []
    real = confluent_kafka.admin.AdminClient
    monkeypatch.setattr(confluent_kafka.admin, "AdminClient", lambda config: built.append(config) or real(config))
    with served(create_app(stack_settings.model_copy(update={"api_status_cache_seconds": 60}))) as url_of_api:
        for _ in range(30):
            assert httpx.get(f"{url_of_api}/metrics", timeout=30).status_code == 200
    assert len(built) <= 1


def test_a_forged_sign_on_header_releases_nothing_onto_the_real_stream(stack_settings):
    SqlProcessScheduler(create_engine(stack_settings.scheduler_db_url)).record([
        judge(invoice(invoice_id="MP-3", invoice_number="INV-3", lines=PRICE_OFF, tax_amount="3.58",
                      total_amount="58.33"))])
    settings = stack_settings.model_copy(update={
        "api_trusted_user_header": "X-Forwarded-User", "api_trusted_role_header": "X-Forwarded-Role",
        "api_trusted_proxies": ["192.0.2.10"]})  # not this test's address
    with served(create_app(settings)) as url_of_api:
        forged = httpx.post(f"{url_of_api}/api/invoices/MP-3/release", json={"invoice_version": 1, "reason": "x"},
                            headers={"X-Forwarded-User": "ghost", "X-Forwarded-Role": "clerk"})
        cross_site = httpx.post(f"{url_of_api}/api/invoices/MP-3/release", auth=(CLERK, PASSWORD),
                                json={"invoice_version": 1, "reason": "x"},
                                headers={"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"})
    assert forged.status_code == 401 and cross_site.status_code == 403
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": f"{settings.app_id}.check",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        consumer.subscribe([settings.commands_topic])
        assert [m for m in consumer.consume(100, timeout=5) if m.error() is None] == []
    finally:
        consumer.close()
