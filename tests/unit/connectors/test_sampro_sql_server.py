"""The Sampro reader on SQL Server, as far as it can be checked without a server: every statement
compiled for `mssql+pyodbc`, per-table column renames, and the ODBC driver loading and failing
clearly on a closed port. What needs a server (collation, CHAR padding, locking) is in the README."""

from __future__ import annotations

import re
import socket
import time
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import create_engine, event, insert, text
from sqlalchemy.dialects.mssql import pyodbc as mssql_pyodbc

from connectors import mssql
from connectors.sampro import SamproNames, SqlPurchaseOrderReader
from connectors.sampro.standin import SamproStandIn
from connectors.sql import engine_for, mapped_errors
from connectors.watermarks import FileWatermark
from rules.duplicates import lookups_for
from rules.errors import Unavailable
from rules.models import PurchaseOrder
from rules.policy import Policy
from tests.unit.rules.builders import PO

SQL_SERVER_PARAMETER_LIMIT = 2100
# Renames as a real Sampro has them: the header and the line table name their PO column differently.
NAMES = SamproNames(schema_name="erp", po_header="POHDR", po_line="POLIN", ap_invoice="APINV",
                    columns={"vendor_id": "VENDNO"}, po_header_columns={"po_number": "PONUM"},
                    po_line_columns={"po_number": "PO_NO", "line_no": "LINENO"})
PO_NUMBERS = [f"PO-{n:05}" for n in range(2_500)]
# Each dated 100 days after the one before: no two windows meet, so each asks a range of its own.
LOOKUPS = lookups_for(({"vendor_id": f"V{n % 7}", "invoice_number": f"inv-{n}", "total_amount": f"{n}.50",
                        "invoice_date": (date(2000, 1, 1) + timedelta(days=100 * n)).isoformat()}
                       for n in range(2_500)), Policy())


def _reader(names: SamproNames = NAMES) -> SqlPurchaseOrderReader:
    return SqlPurchaseOrderReader(create_engine("sqlite://"), names)


def _statements(names: SamproNames = NAMES) -> list[str]:
    reader = _reader(names)
    queries = [*reader.purchase_order_queries(PO_NUMBERS), *reader.entered_invoice_queries(LOOKUPS)]
    # pyodbc's qmark style, and render_postcompile spells out each IN list as SQL Server receives it.
    dialect = mssql_pyodbc.dialect(paramstyle="qmark")
    return [query.compile(dialect=dialect, compile_kwargs={"render_postcompile": True}).string for query in queries]


def test_every_statement_stays_under_sql_servers_parameter_limit():
    statements = _statements()
    assert len(statements) == 3 + 32  # 1,000 PO numbers, or 80 invoice lookups, per statement
    counts = [statement.count("?") for statement in statements]
    assert max(counts) < SQL_SERVER_PARAMETER_LIMIT and min(counts) > 0, counts


@pytest.mark.parametrize("url", ["sqlite://", "mssql+pyodbc://u:p@sampro/SAMPRO?driver=x"])
def test_lookups_whose_every_spelling_differs_stay_under_sql_servers_parameter_limit(url):
    """Sampro is asked for each vendor and number as sent and as AP reads it (without the soft
    hyphen, the Hangul filler), each in the spellings an UPPER may make: 8 a value, 23 a lookup."""
    lookups = lookups_for(({"vendor_id": f"Großhändler-Ä{n}\u00ad", "invoice_number": f"straße-äÄ-{n}\u3164",
                            "total_amount": f"{n}.50",
                            "invoice_date": (date(2000, 1, 1) + timedelta(days=100 * n)).isoformat()}
                           for n in range(250)), Policy())
    reader = SqlPurchaseOrderReader(create_engine(url))
    dialect = mssql_pyodbc.dialect(paramstyle="qmark")
    counts = [query.compile(dialect=dialect, compile_kwargs={"render_postcompile": True}).string.count("?")
              for query in reader.entered_invoice_queries(lookups)]
    assert len(counts) == 4 and max(counts) < SQL_SERVER_PARAMETER_LIMIT, counts


