"""processscheduler on SQL Server, as far as it can be checked without a server: every statement
the sink, the invoice-number gate, the RPA sent log and the read model run (recorded on SQLite,
with batches as large as a worker's) compiled for `mssql+pyodbc`. SQL Server takes at most 2,100
parameters a statement, and groups by neither a SELECT list's label nor an expression whose
parameters the SELECT list binds again, so every GROUP BY names columns only. Vendor text is
NVARCHAR there and ids compare by code point, as migration 0012's statements make them (checked as
`alembic upgrade --sql` writes them). What needs a server (locking, a migration run) is in the README."""

from __future__ import annotations

import importlib.util
import io
import re
from datetime import UTC, date, datetime, timedelta

import pyodbc
import pytest
from alembic.migration import MigrationContext
from alembic.operations import Operations
from sqlalchemy import String, UniqueConstraint, event
from sqlalchemy.dialects.mssql import pyodbc as mssql_pyodbc

from connectors.ports import NumberClaim
from connectors.rpa_mail.smtp import SqlSentLog
from connectors.scheduler import SqlProcessScheduler, upgrade
from connectors.scheduler.migrate import MIGRATIONS
from connectors.scheduler.read_model import InvoiceQuery
from connectors.scheduler.read_model_sql import SqlInvoiceReadModel
from connectors.scheduler.tables import EXACT_COLLATION, metadata
from connectors.sql import engine_for
from rules.duplicates import lookups_for
from rules.lifecycle import InvoiceStatus, StatusChanged
from rules.policy import Policy
from tests.unit.rules.builders import INVOICE, judge

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
BATCH = 1_200  # more than one chunk of every IN list
SQL_SERVER_PARAMETER_LIMIT = 2100
COLUMN = re.compile(r"\w+\.\w+")  # table.column, or alias.column


@pytest.fixture(scope="module")
def statements(tmp_path_factory) -> list[str]:
    """Every statement run, compiled for SQL Server as pyodbc sends it (IN lists spelled out)."""
    engine = engine_for(f"sqlite:///{tmp_path_factory.mktemp('scheduler') / 'scheduler.db'}")
    upgrade(engine)
    run = []
    event.listen(engine, "before_execute", lambda conn, statement, *rest: run.append(statement))
    # Each dated 100 days after the one before: no two duplicate windows meet, each asks a range.
    documents = [{**INVOICE, "invoice_id": f"MP-{n}", "invoice_number": f"INV-{n}",
                  "invoice_date": (date(2000, 1, 1) + timedelta(days=100 * n)).isoformat()} for n in range(BATCH)]
    verdict = judge(INVOICE)
    scheduler = SqlProcessScheduler(engine)
    scheduler.record([verdict.model_copy(update={"invoice_id": d["invoice_id"], "invoice_number": d["invoice_number"]})
                      for d in documents])
    scheduler.record([StatusChanged(event_id=f"e{n}", invoice_id=f"MP-{n}", invoice_version=1,
                                    po_number=INVOICE["po_number"], status=InvoiceStatus.SENT_TO_RPA, occurred_at=NOW)
                      for n in range(BATCH)])
    scheduler.decided_invoices(lookups_for(documents, Policy()))
    scheduler.versions_of([d["invoice_id"] for d in documents])
    scheduler.claim_numbers([NumberClaim(f"k{n}", f"MP-{n}", 1) for n in range(BATCH)])
    scheduler.claim_numbers([NumberClaim(f"k{n}", f"MP-OTHER-{n}", 1) for n in range(BATCH)])  # held: statuses read
    sent_log = SqlSentLog(engine)
    sent_log.looked_up({(f"MP-{n}", 1, 1) for n in range(BATCH)})
    with sent_log.session() as session:
        session.claim(("MP-1", 1, 1), "<m1>")
        session.confirm(("MP-1", 1, 1), "250 OK")
        session.forget(("MP-1", 1, 1))
    sent_log.in_doubt()
    sent_log.last_hand_off("MP-1", 1)
    read_model = SqlInvoiceReadModel(engine)
    read_model.kpi(NOW)
    read_model.status_figures(NOW)
    read_model.invoices(InvoiceQuery(reason_code="PRICE_MISMATCH", vendor_id="V100", limit=10, offset=5, before=100))
    read_model.invoice("MP-1")
    read_model.entered_as("S-1")
    read_model.changes(0)
    read_model.rpa_round_trips(NOW)
    dialect = mssql_pyodbc.dialect(paramstyle="qmark")
    return [statement.compile(dialect=dialect, compile_kwargs={"render_postcompile": True}).string
            for statement in run if not isinstance(statement, str)]


def test_every_statement_stays_under_sql_servers_parameter_limit(statements):
    assert len(statements) > 40
    counts = [statement.count("?") for statement in statements]
    assert max(counts) > 1_000  # the IN lists are chunked, not left out
    assert max(counts) <= SQL_SERVER_PARAMETER_LIMIT


