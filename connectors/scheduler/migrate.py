"""Brings the processscheduler schema to the newest Alembic revision, without an alembic.ini.

Every worker upgrades at start (the API does not), so two may upgrade at once: each takes the
database's lock for it first (an advisory lock on PostgreSQL, an application lock on SQL Server,
the write lock on SQLite), and the second then finds the schema upgraded. The lock is waited for
LOCK_WAIT_SECONDS at most on every database; past it the worker does not start, and says that
another worker holds the lock (PostgreSQL waited without end, behind a session left open
holding it as behind a long upgrade). All of an upgrade is one transaction: on PostgreSQL and SQL
Server as they run DDL; on SQLite because the transaction is begun by hand, since its driver
commits each ALTER TABLE by itself, and a migration stopped half-way (a column added, its
backfill not) could never run again.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, TextClause, text
from sqlalchemy.exc import DBAPIError

from rules.errors import Misconfigured

MIGRATIONS = Path(__file__).with_name("migrations")
LOCK = "invoice-automation-processscheduler-migrations"
# As long as an upgrade of a large processscheduler may hold the lock (0012 rewrites four tables).
LOCK_WAIT_SECONDS = 600.0
NOT_GRANTED = "the migrations lock was not granted"  # SQL Server's error, thrown below


class MigrationLockTimeout(Misconfigured):
    """Another worker held the migrations lock for all of LOCK_WAIT_SECONDS: this one does not
    start (one line, exit 2; compose's restart policy starts it again), rather than wait without end."""

    def __init__(self, seconds: float):
        super().__init__(f"processscheduler: another worker has held the migrations lock for {seconds:g} s "
                         "(upgrading the schema, or a session left open holding it): start this worker again "
                         "once that upgrade is done, or end the session that holds the lock")


def upgrade(engine: Engine, revision: str = "head") -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with migrating(engine) as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


@contextmanager
def migrating(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that holds the migrations' lock, committed at the end;
    `MigrationLockTimeout` when another worker holds it LOCK_WAIT_SECONDS."""
    seconds = LOCK_WAIT_SECONDS
    if engine.dialect.name == "sqlite":
        with engine.connect() as connection:
            connection = connection.execution_options(isolation_level="AUTOCOMMIT")
            sqlite: Any = connection.connection.driver_connection
            busy = connection.exec_driver_sql("PRAGMA busy_timeout").scalar()  # the engine's, for every statement
            connection.exec_driver_sql(f"PRAGMA busy_timeout = {_milliseconds(seconds)}")
            try:
                connection.exec_driver_sql("BEGIN IMMEDIATE")  # waits for the write lock, as long as the busy timeout
            except DBAPIError as error:
                if _lock_timed_out(error):
                    raise MigrationLockTimeout(seconds) from error
                raise
            finally:
                connection.exec_driver_sql(f"PRAGMA busy_timeout = {busy}")  # the connection goes back to the pool
            try:
                yield connection
            except BaseException:
                if sqlite.in_transaction:
                    connection.exec_driver_sql("ROLLBACK")
                raise
            if sqlite.in_transaction:
                connection.exec_driver_sql("COMMIT")
        return
    with engine.begin() as connection:
        try:
            for statement in lock_statements(engine.dialect.name, seconds):
                connection.execute(statement)
        except DBAPIError as error:
            if _lock_timed_out(error):
                raise MigrationLockTimeout(seconds) from error
            raise
        yield connection


def lock_statements(dialect: str, seconds: float) -> list[TextClause]:
    """What takes the migrations' lock on PostgreSQL and SQL Server, waiting `seconds` at most."""
    milliseconds = _milliseconds(seconds)
    if dialect == "postgresql":
        # lock_timeout for this one statement (an advisory lock is a lock as any other): the
        # migrations' own statements then wait as they did.
        return [text(f"SET LOCAL lock_timeout = {milliseconds}"),
                text("SELECT pg_advisory_xact_lock(hashtext(:lock))").bindparams(lock=LOCK),
                text("SET LOCAL lock_timeout = DEFAULT")]
    if dialect == "mssql":
        # Below 0: not granted (a timeout, a deadlock), and the migration must not run without it.
        return [text("SET NOCOUNT ON; DECLARE @granted int; "
                     "EXEC @granted = sp_getapplock @Resource = :lock, "
                     f"@LockMode = 'Exclusive', @LockOwner = 'Transaction', @LockTimeout = {milliseconds}; "
                     f"IF @granted < 0 THROW 50000, '{NOT_GRANTED}', 1;").bindparams(lock=LOCK)]
    return []


def _milliseconds(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _lock_timed_out(error: DBAPIError) -> bool:
    """PostgreSQL's lock_timeout (SQLSTATE 55P03), SQL Server's lock not granted (thrown above),
    SQLite's busy timeout ("database is locked")."""
    original = error.orig
    return (getattr(original, "sqlstate", None) == "55P03" or NOT_GRANTED in str(original)
            or str(original) == "database is locked")
