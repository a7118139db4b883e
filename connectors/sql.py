"""What every SQL adapter shares: how an engine is made from a URL, how a number is read as the
database holds it (`ExactNumeric`), and how SQLAlchemy's and the drivers' errors are mapped into
the service's error family at the call.

A database that cannot be reached, refuses the login, lost the connection or lacks a table is
`Unavailable` (the work waits for it); a value it refuses to store is a `DataError` (the one
record is dead-lettered). The detail names the database, never its address or password.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from decimal import MAX_PREC, Context, Decimal
from functools import partial
from pathlib import Path
from typing import Any

from pydantic_core import to_json
from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Connection,
    Dialect,
    Engine,
    Numeric,
    and_,
    any_,
    bindparam,
    create_engine,
    event,
    func,
    or_,
    select,
)
from sqlalchemy import exc as sql
from sqlalchemy.engine import make_url
from sqlalchemy.types import TypeDecorator

from connectors.mssql import LOGIN_TIMEOUT_SECONDS, with_odbc_driver
from rules.duplicates import Lookup
from rules.errors import DataError, Unavailable

IDLE_PING_SECONDS = 5.0
CONNECT_SECONDS = 10  # a PostgreSQL server that has not accepted a connection by then is down
SQLITE_BUSY_SECONDS = 30.0  # how long SQLite waits for another connection's write lock, unless told


def engine_for(url: str, idle_ping_seconds: float = IDLE_PING_SECONDS,
               lock_wait_seconds: float | None = None) -> Engine:
    """`lock_wait_seconds`: how long a statement waits for another session's lock at most, for a
    database other sessions write (Sampro, processscheduler). Past it the statement fails, an
    `Unavailable` once mapped (`mapped_errors`), and the work waits as for any outage and tries
    again: without it a read waited behind an ERP session left open, a write of processscheduler
    behind a DBA's open UPDATE, for as long as that session held its lock, and the worker's loop
    with it. (On SQLite it is the busy timeout, "database is locked" past it.)"""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        busy = SQLITE_BUSY_SECONDS if lock_wait_seconds is None else lock_wait_seconds
        engine = create_engine(url, connect_args={"timeout": busy}, json_serializer=json_text)
        event.listen(engine, "connect", _text_is_utf8)
        return engine
    parsed = make_url(url)
    if parsed.drivername == "mssql+pyodbc":
        engine = create_engine(with_odbc_driver(parsed), json_serializer=json_text,
                               connect_args={"timeout": LOGIN_TIMEOUT_SECONDS})
    elif parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        # libpq waits for the operating system's TCP timeout, two minutes and more for a host that
        # does not answer: the worker's loop, and the API's threads, with it.
        engine = create_engine(parsed, json_serializer=json_text, connect_args={"connect_timeout": CONNECT_SECONDS})
    else:
        engine = create_engine(parsed, json_serializer=json_text)
    _ping_after_idle(engine, idle_ping_seconds)
    if lock_wait_seconds is not None:
        _wait_for_locks_at_most(engine, lock_wait_seconds)
    return engine


def _utf8(value: bytes) -> str:
    return value.decode()


def _text_is_utf8(dbapi_connection: Any, _record: Any) -> None:
    """SQLite keeps any bytes as text (a vendor's cp1252 name imported as it was), and sqlite3
    fails such a value with an OperationalError, which reads as the database being away: the
    marketplace poller waited on one row for good. Decoded here, it fails as the ValueError it is."""
    dbapi_connection.text_factory = _utf8


@contextmanager
def escaped_text(conn: Connection) -> Iterator[None]:
    """Text that is not UTF-8 read with its bytes escaped (`\\xff`), to be shown in a dead letter.
    Only SQLite hands the driver text that is not in its encoding."""
    if conn.dialect.name != "sqlite":
        yield
        return
    dbapi_connection: Any = conn.connection.dbapi_connection
    dbapi_connection.text_factory = lambda value: value.decode(errors="backslashreplace")
    try:
        yield
    finally:
        dbapi_connection.text_factory = _utf8


def _wait_for_locks_at_most(engine: Engine, seconds: float) -> None:
    milliseconds = max(1, round(seconds * 1000))
    statement = {"postgresql": f"SET lock_timeout = {milliseconds}",
                 "mssql": f"SET LOCK_TIMEOUT {milliseconds}"}.get(engine.dialect.name)
    if statement is None:
        return

    @event.listens_for(engine, "connect")
    def _set(dbapi_connection: Any, _record: Any) -> None:
        # Outside a transaction: one left open here would hold the session's first statement.
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        cursor = dbapi_connection.cursor()
        cursor.execute(statement)
        cursor.close()
        dbapi_connection.autocommit = autocommit


def _ping_after_idle(engine: Engine, idle_seconds: float) -> None:
    """`pool_pre_ping`, for a connection that sat in the pool `idle_seconds` or more: one the server
    or a firewall closed meanwhile (a restart, an idle timeout) is replaced before it is used. A
    worker checks a connection out several times a batch; pinging each time was a round trip of
    120 us or more at every checkout, 6% of the deciding worker's time. A connection that breaks
    within the idle time is a database error, mapped to `Unavailable`: the work waits and tries again."""

    @event.listens_for(engine, "checkin")
    def _idle_from(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _alive(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop("idle_since", None)
        if idle_since is None or time.monotonic() - idle_since < idle_seconds:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            # The pool drops this connection and checks out a new one (SQLAlchemy's own recipe).
            raise sql.DisconnectionError(_first_line(error)) from error


def database_clocks(conn: Connection) -> tuple[datetime, datetime]:
    """The database's UTC time, and its local time read as UTC: rows are stamped in either (a
    Sampro on SQL Server may stamp GETDATE() local time, or SYSUTCDATETIME()), and the pollers read
    every naive time as UTC. SQLite has no clock of its own but this machine's (and its
    CURRENT_TIMESTAMP keeps whole seconds, below the rows just written); SQL Server's
    SYSDATETIME() keeps what CURRENT_TIMESTAMP rounds to 3 ms."""
    if conn.dialect.name == "sqlite":
        utc, local = datetime.now(UTC), datetime.now()
    elif conn.dialect.name == "mssql":
        utc, local = conn.execute(select(func.sysutcdatetime(), func.sysdatetime())).one()
    else:
        utc, local = conn.execute(select(func.current_timestamp(), func.localtimestamp())).one()
    return as_utc(utc), local.replace(tzinfo=UTC)


def as_utc(moment: datetime) -> datetime:
    """A time as the pollers compare them: a naive one (the database keeps no zone) is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def json_text(value: object) -> str:
    """A JSON column's text: pydantic-core's serializer, a fifth of the cost of `json.dumps` on the
    findings, payloads and invoices processscheduler stores with every verdict."""
    return to_json(value).decode()


