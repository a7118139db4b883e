"""Text columns read within a limit, measured and cut by the database, so that a value far over the
limit never reaches the process: read whole and checked after, 20 marketplace rows of 50 MB lines
took the poller from 209 MB to 1,261 MB, a page is 1,000 rows, and it ran out of memory on the same
page again and again.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Integer, Label, Text, UnicodeText, case, cast, func, literal, null
from sqlalchemy.dialects import mssql
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

# A column read as text: NVARCHAR(max) on SQL Server, where the JSON columns are kept. Text is
# VARCHAR(max) there, in the database's code page: a Cyrillic or CJK part number of an invoice's
# lines came back as '??-100', and was judged as a part the vendor never sent.
AS_TEXT = UnicodeText().with_variant(mssql.NVARCHAR(), "mssql")


class TextLength(FunctionElement[int]):
    """The length of a column's text, counted by the database: characters; on SQL Server UTF-16
    units of the NVARCHAR(MAX) it keeps JSON in (its LEN leaves trailing blanks out, and refuses TEXT)."""

    type = Integer()
    name = "text_length"
    inherit_cache = True


@compiles(TextLength)
def _characters(element: TextLength, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = element.clauses
    return compiler.process(func.length(cast(column, Text)), **kw)


@compiles(TextLength, "mssql")
def _utf16_units(element: TextLength, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = element.clauses
    return f"DATALENGTH(CAST({compiler.process(column, **kw)} AS NVARCHAR(max))) / 2"


def text_within(column: ColumnElement[Any], limit: int) -> tuple[Label[Any], Label[int]]:
    """The column as text, NULL when longer than `limit`, and its length: `<key>` and `<key>_length`."""
    length = TextLength(column)
    return (case((length > limit, null()), else_=cast(column, AS_TEXT)).label(column.key),
            length.label(f"{column.key}_length"))


class CutOnSqlite(FunctionElement[Any]):
    """A VARCHAR column as read: as it is where its length is kept to its type's; on SQLite, which
    keeps text of any length in it, cut one character past the limit, so that one too long is
    told as such without being read whole."""

    name = "cut_on_sqlite"
    inherit_cache = True

    def __init__(self, column: ColumnElement[Any], limit: int):
        super().__init__(column, literal(limit))
        self.type = column.type


@compiles(CutOnSqlite)
def _as_it_is(element: CutOnSqlite, compiler: SQLCompiler, **kw: Any) -> str:
    column, _limit = element.clauses
    return compiler.process(column, **kw)


@compiles(CutOnSqlite, "sqlite")
def _cut(element: CutOnSqlite, compiler: SQLCompiler, **kw: Any) -> str:
    # A number SQLite keeps in the column is never that long, and stays a number.
    column, limit = element.clauses
    return compiler.process(case((func.length(column) > limit, func.substr(column, 1, limit + 1)), else_=column), **kw)