def test_the_same_total_is_asked_for_dated_within_each_invoices_window(statements):
    """Asked from all time, each invoice of a flat-fee vendor read every invoice of its total ever
    decided: 8,000 made a verdict's audit of 8,019 earlier invoices."""
    (lookup, *_) = [s for s in statements if "processscheduler.loose_number_key IN" in s]
    windows = re.findall(r"processscheduler\.invoice_date BETWEEN \? AND \?", lookup)
    assert len(windows) == 300  # a chunk of lookups, no two of whose windows meet
    assert "processscheduler.total_amount IN (?" in lookup


def test_every_group_by_names_columns_only(statements):
    grouped = [s for s in statements if "GROUP BY" in s]
    assert len(grouped) >= 6  # the figures' statements, not a few of them
    for statement in grouped:
        for clause in re.findall(r"GROUP BY (.+?)(?:\)|$| HAVING | ORDER BY )", statement):
            items = [item.strip() for item in clause.split(",")]
            assert all(COLUMN.fullmatch(item) for item in items), (clause, statement)


# Columns whose text the service writes itself, in ASCII: statuses, the rules' version, the finding
# codes, a Message-ID. Everything else a vendor or a clerk wrote.
ASCII_COLUMNS = {"status", "rules_version", "reason_codes", "message_id"}
MSSQL = mssql_pyodbc.dialect(deprecate_large_types=True)  # what it takes on connecting to SQL Server 2012 and on


def _mssql_type(column) -> str:
    return column.type.compile(dialect=MSSQL)