def exact(value: Any) -> Any:
    """A number as the user typed it. A FLOAT column (SQLite's REAL too) holds the nearest double,
    and `0.1 + 0.2` is stored as 0.30000000000000004: that read exactly made a PRICE_MISMATCH against
    an invoice of 0.30. Every decimal of up to 15 significant digits (DBL_DIG) comes back from its
    double at 15 digits, so a price or quantity that was typed keeps its value."""
    return Decimal(format(value, ".15g")) if isinstance(value, float) else value


# PostgreSQL's type codes (OIDs) of real and double precision: a Sampro view may give a column so.
POSTGRES_FLOATS = frozenset({700, 701})


class ExactNumeric(TypeDecorator[Decimal]):
    """NUMERIC(precision, scale) in the DDL, read as the database holds the value. SQLAlchemy's
    Numeric rounds a float the driver gives to the column's scale ('%.4f'): SQLite's REAL, and on
    PostgreSQL a real or double precision column. A Sampro PO price of 15.50005 was read 15.5000,
    and an invoice at 15.50 passed where it was a PRICE_MISMATCH. Such a float is read by `exact`,
    with the column's digits at least. A NUMERIC column of PostgreSQL or SQL Server comes as the
    Decimal it holds, as before, and so does a SQL Server FLOAT (a float, read by the Sampro
    reader's `exact`)."""

    impl = Numeric
    cache_ok = True

    def __init__(self, precision: int, scale: int):
        super().__init__(precision, scale, asdecimal=True)
        self.precision, self.scale = precision, scale  # in the statement cache's key (cache_ok)

    def result_processor(self, dialect: Dialect, coltype: Any) -> Callable[[Any], Any] | None:
        if dialect.name == "sqlite" or (dialect.name == "postgresql" and coltype in POSTGRES_FLOATS):
            return partial(_exact_decimal, scale=self.scale)
        return super().result_processor(dialect, coltype)