def test_on_sql_server_the_duplicate_lookup_compares_the_columns_as_its_indexes_hold_them():
    """Under UPPER(LTRIM(RTRIM(...))) no index of the ERP's served it: every batch read every AP
    invoice ever entered. SQL Server's collation compares without case and trailing blanks itself;
    a value keyed in after a blank is compared without it only within the index's range of the
    values that start with a space or a tab (`LIKE ' %'`)."""
    reader = SqlPurchaseOrderReader(create_engine("mssql+pyodbc://u:p@sampro/SAMPRO?driver=x"), NAMES)
    query, *_ = reader.entered_invoice_queries(LOOKUPS)
    compiled = query.compile(dialect=reader.engine.dialect, compile_kwargs={"render_postcompile": True})
    statement = compiled.string
    assert "erp.[APINV].[VENDNO] IN (" in statement and "erp.[APINV].invoice_number IN (" in statement
    for column in (r"erp\.\[APINV\]\.\[VENDNO\]", r"erp\.\[APINV\]\.invoice_number"):
        after_a_blank = re.findall(rf"\({column} LIKE \? OR {column} LIKE \?\) AND upper\(ltrim\(replace\({column}, "
                                   rf"\?, \?\)\)\) IN \(", statement)
        assert len(after_a_blank) == 1, statement
    assert statement.lower().count("upper(") == statement.count("LIKE") // 2 == 2, statement
    assert sorted(value for value in compiled.construct_params().values() if str(value).endswith("%")) == [
        "\t%", "\t%", " %", " %"]
    assert statement.count("?") < SQL_SERVER_PARAMETER_LIMIT


def _sql_server_ci_as(left: str, right: str) -> int:
    """Text compared as SQL Server's usual collation (`*_CI_AS`) compares it: without case, and
    without trailing blanks, but with leading ones."""
    left, right = left.rstrip(" ").casefold(), right.rstrip(" ").casefold()
    return (left > right) - (left < right)


def test_on_sql_server_an_invoice_keyed_in_after_a_blank_is_found():
    """SQL Server's `=` and IN ignore trailing blanks, not leading ones: an invoice keyed into
    Sampro by hand as ` INV-778` (or under vendor ` V100`) was not found, and its resend was paid
    twice. SQL Server's statements, run on SQLite under a collation that compares as SQL Server's."""
    engine = create_engine("sqlite://")
    event.listen(engine, "connect", lambda connection, _: connection.create_collation("CI_AS", _sql_server_ci_as))
    reader = SqlPurchaseOrderReader(create_engine("mssql+pyodbc://u:p@sampro/SAMPRO?driver=x"))
    entered = [("S-1", "V100", " INV-778"), ("S-2", "V100", "\tINV-778"), ("S-3", " V100", "inv-778"),
               ("S-4", "\t V100", "  Inv-778"), ("S-5", "v100", "INV-778  "),
               ("S-6", "V100", " INV-7780"), ("S-7", " V200", " INV-778"), ("S-8", "V100", "X INV-778")]
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE ap_invoice (sampro_invoice_id TEXT PRIMARY KEY, vendor_id TEXT COLLATE "
                             "CI_AS, invoice_number TEXT COLLATE CI_AS, total_amount NUMERIC, invoice_date DATE)")
        conn.execute(insert(reader.tables.ap_invoice), [
            {"sampro_invoice_id": key, "vendor_id": vendor, "invoice_number": number, "total_amount": Decimal(99)}
            for key, vendor, number in entered])
        queries = reader.entered_invoice_queries(lookups_for([{"vendor_id": "V100", "invoice_number": "INV-778"}],
                                                             Policy()))
        found = {key for query in queries for key, *_ in conn.execute(query)}
    assert found == {"S-1", "S-2", "S-3", "S-4", "S-5"}


