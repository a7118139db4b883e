"""Turning one Debezium change event of Sampro's PO header or line table into `PurchaseOrderChanged`s.

The PostgreSQL and the SQL Server connector write the same envelope (`before`, `after`,
`source`, `op`); the table named in `source` decides which of `SamproNames`' column renames
apply. An insert, an update, a snapshot read and a delete of a header or a line are each a
change of their PO (an update that moves a line to another PO, of both); a tombstone is nothing
to do. What cannot be read as such an event at all is
a `SamproRecordError`, naming the field, and is dead-lettered by the runtime.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import Any

from connectors.marketplace_table import stream_key_problem
from connectors.sampro.changes import change_id
from connectors.sampro.reader import padless
from connectors.sampro.tables import SamproNames
from rules.errors import DataError
from rules.lifecycle import PurchaseOrderChanged
from rules.limits import Limits, load_json

log = logging.getLogger(__name__)

OPERATIONS = ("c", "u", "d", "r")  # create, update, delete, snapshot read
_COMMIT_LSN = re.compile(r"[0-9A-Fa-f]{1,16}(?::[0-9A-Fa-f]{1,16}){0,2}")  # SQL Server's, as 00000027:00000758:0003


class SamproRecordError(DataError):
    """A Sampro change record that cannot be read at all; names the field and the value."""

    def __init__(self, field: str, value: Any, reason: str):
        self.field, self.value, self.reason = field, value, reason
        shown = repr(value) if len(repr(value)) <= 120 else repr(value)[:117] + "..."
        super().__init__(f"sampro change record field {field!r}: {reason} (value {shown})")


def _table_of(source: dict[str, Any], names: SamproNames) -> str:
    """The canonical table of the record; compared without case, as SQL Server names are."""
    actual = source.get("table")
    if isinstance(actual, str):
        for table in ("po_header", "po_line"):
            if actual.casefold() == getattr(names, table).casefold():
                return table
    raise SamproRecordError("source.table", actual,
                            f"not the PO header or line table ({names.po_header}, {names.po_line})")


def _column(row: dict[str, Any], name: str) -> Any:
    """A column's value; SQL Server reports a column in the case it was created with, which may not
    be the case the installation's renames spell it in."""
    if name in row:
        return row[name]
    folded = name.casefold()
    return next((value for key, value in row.items() if key.casefold() == folded), None)