PADDING = Context(prec=MAX_PREC)


def _exact_decimal(value: Any, scale: int) -> Any:
    if value is None or isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        # At the column's digits when that is the float's own value: past 15 significant digits
        # (123456789012.3456, which NUMERIC(18,4) holds) `exact` rounds; else as `exact` reads it.
        scaled = Decimal(f"{value:.{scale}f}") if math.isfinite(value) else None
        number = scaled if scaled is not None and float(scaled) == value else exact(value)
    elif isinstance(value, int):
        number = Decimal(value)
    else:  # text SQLite keeps as written when it is no number ('15,50'): a row that cannot be read
        raise TypeError(f"{value!r:.40} is not a number")
    # Written with the column's digits at least ('2.4800'), as a NUMERIC column gives it and as this
    # was read before: a document or snapshot compared as text with one read then stays the same.
    exponent = number.as_tuple().exponent
    if not isinstance(exponent, int) or exponent <= -scale:
        return number
    return number.quantize(Decimal(1).scaleb(-scale), context=PADDING)


def among(column: ColumnElement[Any], values: Collection[Any], dialect: Dialect) -> ColumnElement[bool]:
    """`column IN (values)`, as SQL Server and SQLite take it; on PostgreSQL `column = ANY(array)`.
    One parameter whatever the number of values keeps the statement's text the same every batch:
    psycopg parses a statement of more than 50 parameters again on every call, which was 6% of
    the PO agent's time. PostgreSQL scans the column's index for either."""
    if dialect.name == "postgresql":
        return column == any_(bindparam(None, list(values), type_=ARRAY(column.type)))
    return column.in_(values)


def same_total(total: ColumnElement[Any], dated: ColumnElement[Any], lookups: Collection[Lookup],
               dialect: Dialect) -> list[ColumnElement[bool]]:
    """Where the earlier invoices of the lookups' totals are, dated within their windows (none when
    they ask no total): one of the totals, and a date in one of the windows, those that meet or
    overlap made one range, so that a batch of invoices of nearby dates asks one. A total and
    another lookup's window may cross: the few rows found so are left out after (`matches_lookup`)."""
    asked = [(lookup.asked_total, lookup.dated) for lookup in lookups
             if lookup.asked_total is not None and lookup.dated is not None]
    if not asked:
        return []
    ranges: list[tuple[date, date]] = []
    for first, last in sorted(window for _, window in asked):
        if ranges and first.toordinal() <= ranges[-1][1].toordinal() + 1:
            ranges[-1] = (ranges[-1][0], max(last, ranges[-1][1]))
        else:
            ranges.append((first, last))
    return [and_(among(total, {amount for amount, _ in asked}, dialect),
                 or_(*(dated.between(first, last) for first, last in ranges)))]


def _first_line(error: BaseException) -> str:
    original = getattr(error, "orig", None) or error
    text = str(original).strip().splitlines()
    return f"{type(original).__name__}: {text[0] if text else ''}"[:300]


@contextmanager
def mapped_errors(dependency: str) -> Iterator[None]:
    try:
        yield
    except (sql.DataError, sql.IntegrityError) as error:
        raise DataError(f"{dependency} refused the data: {_first_line(error)}") from error
    except sql.DBAPIError as error:  # operational, interface, programming (no such table), internal
        raise Unavailable(dependency, _first_line(error)) from error
    except (sql.DisconnectionError, sql.TimeoutError, ConnectionError) as error:
        raise Unavailable(dependency, _first_line(error)) from error