def test_on_sql_server_the_same_total_is_asked_for_dated_within_each_invoices_window():
    """Asked from all time, each invoice of a flat-fee vendor (a courier, a rental: one total every
    month) read every AP invoice of it ever entered, and each verdict's audit kept them all."""
    reader = SqlPurchaseOrderReader(create_engine("mssql+pyodbc://u:p@sampro/SAMPRO?driver=x"), NAMES)
    query, *_ = reader.entered_invoice_queries(LOOKUPS)
    statement = query.compile(dialect=reader.engine.dialect, compile_kwargs={"render_postcompile": True}).string
    windows = re.findall(r"erp\.\[APINV\]\.invoice_date BETWEEN \? AND \?", statement)
    assert len(windows) == 80  # one a lookup, no two of which meet
    assert re.search(r"erp\.\[APINV\]\.total_amount IN \(\?(, \?)*\) AND \(erp\.\[APINV\]\.invoice_date BETWEEN",
                     statement), statement


def test_every_table_is_schema_qualified_and_renamed():
    for statement in _statements():
        tables = re.findall(r"\b(?:FROM|JOIN)\s+([\w.\[\]]+)", statement)
        assert tables and all(table.startswith("erp.") for table in tables), statement
        assert not re.search(r"\b(po_header|po_line|ap_invoice)\b", statement), statement
    fetch, *_ = _statements()
    assert "erp.[POLIN].[PO_NO] = erp.[POHDR].[PONUM]" in fetch
    assert "erp.[POHDR].[VENDNO]" in fetch


@pytest.mark.parametrize("construct", [r"\bLIMIT\b", r"\bOFFSET\b", r"\bILIKE\b", r"\bRETURNING\b", r"\bNULLS\b",
                                       r"\(\s*\S+\s*,\s*\S+\s*\)\s+IN\b", r"\bTRUE\b|\bFALSE\b", r"::", r'"'])
def test_no_construct_sql_server_lacks(construct):
    for statement in _statements():
        assert not re.search(construct, statement, re.IGNORECASE), statement


def test_the_reader_runs_exactly_those_statements():
    reader = _reader(SamproNames())
    SamproStandIn(reader.engine).create_schema()
    executed: list[str] = []
    event.listen(reader.engine, "before_cursor_execute", lambda *args: executed.append(args[2]))
    reader.fetch(PO_NUMBERS)
    reader.entered_invoices(LOOKUPS)
    assert len(executed) == len(list(reader.purchase_order_queries(PO_NUMBERS))) + len(
        list(reader.entered_invoice_queries(LOOKUPS)))


def _renamed_sampro_with_a_po_and_an_entered_invoice():
    """SQLite under the renames of a real Sampro: PO builders.PO, and invoice INV-1 entered on it."""
    engine, names = create_engine("sqlite://"), NAMES.model_copy(update={"schema_name": None})
    standin = SamproStandIn(engine, names)
    standin.create_schema()
    po = PurchaseOrder.model_validate(PO)
    standin.load_purchase_orders([po])
    standin.enter_invoice(sampro_invoice_id="S-1", vendor_id=po.vendor_id, invoice_number="INV-1",
                          po_number=po.po_number, invoice_date=None, total_amount=Decimal(1), lines=[])
    return engine, names, po


def test_per_table_renames_read_and_write_the_same_rows():
    engine, names, po = _renamed_sampro_with_a_po_and_an_entered_invoice()
    reader = SqlPurchaseOrderReader(engine, names)
    assert reader.fetch([po.po_number]) == {po.po_number: po}
    found = reader.entered_invoices(lookups_for([{"vendor_id": po.vendor_id, "invoice_number": "INV-1"}], Policy()))
    assert [k.invoice_number for k in found] == ["INV-1"]


