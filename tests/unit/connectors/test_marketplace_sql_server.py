"""The marketplace table and its poller on SQL Server, as far as it can be checked without a
server: the statements compiled for `mssql+pyodbc`."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.dialects.mssql import pyodbc as mssql_pyodbc

from connectors.bounded_text import text_within
from connectors.marketplace_table import marketplace_invoices


@pytest.mark.parametrize("deprecate_large_types", [True, False, None])
def test_the_lines_and_extra_charges_are_read_as_nvarchar_as_they_are_kept(deprecate_large_types):
    """Read as VARCHAR(max) (or TEXT), in the database's code page, a Cyrillic or CJK part number
    came back as '??-100' and was judged as a part the vendor never sent."""
    dialect = mssql_pyodbc.dialect(deprecate_large_types=deprecate_large_types)
    for column in (marketplace_invoices.c.lines, marketplace_invoices.c.extra_charges):
        statement = str(select(*text_within(column, 256_000)).compile(dialect=dialect))
        assert f"ELSE CAST({column} AS NVARCHAR(max)) END" in statement, statement
