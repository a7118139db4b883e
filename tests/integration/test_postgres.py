"""The PostgreSQL of the stack is ready for Debezium and holds the project's databases; the engines the
service makes of it replace a connection the server closed."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import create_engine, inspect, text

from connectors.sql import database_clocks, engine_for, mapped_errors
from rules.errors import Unavailable


def test_logical_decoding_is_on_and_the_marketplace_table_exists(marketplace_db_url):
    engine = create_engine(marketplace_db_url)
    with engine.connect() as conn:
        assert conn.execute(text("SHOW wal_level")).scalar() == "logical"
        assert conn.execute(text("SELECT current_setting('server_version_num')::int / 10000")).scalar() == 15
        identity = conn.execute(
            text("SELECT relreplident FROM pg_class WHERE relname = 'marketplace_invoices'")
        ).scalar()
    assert identity == "f"  # REPLICA IDENTITY FULL: a delete carries its PO number
    columns = {c["name"] for c in inspect(engine).get_columns("marketplace_invoices")}
    assert {"invoice_id", "version", "po_number", "lines", "extra_charges", "updated_at"} <= columns
    engine.dispose()


def test_sampro_and_scheduler_databases_accept_writes(sampro_db_url, scheduler_db_url, unique_name):
    for url in (sampro_db_url, scheduler_db_url):
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text(f"CREATE TABLE {unique_name} (amount numeric(18,4))"))
            conn.execute(text(f"INSERT INTO {unique_name} VALUES (15.50)"))
            assert str(conn.execute(text(f"SELECT amount FROM {unique_name}")).scalar()) == "15.5000"
            conn.execute(text(f"DROP TABLE {unique_name}"))
        engine.dispose()


def test_the_clocks_a_poller_reads_are_utc_and_the_local_time_read_as_utc(sampro_db_url):
    """Read in a session of New York's winter time: Sampro may stamp either, and the pollers read
    every naive time as UTC (`connectors.sql.database_clocks`)."""
    engine = create_engine(sampro_db_url)
    with engine.connect() as conn:
        conn.execute(text("SET TIME ZONE 'EST5'"))  # POSIX: five hours west of UTC
        utc, local = database_clocks(conn)
        now = conn.execute(text("SELECT current_timestamp")).scalar()
    engine.dispose()
    assert utc == now and (utc - local).total_seconds() == 5 * 3600


def _terminated(admin, engine) -> int:
    """Ends the server side of the engine's one pooled connection, as a restart or a firewall would."""
    with engine.connect() as conn:
        pid = conn.execute(text("SELECT pg_backend_pid()")).scalar()
    with admin.connect() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar()
    return pid


def test_a_connection_closed_by_the_server_while_idle_in_the_pool_is_replaced_before_use(scheduler_db_url):
    admin, engine = create_engine(scheduler_db_url), engine_for(scheduler_db_url, idle_ping_seconds=0.2)
    dead = _terminated(admin, engine)
    time.sleep(0.3)
    with engine.connect() as conn:  # pinged after its idle time, found closed, and replaced
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar() != dead
    engine.dispose()
    admin.dispose()


def test_a_connection_reused_within_its_idle_time_is_not_pinged_and_a_closed_one_is_an_outage(scheduler_db_url):
    """No round trip at every checkout: a connection that broke within the idle time fails at its
    first statement, mapped to `Unavailable` (the work waits and tries again), and the next is fresh."""
    admin, engine = create_engine(scheduler_db_url), engine_for(scheduler_db_url, idle_ping_seconds=60)
    dead = _terminated(admin, engine)
    with pytest.raises(Unavailable), mapped_errors("processscheduler"), engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT pg_backend_pid()")).scalar() != dead
    engine.dispose()
    admin.dispose()