def test_money_kept_as_float_is_read_as_it_was_typed():
    """pyodbc gives a FLOAT column as a float, and SQLAlchemy's Numeric passes it on as it is on
    SQL Server (the dialect takes Decimal natively). 0.1 * 3 is stored as 0.30000000000000004:
    read so, it made a PRICE_MISMATCH against an invoice of 0.30, and an entered invoice's total
    missed the same-total duplicate check by the same hair."""
    dialect = mssql_pyodbc.dialect()
    assert SamproStandIn(create_engine("sqlite://")).tables.po_line.c.unit_price.type.result_processor(
        dialect, None) is None  # the premise: on SQL Server the driver's float reaches the reader
    engine, names, po = _renamed_sampro_with_a_po_and_an_entered_invoice()
    with engine.begin() as conn:
        conn.execute(text("UPDATE POLIN SET unit_price = 0.1 * 3, quantity_ordered = 0.1 * 3 * 10 WHERE LINENO = 1"))
        conn.execute(text("UPDATE POHDR SET tax_rate = 0.1 * 0.8"))
        conn.execute(text("UPDATE APINV SET total_amount = 0.1 * 3 * 100"))
    engine.dialect.supports_native_decimal = True  # as mssql+pyodbc: SQLite's REAL is handed through
    reader = SqlPurchaseOrderReader(engine, names)
    found = reader.fetch([po.po_number])[po.po_number]
    assert (found.lines[0].unit_price, found.lines[0].quantity_ordered, found.tax_rate) == (
        Decimal("0.3"), Decimal("3"), Decimal("0.08"))
    assert found.lines[1] == po.lines[1]
    entered = reader.entered_invoices(lookups_for([{"vendor_id": po.vendor_id, "invoice_number": "INV-1"}], Policy()))
    assert [known.total_amount for known in entered] == [Decimal("30")]


def test_the_older_form_renames_a_column_in_every_table():
    tables = _reader(SamproNames(columns={"po_number": "PONUM"})).tables
    assert {t.c.po_number.name for t in (tables.po_header, tables.po_line, tables.ap_invoice)} == {"PONUM"}


@pytest.mark.parametrize(("renames", "message"), [
    ({"po_line_columns": {"po_numbr": "X"}}, "did you mean 'po_number'"),
    ({"po_header_columns": {"line_no": "X"}}, "po_header_columns: 'line_no' is not a canonical"),
    ({"columns": {"nonsense": "X"}}, "columns: 'nonsense'"),
    ({"po_lines": "POLIN"}, "po_lines"),
])
def test_a_rename_of_no_canonical_column_is_refused(renames, message):
    with pytest.raises(ValueError, match=message):
        SamproNames.model_validate(renames)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_bundled_odbc_driver_loads_and_a_closed_port_is_one_clear_unavailable():
    import pyodbc

    assert mssql.bundled_odbc_driver() is not None, "the mssql extra's ODBC Driver 18 is not installed"
    engine = engine_for(f"mssql+pyodbc://sa:Secret-123@127.0.0.1:{_closed_port()}/sampro"
                        "?Encrypt=yes&TrustServerCertificate=yes")
    started = time.monotonic()
    with pytest.raises(Unavailable) as raised, mapped_errors("sampro"), engine.connect():
        pass
    assert time.monotonic() - started < mssql.LOGIN_TIMEOUT_SECONDS + 5
    assert raised.value.dependency == "sampro"
    assert "[Microsoft][ODBC Driver 18 for SQL Server]" in raised.value.detail  # the driver itself answered
    assert "Secret-123" not in str(raised.value) and isinstance(raised.value.__cause__.orig, pyodbc.Error)


def test_a_url_without_a_driver_and_no_bundled_one_says_what_to_install(monkeypatch):
    monkeypatch.setattr(mssql, "bundled_odbc_driver", lambda: None)
    with pytest.raises(mssql.NoOdbcDriver, match=r"invoice-automation\[mssql\].*driver=ODBC\+Driver\+18"):
        engine_for("mssql+pyodbc://sa:pw@db.example:1433/sampro?Encrypt=yes")


def test_a_url_that_names_its_driver_keeps_it():
    engine = engine_for("mssql+pyodbc://sa:pw@db.example:1433/sampro?driver=ODBC+Driver+18+for+SQL+Server")
    assert engine.url.query["driver"] == "ODBC Driver 18 for SQL Server"


