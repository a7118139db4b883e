"""What Sampro's views may hold that the stand-in's tables refuse: a view has no primary key and
no NOT NULL, so the reader meets rows a table never gives. Each is a data error that names the
PO, or is passed over; none is a PO snapshot that would match an invoice wrongly."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal, InvalidOperation

import pytest
from sqlalchemy import Column, MetaData, Table, create_engine, insert
from sqlalchemy.dialects.postgresql import psycopg as postgresql_psycopg

from connectors.sampro import SamproDataError, SqlPurchaseOrderReader
from connectors.sampro.reader import _fields, _snapshot
from connectors.sampro.tables import sampro_tables
from rules.duplicates import lookups_for
from rules.models import PurchaseOrder, UnreadablePurchaseOrder
from rules.policy import Policy

HEADER = {"po_number": "PO-1", "vendor_id": "V1", "status": "open", "currency": "USD",
          "order_date": date(2026, 11, 1), "tax_rate": Decimal("0.08"), "allowed_charges": ""}
LINE = {"po_number": "PO-1", "line_no": 1, "part_number": "P-1", "unit_price": Decimal("15.50"),
        "quantity_ordered": Decimal(10), "quantity_received": Decimal(10), "quantity_invoiced": Decimal(0)}


@pytest.fixture
def views():
    """(engine, tables): Sampro's tables as views give them, every column nullable and no key."""
    engine = create_engine("sqlite://")
    metadata = MetaData()
    tables = {name: Table(table.name, metadata, *(Column(c.name, c.type, key=c.key) for c in table.columns))
              for name, table in vars(sampro_tables()).items() if isinstance(table, Table)}
    metadata.create_all(engine)
    return engine, tables


def _unreadable(engine) -> str:
    """Why the reader could not make PO-1's snapshot: a PO of its own beside the batch's others."""
    found = SqlPurchaseOrderReader(engine).fetch(["PO-1", "PO-404"])
    assert set(found) == {"PO-1"} and isinstance(found["PO-1"], UnreadablePurchaseOrder)
    return found["PO-1"].problem


def _rows(engine, table: Table, *rows: dict) -> None:
    with engine.begin() as conn:
        conn.execute(insert(table), list(rows))


def test_a_header_read_twice_is_a_data_error_not_every_line_twice(views):
    """A join in the view that doubles the header would double every line: entered, every
    quantity would go in twice."""
    engine, tables = views
    _rows(engine, tables["po_header"], HEADER, HEADER)
    _rows(engine, tables["po_line"], LINE)
    assert re.search(r"PO PO-1: line 1 appears more than once", _unreadable(engine))


def test_two_lines_of_one_number_are_a_data_error(views):
    engine, tables = views
    _rows(engine, tables["po_header"], HEADER)
    _rows(engine, tables["po_line"], LINE, {**LINE, "part_number": "P-2"})
    assert re.search("line 1 appears more than once", _unreadable(engine))


@pytest.mark.parametrize("column", ["unit_price", "quantity_ordered", "quantity_received", "quantity_invoiced"])
def test_a_negative_quantity_or_price_names_the_po_the_column_and_the_value(views, column):
    """quantity_invoiced -1000 would widen what is open by 1,000, and a negative price pass
    every price check."""
    engine, tables = views
    _rows(engine, tables["po_header"], HEADER)
    _rows(engine, tables["po_line"], {**LINE, column: Decimal(-1000)})
    assert re.search(rf"PO PO-1: line 1: {column} -1000(\.0+)? is below zero", _unreadable(engine))


def test_a_view_that_gives_a_negative_whole_number_or_float_is_refused_too():
    """psycopg and pyodbc hand an INT or FLOAT column over as it is, not as a Decimal."""
    for value in (-5, -0.5):
        with pytest.raises(SamproDataError, match=f"PO PO-1: line 1: quantity_invoiced {value} is below zero"):
            _snapshot("PO-1", _fields([{**HEADER, **LINE, "quantity_invoiced": value}]))


def test_a_negative_tax_rate_names_the_po_and_the_value(views):
    engine, tables = views
    _rows(engine, tables["po_header"], {**HEADER, "tax_rate": Decimal("-0.08")})
    _rows(engine, tables["po_line"], LINE)
    assert re.search(r"PO PO-1: tax_rate -0\.08\d* is below zero", _unreadable(engine))


def test_a_null_quantity_invoiced_makes_its_po_unreadable_naming_the_line(views):
    """Read as 0, the line looked wholly open, and an invoice for what Sampro had invoiced already
    passed QUANTITY_EXCEEDS_OPEN and was paid again. A NULL quantity_received is a line that tracks
    no receipts (DESIGN.md), and is read so."""
    engine, tables = views
    _rows(engine, tables["po_header"], HEADER, {**HEADER, "po_number": "PO-2"})
    _rows(engine, tables["po_line"], {**LINE, "line_no": 2, "quantity_invoiced": None},
          {**LINE, "po_number": "PO-2", "quantity_received": None})
    found = SqlPurchaseOrderReader(engine).fetch(["PO-1", "PO-2"])
    assert found["PO-1"] == UnreadablePurchaseOrder(
        po_number="PO-1", problem="PO PO-1: line 2: quantity_invoiced is NULL: what is still open on it cannot be told")
    assert isinstance(found["PO-2"], PurchaseOrder) and found["PO-2"].lines[0].quantity_received is None