def _moment(value: Any, field: str) -> datetime:
    # An int is Kafka Connect's Timestamp (milliseconds since the epoch), as `time.precision.mode=
    # connect` in both captures makes every timestamp without a zone; a string is Debezium's
    # ZonedTimestamp (ISO 8601) of a column with one.
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return datetime.fromtimestamp(value / 1000, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise SamproRecordError(field, value, "not a time in milliseconds since 1970") from None
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise SamproRecordError(field, value, "not an ISO 8601 time") from None
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    raise SamproRecordError(field, value, "not a time")


def _changed_at(envelope: dict[str, Any], source: dict[str, Any], table: str, names: SamproNames) -> datetime:
    """When the change was made: the row's updated_at when the change set it, the time the poller
    gives the change (a snapshot read has the poller's very id, so one taken again names changes
    already applied the same way); else the time the database committed it (`source.ts_ms`): a row
    without updated_at, an update that left it as it was, and always a delete, whose row (when the
    connector gives it at all) carries the time of the change before it. SQL Server's connector
    always gives an update's `before`; PostgreSQL's only for a table with REPLICA IDENTITY FULL, so
    there an update that left updated_at alone keeps that time, told apart by its transaction.
    """
    op = envelope["op"]
    if op != "d":
        column = names.column(table, "updated_at")
        updated = _column(envelope["after"], column)
        before = envelope.get("before")
        unchanged = op == "u" and isinstance(before, dict) and _column(before, column) == updated
        if updated is not None and not unchanged:
            return _moment(updated, f"after.{column}")
    return _moment(source.get("ts_ms"), "source.ts_ms")


def _transaction(op: str, source: dict[str, Any]) -> str | None:
    """The transaction that made the change: SQL Server's `commit_lsn`, PostgreSQL's `txId`; None for
    a snapshot read, whose id is then the poller's, so that a snapshot taken again names changes
    already applied the same way. Part of the id because two transactions on one PO can leave one
    updated_at (two receipts in a second on a `datetime2(0)` column, GETDATE()'s 3 ms ticks, an
    update on PostgreSQL that left it alone and had no `before` to show it): under one id, the PO
    agent took the second for the first, applied already, and what it would clear stayed held. A
    connector that reads its last changes again after a restart gives them the same ids."""
    if op == "r":
        return None
    if (lsn := source.get("commit_lsn")) is not None:
        if isinstance(lsn, str) and _COMMIT_LSN.fullmatch(lsn):
            return lsn.lower()
        raise SamproRecordError("source.commit_lsn", lsn, "not a SQL Server log sequence number")
    if (transaction := source.get("txId")) is not None:
        if isinstance(transaction, int) and not isinstance(transaction, bool) and 0 <= transaction < 2**64:
            return str(transaction)
        raise SamproRecordError("source.txId", transaction, "not a PostgreSQL transaction id")
    return None


def decode_sampro_record(value: bytes | None, names: SamproNames = SamproNames(),
                         limits: Limits = Limits()) -> tuple[PurchaseOrderChanged, ...]:
    """The changes of the event, none for a tombstone; raises SamproRecordError for what is not a
    change event of a PO table."""
    if value is None:
        return ()
    try:
        envelope = load_json(value, limits, "sampro change record")
    except DataError as exc:
        raise SamproRecordError("value", value[:80], str(exc).removeprefix("sampro change record: ")) from None
    # A Connect whose JSON converter keeps its schemas wraps the envelope; the envelope is the same.
    if isinstance(envelope, dict) and set(envelope) == {"schema", "payload"}:
        envelope = envelope["payload"]
    if not isinstance(envelope, dict):
        raise SamproRecordError("value", envelope, "not a Debezium change event (expected a JSON object)")
    op = envelope.get("op")
    if op not in OPERATIONS:
        raise SamproRecordError("op", op, "not a Debezium change event (expected op c, u, d or r)")
    source = envelope.get("source")
    if not isinstance(source, dict):
        raise SamproRecordError("source", source, "not a Debezium change event (expected a source object)")
    table = _table_of(source, names)
    # A delete's row is in `before` (with PostgreSQL's default replica identity, its key columns only,
    # which hold the PO number); every other change's is in `after`.
    side = "before" if op == "d" else "after"
    row = envelope.get(side)
    if not isinstance(row, dict):
        raise SamproRecordError(side, row, f"the changed row is missing from a change with op {op!r}")
    column = names.column(table, "po_number")
    po_number = _po_number(row, f"{side}.{column}", column, limits)
    changed_at, transaction = _changed_at(envelope, source, table, names), _transaction(op, source)
    pos = [po_number]
    # A line moved to another PO (corrected off the wrong one, or a surrogate-keyed line table): the
    # PO it left changed too, and an invoice held there for that line was never judged again.
    # A PO number it left that cannot key a stream (blank, a CHAR of blanks) is passed over, saying
    # so, as the SQL poller passes it: failing the whole event, the PO it went to was not judged again.
    if op == "u" and isinstance(before := envelope.get("before"), dict) and _column(before, column) is not None:
        try:
            left = _po_number(before, f"before.{column}", column, limits)
        except SamproRecordError as unusable:
            log.warning("Sampro moved a %s row off a PO whose number cannot key a stream (%s); passed over",
                        table, unusable)
        else:
            if left != po_number:
                pos.append(left)
    return tuple(PurchaseOrderChanged(event_id=change_id(po, changed_at, transaction), po_number=po,
                                      changed_at=changed_at) for po in pos)


def _po_number(row: dict[str, Any], field: str, column: str, limits: Limits) -> str:
    po_number = padless(_column(row, column))  # a CHAR column comes back padded with blanks, as the reader's does
    if (problem := stream_key_problem(po_number, limits)) is not None:
        raise SamproRecordError(field, po_number, problem)
    return str(po_number)  # a key: text