def test_the_change_poller_compiles_for_sql_server_on_renamed_tables_and_columns():
    from datetime import UTC, datetime

    from connectors.sampro.changes import PollingSamproChanges

    names = NAMES.model_copy(update={"po_header_columns": {**NAMES.po_header_columns, "updated_at": "LASTCHG"},
                                     "po_line_columns": {**NAMES.po_line_columns, "updated_at": "CHGDATE"}})
    poller = PollingSamproChanges(create_engine("sqlite://"), FileWatermark(Path("/nonexistent/state.json")), names)
    dialect = mssql_pyodbc.dialect(paramstyle="qmark")
    at = datetime.now(UTC)

    def compiled(query) -> str:
        return query.compile(dialect=dialect, compile_kwargs={"render_postcompile": True}).string

    header_page, line_page = (compiled(poller.after_query(name, (at, None), 500)) for name in ("po_header", "po_line"))
    assert header_page.startswith("SELECT DISTINCT TOP 500 erp.[POHDR].[PONUM], erp.[POHDR].[LASTCHG] \n"
                                  "FROM erp.[POHDR]")
    assert header_page.endswith("ORDER BY erp.[POHDR].[LASTCHG], erp.[POHDR].[PONUM]")
    assert "WHERE erp.[POLIN].[CHGDATE] >= ? ORDER BY" in line_page.replace("\n", "")
    group = compiled(poller.group_query("po_line", (at, "PO-1"), 200))
    assert group.startswith("SELECT DISTINCT TOP 200 erp.[POLIN].[PO_NO], erp.[POLIN].[CHGDATE]")
    assert ("erp.[POLIN].[CHGDATE] >= ? AND erp.[POLIN].[CHGDATE] < ? AND erp.[POLIN].[PO_NO] > ? "
            "ORDER BY erp.[POLIN].[PO_NO]") in group.replace("\n", "")
    window = compiled(poller.window_query("po_header", (at, "PO-1"), at))
    assert ("erp.[POHDR].[LASTCHG] > ? AND (erp.[POHDR].[LASTCHG] < ? OR erp.[POHDR].[LASTCHG] < ? AND "
            "erp.[POHDR].[PONUM] <= ?)") in window
    statements = [header_page, line_page, group, window, compiled(poller.newest_query("po_line"))]
    for statement in statements:
        assert not re.search(r"\bLIMIT\b|::|\"|\bTRUE\b", statement), statement


def test_the_change_poller_sends_sql_server_its_times_as_naive_utc_and_postgresql_with_their_zone():
    """Sent with its zone, a time went to SQL Server as text with an offset, which a DATETIME or
    DATETIME2 column (GETDATE()'s) does not convert from (Msg 241): every poll failed."""
    from datetime import datetime, timedelta, timezone

    from sqlalchemy.dialects import postgresql

    from connectors.sampro.changes import PollingSamproChanges

    poller = PollingSamproChanges(create_engine("sqlite://"), FileWatermark(Path("/nonexistent/state.json")), NAMES)
    at = datetime(2026, 11, 20, 13, 0, 0, 8000, tzinfo=timezone(timedelta(hours=1)))
    query = poller.after_query("po_line", (at, None), 500)
    for dialect, sent in ((mssql_pyodbc.dialect(), datetime(2026, 11, 20, 12, 0, 0, 9000)),
                          (postgresql.dialect(), at + timedelta(milliseconds=1))):
        compiled = query.compile(dialect=dialect)
        processors = compiled._bind_processors
        values = {name: processors[name](value) if name in processors else value
                  for name, value in compiled.construct_params().items()}
        assert sent in values.values() and (sent.tzinfo is None) is (dialect.name == "mssql"), values


@pytest.mark.parametrize(("unicode_text", "sent_as"), [(False, "SQL_VARCHAR"), (True, "SQL_WVARCHAR")])
def test_sampro_text_is_sent_to_sql_server_as_its_columns_hold_it(unicode_text, sent_as):
    """NVARCHAR columns read with VARCHAR parameters: a PO number or an invoice number outside the
    database's code page (Cyrillic, CJK) did not reach SQL Server as itself, and was not found."""
    import pyodbc

    from connectors.sampro.tables import sampro_tables

    tables = sampro_tables(NAMES.model_copy(update={"unicode_text": unicode_text}))
    dialect = mssql_pyodbc.dialect()
    kinds = {column.type.dialect_impl(dialect).get_dbapi_type(pyodbc)
             for table in (tables.po_header, tables.po_line, tables.ap_invoice)
             for column in table.columns if column.key in ("po_number", "vendor_id", "part_number", "invoice_number")}
    assert kinds == {getattr(pyodbc, sent_as)}
