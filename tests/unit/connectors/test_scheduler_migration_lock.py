"""The migrations' lock is waited for LOCK_WAIT_SECONDS at most on every database, and a worker
that waited that long says in one line that another worker holds it. PostgreSQL waited without
end, SQL Server ten minutes, SQLite 30 s. SQLite runs here; PostgreSQL's and SQL Server's
statements are compiled, and their drivers' errors made by hand."""

from __future__ import annotations

import sqlite3
import threading
import time

import psycopg.errors
import pytest
from sqlalchemy import text
from sqlalchemy.dialects import mssql, postgresql
from sqlalchemy.exc import OperationalError, ProgrammingError

from cli.failures import explain
from connectors.scheduler import migrate
from connectors.scheduler.migrate import LOCK, MigrationLockTimeout, lock_statements, upgrade
from connectors.sql import engine_for


@pytest.fixture
def database(tmp_path):
    return tmp_path / "scheduler.db"


@pytest.fixture
def engine(database):
    engine = engine_for(f"sqlite:///{database}")
    yield engine
    engine.dispose()


def _holding_the_write_lock(database) -> sqlite3.Connection:
    """Another worker, in the middle of its upgrade."""
    other = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    return other


def test_on_sqlite_a_lock_held_past_the_wait_is_one_line_naming_the_other_worker(monkeypatch, database, engine):
    upgrade(engine, "0001")
    monkeypatch.setattr(migrate, "LOCK_WAIT_SECONDS", 0.3)
    other = _holding_the_write_lock(database)
    began = time.monotonic()
    with pytest.raises(MigrationLockTimeout) as waited:
        upgrade(engine)
    assert 0.25 < time.monotonic() - began < 10  # the migration's wait, not the engine's busy timeout (30 s)
    assert explain(waited.value) == [
        "processscheduler: another worker has held the migrations lock for 0.3 s (upgrading the schema, or a "
        "session left open holding it): start this worker again once that upgrade is done, or end the session "
        "that holds the lock"]
    other.rollback()
    other.close()
    upgrade(engine)  # the lock let go: the upgrade runs
    with engine.connect() as conn:
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 30_000  # every other statement's, as before


def test_on_sqlite_a_lock_let_go_within_the_wait_is_taken(monkeypatch, database, engine):
    monkeypatch.setattr(migrate, "LOCK_WAIT_SECONDS", 10.0)
    other = _holding_the_write_lock(database)
    threading.Timer(0.3, other.rollback).start()
    upgrade(engine)
    other.close()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1


def _compiled(dialect, seconds: float) -> list[str]:
    return [str(statement.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
            for statement in lock_statements(dialect.name, seconds)]


def test_on_postgresql_the_advisory_lock_alone_waits_the_bounded_time():
    assert _compiled(postgresql.dialect(), 600) == [
        "SET LOCAL lock_timeout = 600000",
        f"SELECT pg_advisory_xact_lock(hashtext('{LOCK}'))",
        "SET LOCAL lock_timeout = DEFAULT"]  # the migrations' statements then wait as before


def test_on_sql_server_the_application_lock_waits_the_bounded_time_and_fails_when_not_granted():
    [statement] = _compiled(mssql.dialect(), 600)
    assert f"sp_getapplock @Resource = '{LOCK}'" in statement and "@LockTimeout = 600000;" in statement
    assert "IF @granted < 0 THROW 50000, 'the migrations lock was not granted', 1;" in statement


def test_sqlite_has_no_lock_statement_of_its_own():
    assert lock_statements("sqlite", 600) == []  # BEGIN IMMEDIATE under the busy timeout is its lock


@pytest.mark.parametrize(("error", "timed_out"), [
    (OperationalError("SELECT pg_advisory_xact_lock", {}, psycopg.errors.LockNotAvailable(
        "canceling statement due to lock timeout")), True),
    (ProgrammingError("EXEC sp_getapplock", {}, Exception(
        "('42000', '[42000] [Microsoft][ODBC Driver 18 for SQL Server][SQL Server]the migrations lock was not "
        "granted (50000) (SQLExecDirectW)')")), True),
    (OperationalError("BEGIN IMMEDIATE", {}, sqlite3.OperationalError("database is locked")), True),
    (OperationalError("SELECT 1", {}, psycopg.errors.AdminShutdown("terminating connection")), False),
    (OperationalError("BEGIN IMMEDIATE", {}, sqlite3.OperationalError("disk I/O error")), False),
])
def test_what_counts_as_the_lock_not_granted(error, timed_out):
    assert migrate._lock_timed_out(error) is timed_out
