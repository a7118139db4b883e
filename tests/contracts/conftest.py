"""Engines for the contract suites: a fresh SQLite file, and the stack's PostgreSQL with fresh tables,
each made by `engine_for` as the worker and the API make theirs (JSON columns written as they write
them: compact, without the spaces `json.dumps` puts after a colon)."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, make_url, text

from connectors.sql import engine_for


@pytest.fixture
def sqlite_engine(tmp_path):
    engine = engine_for(f"sqlite:///{tmp_path / 'contract.db'}")
    yield engine
    engine.dispose()


def fresh_postgres(url: str, schema: str):
    """An engine whose tables land in a schema of their own, dropped afterwards."""
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = engine_for(make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
                        .render_as_string(hide_password=False))
    return admin, engine


def drop_schema(admin, engine, schema: str) -> None:
    engine.dispose()
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def scheduler_pg_engine(scheduler_db_url, unique_name):
    admin, engine = fresh_postgres(scheduler_db_url, unique_name)
    yield engine
    drop_schema(admin, engine, unique_name)


@pytest.fixture
def sampro_pg_engine(sampro_db_url, unique_name):
    admin, engine = fresh_postgres(sampro_db_url, unique_name)
    yield engine
    drop_schema(admin, engine, unique_name)


@pytest.fixture
def marketplace_pg_engine(marketplace_db_url, unique_name):
    admin, engine = fresh_postgres(marketplace_db_url, unique_name)
    yield engine
    drop_schema(admin, engine, unique_name)
