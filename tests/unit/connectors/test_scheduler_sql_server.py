"""processscheduler on SQL Server, as far as it can be checked without a server: every statement
the sink, the invoice-number gate, the RPA sent log and the read model run (recorded on SQLite,
with batches as large as a worker's) compiled for `mssql+pyodbc`. SQL Server takes at most 2,100
parameters a statement, and groups by neither a SELECT list's label nor an expression whose
parameters the SELECT list binds again, so every GROUP BY names columns only. What needs a server
(locking, collation) is in the README."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import event
from sqlalchemy.dialects.mssql import pyodbc as mssql_pyodbc

from connectors.ports import NumberClaim
from connectors.rpa_mail.smtp import SqlSentLog
from connectors.scheduler import SqlProcessScheduler, upgrade
from connectors.scheduler.read_model import InvoiceQuery
from connectors.scheduler.read_model_sql import SqlInvoiceReadModel
from connectors.sql import engine_for
from rules.duplicates import lookups_for
from rules.lifecycle import InvoiceStatus, StatusChanged
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
    documents = [{**INVOICE, "invoice_id": f"MP-{n}", "invoice_number": f"INV-{n}"} for n in range(BATCH)]
    verdict = judge(INVOICE)
    scheduler = SqlProcessScheduler(engine)
    scheduler.record([verdict.model_copy(update={"invoice_id": d["invoice_id"], "invoice_number": d["invoice_number"]})
                      for d in documents])
    scheduler.record([StatusChanged(event_id=f"e{n}", invoice_id=f"MP-{n}", invoice_version=1,
                                    po_number=INVOICE["po_number"], status=InvoiceStatus.SENT_TO_RPA, occurred_at=NOW)
                      for n in range(BATCH)])
    scheduler.decided_invoices(lookups_for(documents))
    scheduler.versions_of([d["invoice_id"] for d in documents])
    scheduler.claim_numbers([NumberClaim(f"k{n}", f"MP-{n}", 1) for n in range(BATCH)])
    scheduler.claim_numbers([NumberClaim(f"k{n}", f"MP-OTHER-{n}", 1) for n in range(BATCH)])  # held: statuses read
    sent_log = SqlSentLog(engine)
    sent_log.sent_before({(f"MP-{n}", 1, 1) for n in range(BATCH)})
    with sent_log.session() as session:
        session.claim(("MP-1", 1, 1), "<m1>")
        session.confirm(("MP-1", 1, 1), "250 OK")
        session.forget(("MP-1", 1, 1))
    sent_log.in_doubt()
    read_model = SqlInvoiceReadModel(engine)
    read_model.kpi(NOW)
    read_model.status_figures(NOW)
    read_model.invoices(InvoiceQuery(reason_code="PRICE_MISMATCH", vendor_id="V100", limit=10, offset=5))
    read_model.invoice("MP-1")
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


def test_every_group_by_names_columns_only(statements):
    grouped = [s for s in statements if "GROUP BY" in s]
    assert len(grouped) >= 6  # the figures' statements, not a few of them
    for statement in grouped:
        for clause in re.findall(r"GROUP BY (.+?)(?:\)|$| HAVING | ORDER BY )", statement):
            items = [item.strip() for item in clause.split(",")]
            assert all(COLUMN.fullmatch(item) for item in items), (clause, statement)
