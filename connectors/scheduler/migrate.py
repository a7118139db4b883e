"""Brings the processscheduler schema to the newest Alembic revision, without an alembic.ini.

Every worker upgrades at start (the API does not), so two may upgrade at once: each takes the
database's lock for it first (an advisory lock on PostgreSQL, an application lock on SQL Server,
the write lock on SQLite, waited for as long as the engine's busy timeout, 30 s), and the second
then finds the schema upgraded. All of an upgrade is one transaction: on PostgreSQL and SQL
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
from sqlalchemy import Connection, Engine, text

MIGRATIONS = Path(__file__).with_name("migrations")
LOCK = "invoice-automation-processscheduler-migrations"


def upgrade(engine: Engine, revision: str = "head") -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with migrating(engine) as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


@contextmanager
def migrating(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that holds the migrations' lock, committed at the end."""
    if engine.dialect.name == "sqlite":
        with engine.connect() as connection:
            connection = connection.execution_options(isolation_level="AUTOCOMMIT")
            sqlite: Any = connection.connection.driver_connection
            connection.exec_driver_sql("BEGIN IMMEDIATE")
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
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:lock))"), {"lock": LOCK})
        elif engine.dialect.name == "mssql":
            # Below 0: not granted (a timeout, a deadlock), and the migration must not run without it.
            connection.execute(text("SET NOCOUNT ON; DECLARE @granted int; "
                                    "EXEC @granted = sp_getapplock @Resource = :lock, "
                                    "@LockMode = 'Exclusive', @LockOwner = 'Transaction', @LockTimeout = 600000; "
                                    "IF @granted < 0 THROW 50000, 'the migrations lock was not granted', 1;"),
                               {"lock": LOCK})
        yield connection
