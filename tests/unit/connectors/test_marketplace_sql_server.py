"""The marketplace table and its poller on SQL Server, as far as it can be checked without a
server: the statements compiled for `mssql+pyodbc`."""

from __future__ import annotations

import pytest
from sqlalchemy import select, update
from sqlalchemy.dialects.mssql import pyodbc as mssql_pyodbc
from sqlalchemy.schema import CreateTable

from connectors.bounded_text import text_within
from connectors.marketplace_table import StampedNow, marketplace_invoices


@pytest.mark.parametrize("deprecate_large_types", [True, False, None])
def test_the_lines_and_extra_charges_are_read_as_nvarchar_as_they_are_kept(deprecate_large_types):
    """Read as VARCHAR(max) (or TEXT), in the database's code page, a Cyrillic or CJK part number
    came back as '??-100' and was judged as a part the vendor never sent."""
    dialect = mssql_pyodbc.dialect(deprecate_large_types=deprecate_large_types)
    for column in (marketplace_invoices.c.lines, marketplace_invoices.c.extra_charges):
        statement = str(select(*text_within(column, 256_000)).compile(dialect=dialect))
        assert f"ELSE CAST({column} AS NVARCHAR(max)) END" in statement, statement


def test_a_row_is_stamped_in_utc_to_the_microsecond_as_the_poller_reads_the_present():
    """CURRENT_TIMESTAMP is the server's local time, which the DATETIMEOFFSET column took as +00:00:
    west of UTC, the hour a daylight-saving fall-back stamps again lay behind the poller's
    watermark (its present is SYSUTCDATETIME()), and its uploads were never read."""
    dialect = mssql_pyodbc.dialect()
    stamped = "CAST(SYSUTCDATETIME() AS DATETIMEOFFSET(6))"
    table = str(CreateTable(marketplace_invoices).compile(dialect=dialect))
    edited = str(update(marketplace_invoices).values(updated_at=StampedNow()).compile(dialect=dialect))
    assert f"updated_at DATETIMEOFFSET NOT NULL DEFAULT {stamped}" in table, table
    assert edited.endswith(f"SET updated_at={stamped}"), edited