def _migration(migration: str):
    spec = importlib.util.spec_from_file_location(migration, MIGRATIONS / "versions" / f"{migration}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _offline(step: str, migration: str = "0012_sql_server_unicode") -> list[str]:
    """A migration's statements for SQL Server, as `alembic upgrade --sql` writes them."""
    module = _migration(migration)
    out = io.StringIO()
    context = MigrationContext.configure(dialect_name="mssql", opts={"as_sql": True, "output_buffer": out})
    with Operations.context(context):
        getattr(module, step)()
    return [s.strip().rstrip(";") for s in re.split(r"^GO$", out.getvalue(), flags=re.M) if s.strip()]


MADE_AFTER_0012 = {"source_watermarks"}  # made by 0013 with these types already
INDEXES_AFTER_0012 = {"ix_processscheduler_sampro_invoice_id"}  # made by 0014 on the column as 0012 left it
# Indexes a later revision made again on other columns: as 0012 made them (0015 added invoice_date).
REMADE_AFTER_0012 = {"ix_processscheduler_vendor_total": ("vendor_key", "total_amount")}
ALTERED = re.compile(r"ALTER TABLE (\w+) ALTER COLUMN (\w+) (.+?) (NOT NULL|NULL)")


def _uses(table) -> list[tuple[str, tuple[str, ...]]]:
    """What SQL Server keeps on a table's columns, as the statement that makes it names it."""
    found = [("PRIMARY KEY", tuple(c.name for c in table.primary_key.columns))]
    found += [("UNIQUE", tuple(c.name for c in unique.columns))
              for unique in table.constraints if isinstance(unique, UniqueConstraint)]
    return found + [("INDEX", REMADE_AFTER_0012.get(str(i.name), tuple(c.name for c in i.columns)))
                    for i in table.indexes if i.name not in INDEXES_AFTER_0012]


def _tables_of_0012() -> list:
    return [table for table in metadata.sorted_tables if table.name not in MADE_AFTER_0012]


def _makes(statement: str, table: str, kind: str, columns: tuple[str, ...]) -> bool:
    listed = f"({', '.join(columns)})"
    if kind == "INDEX":
        return statement.startswith("CREATE INDEX ") and statement.endswith(f" ON {table} {listed}")
    return statement.startswith(f"ALTER TABLE {table} ADD CONSTRAINT ") and statement.endswith(f" {kind} {listed}")


@pytest.mark.parametrize("step", ["upgrade", "downgrade"])
def test_migration_0012_gives_the_columns_the_tables_types_and_remakes_what_uses_them(step):
    statements = _offline(step)
    changes = [i for i, statement in enumerate(statements) if ALTERED.fullmatch(statement)]
    altered = {(m[1], m[2]): (m[3], m[4] == "NULL") for s in statements if (m := ALTERED.fullmatch(s))}
    before = {(table.name, column.name): (f"VARCHAR({column.type.length or 'max'})", column.nullable)
              for table in _tables_of_0012() for column in table.columns
              if isinstance(column.type, String) and column.name not in ASCII_COLUMNS}
    after = {(table, name): (_mssql_type(metadata.tables[table].c[name]), nullable)
             for (table, name), (_, nullable) in before.items()}
    assert altered == (after if step == "upgrade" else before)
    using = [(table.name, *use) for table in _tables_of_0012() for use in _uses(table)
             if any((table.name, column) in altered for column in use[1])]
    assert len(using) == 10  # 4 keys, 6 indexes
    for table, kind, columns in using:
        remade = [i for i, statement in enumerate(statements) if _makes(statement, table, kind, columns)]
        assert len(remade) == 1 and remade[0] > changes[-1], (table, kind, columns)
    dropped = statements[:changes[0]]
    assert len(dropped) == len(using) and all("DROP " in statement for statement in dropped)
    # the event id's key, which SQL Server named
    assert any("processscheduler_history DROP CONSTRAINT" in s and "event_id" in s for s in dropped)


def test_what_vendors_and_clerks_write_is_stored_whole_and_keys_compare_exactly_on_sql_server():
    text = {(table.name, column.name): _mssql_type(column) for table in metadata.sorted_tables
            for column in table.columns if isinstance(column.type, String)}
    assert {name for (_, name), type_ in text.items() if type_.startswith("VARCHAR")} == ASCII_COLUMNS
    keys = {(table.name, column) for table in metadata.sorted_tables for kind, columns in _uses(table)
            if kind != "INDEX" for column in columns if (table.name, column) in text}
    # an invoice version's id, the history's event id, the sent log's id, the hand-off key, a source's name
    assert len(keys) == 5
    assert all(text[key].endswith(f"COLLATE {EXACT_COLLATION}") for key in keys), text
    # pyodbc is told to send their values as wide text: as narrow text, the driver made them `?` first.
    binds = {(table, name): metadata.tables[table].c[name].type.dialect_impl(MSSQL).get_dbapi_type(pyodbc)
             for (table, name), type_ in text.items() if type_.startswith("NVARCHAR(")}
    kinds = {kind if isinstance(kind, int) else kind[0] for kind in binds.values()}  # (kind, 0, 0) for (max)
    assert len(binds) == 18 and kinds == {pyodbc.SQL_WVARCHAR}, binds


def test_migration_0013_makes_the_source_watermarks_as_the_tables_say():
    (create,) = _offline("upgrade", "0013_source_watermarks")
    table = metadata.tables["source_watermarks"]
    for column in table.columns:
        nullability = "NULL" if column.nullable else "NOT NULL"
        assert f"{column.name} {_mssql_type(column)} {nullability}" in create, (column.name, create)
    assert "CONSTRAINT pk_source_watermarks PRIMARY KEY (source)" in create
    assert _offline("downgrade", "0013_source_watermarks") == ["DROP TABLE source_watermarks"]


def test_migration_0014_indexes_the_sampro_invoice_as_the_tables_say():
    (index,) = [i for i in metadata.tables["processscheduler"].indexes if i.name in INDEXES_AFTER_0012]
    assert _offline("upgrade", "0014_sampro_invoice_index") == [
        f"CREATE INDEX {index.name} ON processscheduler ({', '.join(c.name for c in index.columns)})"]
    assert _offline("downgrade", "0014_sampro_invoice_index") == [f"DROP INDEX {index.name} ON processscheduler"]


def test_migration_0015_makes_the_same_total_index_end_with_the_date_as_the_tables_say():
    (index,) = [i for i in metadata.tables["processscheduler"].indexes if i.name in REMADE_AFTER_0012]
    columns = ", ".join(c.name for c in index.columns)
    assert columns == "vendor_key, total_amount, invoice_date"
    assert _offline("upgrade", "0015_duplicate_total_dates") == [
        f"DROP INDEX {index.name} ON processscheduler", f"CREATE INDEX {index.name} ON processscheduler ({columns})"]
    assert _offline("downgrade", "0015_duplicate_total_dates") == [
        f"DROP INDEX {index.name} ON processscheduler",
        f"CREATE INDEX {index.name} ON processscheduler (vendor_key, total_amount)"]


def test_migration_0016_sends_what_it_keys_again_as_the_tables_say():
    """Its own light tables declared the text as sa.String, sent to SQL Server as VARCHAR in the
    database's code page: the keys of a Cyrillic vendor or a CJK number were written as `?`s."""
    module = _migration("0016_keys_without_unseen_characters")
    for light in (module.scheduler, module.numbers):
        table = metadata.tables[light.name]
        sent = {name: column.type.dialect_impl(MSSQL).get_dbapi_type(pyodbc) for name, column in light.c.items()}
        assert sent == {name: table.c[name].type.dialect_impl(MSSQL).get_dbapi_type(pyodbc) for name in sent}
    rekeyed = module.scheduler.update().where(module.scheduler.c.id == 7).values(vendor_key="ооо ромашка")
    key = rekeyed.compile(dialect=MSSQL).binds["vendor_key"]
    assert key.type.dialect_impl(MSSQL).get_dbapi_type(pyodbc) == pyodbc.SQL_WVARCHAR
