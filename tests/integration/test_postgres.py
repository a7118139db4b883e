"""The PostgreSQL of the stack is ready for Debezium and holds the project's databases."""

from __future__ import annotations

from sqlalchemy import create_engine, inspect, text


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