def test_a_null_status_is_a_data_error_naming_the_po(views):
    engine, tables = views
    _rows(engine, tables["po_header"], {**HEADER, "status": None})
    assert re.search("PO PO-1: status None", _unreadable(engine))


def test_an_entered_invoice_without_a_number_is_found_by_its_total_and_compared_as_one(views):
    """It broke every duplicate lookup of its vendor and total (AttributeError); without a number
    it can still be an invoice of the same total that a person should look at."""
    engine, tables = views
    entered = {"sampro_invoice_id": "S-1", "vendor_id": "V1", "invoice_number": "INV-1", "po_number": "PO-1",
               "invoice_date": date(2026, 11, 2), "total_amount": Decimal(10)}
    _rows(engine, tables["ap_invoice"], entered, {**entered, "sampro_invoice_id": "S-2", "invoice_number": None})
    found = SqlPurchaseOrderReader(engine).entered_invoices(
        lookups_for([{"vendor_id": "V1", "invoice_number": "OTHER", "total_amount": "10",
                      "invoice_date": "2026-11-20"}], Policy()))
    assert [(known.invoice_id, known.invoice_number) for known in found] == [("sampro:S-1", "INV-1"),
                                                                             ("sampro:S-2", "")]


def test_a_verdict_made_before_keeps_its_po_snapshot_whatever_sampro_held_then():
    """The model also reads the snapshots of verdicts already made (topics, processscheduler):
    the reader's checks must not make those unreadable."""
    snapshot = {**HEADER, "status": "open", "allowed_charges": [], "order_date": "2026-11-01",
                "lines": [{**LINE, "quantity_invoiced": "-1"}, {**LINE, "part_number": "P-2"}]}
    assert PurchaseOrder.model_validate(snapshot).lines[0].quantity_invoiced == Decimal(-1)


def test_one_pos_bad_row_leaves_the_other_pos_of_the_batch_read(views):
    """The reader raised for the whole batch: every invoice of the batch, on any PO, was a bad_invoice."""
    engine, tables = views
    _rows(engine, tables["po_header"], {**HEADER, "status": "Released"}, {**HEADER, "po_number": "PO-2"})
    _rows(engine, tables["po_line"], LINE, {**LINE, "po_number": "PO-2"})
    found = SqlPurchaseOrderReader(engine).fetch(["PO-1", "PO-2"])
    assert isinstance(found["PO-2"], PurchaseOrder) and found["PO-2"].lines[0].part_number == "P-1"
    assert isinstance(found["PO-1"], UnreadablePurchaseOrder) and found["PO-1"].po_number == "PO-1"
    assert found["PO-1"].problem.startswith("PO PO-1: status 'Released' is not one of ['open',")


def test_a_line_without_a_number_makes_its_po_unreadable_instead_of_disappearing(views):
    """It was left out: an invoice line of its part would have been PART_NOT_ON_PO."""
    engine, tables = views
    _rows(engine, tables["po_header"], HEADER)
    _rows(engine, tables["po_line"], LINE, {**LINE, "line_no": None, "part_number": "P-2"})
    assert "PO PO-1: a line of part 'P-2' has no line_no" in _unreadable(engine)


def test_a_value_the_reader_cannot_compare_makes_its_po_unreadable_naming_the_error(views, monkeypatch):
    """A view's NaN raised InvalidOperation where the reader compares it with zero: not a data
    error, so the batch was tried record by record before each record was dead-lettered."""
    engine, tables = views
    _rows(engine, tables["po_header"], HEADER)
    _rows(engine, tables["po_line"], LINE)

    def not_a_number(row):
        raise InvalidOperation([InvalidOperation])

    monkeypatch.setattr("connectors.sampro.reader._line", not_a_number)
    assert _unreadable(engine).startswith("InvalidOperation")


def test_a_postgresql_view_that_gives_money_as_double_precision_is_read_as_typed():
    """psycopg gives a real or double precision column as a float, which SQLAlchemy's NUMERIC(18, 4)
    rounded to 4 digits (15.50005 as 15.5000); a NUMERIC column's Decimal is read as it comes."""
    unit_price = sampro_tables().po_line.c.unit_price.type
    dialect = postgresql_psycopg.dialect()
    double_precision, numeric = 701, 1700  # psycopg's type codes
    as_double = unit_price.dialect_impl(dialect).result_processor(dialect, double_precision)
    assert as_double(15.50005) == Decimal("15.50005") and str(as_double(2.48)) == "2.4800"
    # Past 15 significant digits, the float's own value at the column's digits, as it was read before.
    assert str(as_double(123456789012.3456)) == "123456789012.3456"
    as_numeric = unit_price.dialect_impl(dialect).result_processor(dialect, numeric)
    assert as_numeric is None or as_numeric(Decimal("15.50005")) == Decimal("15.50005")
