"""Session fixtures for the real components, started lazily: unit tests start nothing.

Where the stack comes from, first match wins:
1. explicit INVOICE_AUTOMATION_* environment variables (an existing cluster and databases);
2. testcontainers, when a Docker engine answers;
3. the project's local stack (`invoice-automation stack`), started here if it is not up, and
   stopped at the end only if this session started it.
If none can be had, the tests that need it fail with the reason: nothing is skipped.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack import LocalStack, StackEndpoints, StackError
from devstack.stack import COMPONENTS

ROOT = Path(__file__).resolve().parents[1]
ENV = {
    "kafka_bootstrap": "INVOICE_AUTOMATION_KAFKA_BOOTSTRAP_SERVERS",
    "connect_url": "INVOICE_AUTOMATION_CONNECT_URL",
    "marketplace_db_url": "INVOICE_AUTOMATION_MARKETPLACE_DB_URL",
    "sampro_db_url": "INVOICE_AUTOMATION_SAMPRO_DB_URL",
    "scheduler_db_url": "INVOICE_AUTOMATION_SCHEDULER_DB_URL",
}


def _from_environment() -> StackEndpoints | None:
    values = {field: os.environ.get(name) for field, name in ENV.items()}
    return StackEndpoints(**values) if values["kafka_bootstrap"] else None


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


def _from_testcontainers(stack: contextlib.ExitStack) -> StackEndpoints:
    from tests.containers import Kafka4Container, postgres_container

    kafka = stack.enter_context(Kafka4Container())
    pg = stack.enter_context(postgres_container())
    base = pg.get_connection_url().rsplit("/", 1)[0]
    return StackEndpoints(kafka_bootstrap=kafka.get_bootstrap_server(), marketplace_db_url=f"{base}/marketplace",
                          sampro_db_url=f"{base}/sampro", scheduler_db_url=f"{base}/scheduler")


@pytest.fixture(scope="session")
def stack_endpoints() -> Iterator[StackEndpoints]:
    from_env = _from_environment()
    if from_env is not None:
        yield from_env
        return
    if _docker_answers():
        with contextlib.ExitStack() as containers:
            yield _from_testcontainers(containers)
        return
    local = LocalStack(ROOT)
    fresh = local.not_running(COMPONENTS)
    try:
        endpoints = local.up()
    except StackError as exc:
        local.down(fresh)
        pytest.fail(f"the local stack could not start:\n{exc}", pytrace=False)
    yield endpoints
    local.down(fresh)


def _needed(value: str | None, what: str) -> str:
    if not value:
        pytest.fail(f"{what} is not available from this stack (set {ENV.get(what, what)})", pytrace=False)
    return value


@pytest.fixture(scope="session")
def kafka_bootstrap(stack_endpoints: StackEndpoints) -> str:
    return _needed(stack_endpoints.kafka_bootstrap, "kafka_bootstrap")


@pytest.fixture(scope="session")
def connect_url(stack_endpoints: StackEndpoints) -> str:
    return _needed(stack_endpoints.connect_url, "connect_url")


@pytest.fixture(scope="session")
def marketplace_db_url(stack_endpoints: StackEndpoints) -> str:
    return _needed(stack_endpoints.marketplace_db_url, "marketplace_db_url")


@pytest.fixture(scope="session")
def sampro_db_url(stack_endpoints: StackEndpoints) -> str:
    return _needed(stack_endpoints.sampro_db_url, "sampro_db_url")


@pytest.fixture(scope="session")
def scheduler_db_url(stack_endpoints: StackEndpoints) -> str:
    return _needed(stack_endpoints.scheduler_db_url, "scheduler_db_url")


@pytest.fixture
def unique_name() -> str:
    """A topic/slot/table-safe name no other test run uses."""
    return f"t{uuid.uuid4().hex[:10]}"
