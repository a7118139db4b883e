"""The read model's statements on SQL Server, as far as they can be checked without a server: each
one it runs (recorded on SQLite) compiled for `mssql+pyodbc`. SQL Server groups by neither a
SELECT list's label nor an expression whose parameters the SELECT list binds again, so every
GROUP BY names columns only."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from sqlalchemy import event
from sqlalchemy.dialects.mssql import pyodbc as mssql_pyodbc

from connectors.scheduler import SqlProcessScheduler, upgrade
from connectors.scheduler.read_model import InvoiceQuery
from connectors.scheduler.read_model_sql import SqlInvoiceReadModel
from connectors.sql import engine_for
from rules.lifecycle import InvoiceStatus, StatusChanged
from tests.unit.rules.builders import INVOICE, judge

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
COLUMN = re.compile(r"\w+\.\w+")  # table.column, or alias.column


@pytest.fixture
def statements(tmp_path) -> list[str]:
    """What the read model runs for every figure and list, compiled for SQL Server."""
    engine = engine_for(f"sqlite:///{tmp_path / 'scheduler.db'}")
    upgrade(engine)
    SqlProcessScheduler(engine).record([judge(INVOICE), StatusChanged(
        event_id="e1", invoice_id=INVOICE["invoice_id"], invoice_version=1, po_number=INVOICE["po_number"],
        status=InvoiceStatus.SENT_TO_RPA, occurred_at=NOW)])
    run = []
    event.listen(engine, "before_execute", lambda conn, statement, *rest: run.append(statement))
    read_model = SqlInvoiceReadModel(engine)
    read_model.kpi(NOW)
    read_model.status_figures(NOW)
    read_model.invoices(InvoiceQuery(reason_code="PRICE_MISMATCH", vendor_id="V100"))
    read_model.invoice(INVOICE["invoice_id"])
    read_model.changes(0)
    read_model.rpa_round_trips(NOW)
    dialect = mssql_pyodbc.dialect(paramstyle="qmark")
    return [statement.compile(dialect=dialect, compile_kwargs={"render_postcompile": True}).string
            for statement in run]


def test_every_group_by_names_columns_only(statements):
    grouped = [s for s in statements if "GROUP BY" in s]
    assert len(grouped) >= 6  # the figures' statements, not a few of them
    for statement in grouped:
        for clause in re.findall(r"GROUP BY (.+?)(?:\)|$| HAVING | ORDER BY )", statement):
            items = [item.strip() for item in clause.split(",")]
            assert all(COLUMN.fullmatch(item) for item in items), (clause, statement)
