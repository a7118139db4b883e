"""PO snapshots and entered invoices from Sampro, one round trip per batch of POs."""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterator, Mapping
from typing import Any, TypeVar

from pydantic import ValidationError
from sqlalchemy import ColumnElement, Connection, Dialect, Engine, Select, and_, func, literal, or_, select

from connectors.ports import PurchaseOrderReader
from connectors.sampro.tables import SamproNames, folded, sampro_tables
from connectors.sql import among, exact, mapped_errors, same_total
from rules.context import KnownInvoice
from rules.duplicates import Lookup, matches_lookup
from rules.errors import DataError
from rules.identifiers import identifier_key
from rules.limits import purchase_order_problem
from rules.models import POStatus, PurchaseOrder, UnreadablePurchaseOrder

T = TypeVar("T")
log = logging.getLogger(__name__)

CHUNK = 1000  # SQL Server allows 2100 parameters per statement
# At most 23 parameters a lookup: 8 spellings of its vendor and 8 of its number (the IN lists an
# index serves), on SQL Server 2 more of each (for a value keyed in after a blank), a total, and
# its window's two dates; and 8 a statement. 80 lookups: 1,848 at most.
LOOKUPS_A_STATEMENT = 80


class SamproDataError(DataError):
    """A Sampro row the pipeline cannot turn into a PO snapshot; names the PO, column and value."""


# What a row that makes no snapshot raises, whether read or turned into one: SamproDataError; a
# NaN compared (InvalidOperation is an ArithmeticError); a column of another type than the view
# promised; a value the driver cannot convert (SQLAlchemy's result processors raise ValueError for a
# date of '', the driver's refusal, SQLSTATE 22xxx, is mapped to a DataError).
UNREADABLE_ROW = (DataError, ArithmeticError, TypeError, ValueError)


def padless(value: Any) -> Any:
    """A CHAR column's value without the blanks SQL Server and PostgreSQL pad it with: the PO as
    the invoice names it. Their `=` and `IN` already ignore trailing blanks, so the statements find
    the rows, and no view with RTRIM (which no index serves) is needed."""
    return value.rstrip(" ") if isinstance(value, str) else value


def _chunks(items: list[T], size: int = CHUNK) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _po_chunks(po_numbers: Collection[str]) -> Iterator[list[str]]:
    """The PO numbers of a batch, one statement's worth at a time, in order."""
    return _chunks(sorted(set(po_numbers)))


def _status(po_number: str, value: str | None) -> POStatus:
    try:
        return POStatus(value.strip().lower() if isinstance(value, str) else str(value))
    except ValueError:
        raise SamproDataError(f"PO {po_number}: status {value!r} is not one of {[s.value for s in POStatus]}") from None


def _line(row: Any) -> dict[str, Any]:
    """A PO line as its view gives it."""
    if row["line_no"] is None:  # the outer join gives a PO without lines one row of NULLs: this one has more
        raise SamproDataError(f"PO {padless(row['po_number'])}: a line of part {row['part_number']!r:.80} has no "
                              "line_no")
    if row["quantity_invoiced"] is None:  # read as 0, the line looked wholly open and was invoiced again
        raise SamproDataError(f"PO {padless(row['po_number'])}: line {row['line_no']}: quantity_invoiced is NULL: "
                              "what is still open on it cannot be told")
    # A NULL quantity_received is a line that tracks no receipts (DESIGN.md), read as None.
    return {"line_no": row["line_no"], "part_number": _named(row, "part_number"),
            "unit_price": exact(row["unit_price"]),
            "quantity_ordered": exact(row["quantity_ordered"]), "quantity_received": exact(row["quantity_received"]),
            "quantity_invoiced": exact(row["quantity_invoiced"])}


def _named(row: Any, column: str) -> Any:
    """An identifier without a CHAR column's padding ('USD  ' in a CHAR(5) made every PO unreadable),
    and never blank: a PO of vendor '   ' held its invoices as VENDOR_MISMATCH, blaming the vendor."""
    value = padless(row[column])
    if isinstance(value, str) and not value.strip():
        raise SamproDataError(f"PO {padless(row['po_number'])}: {column} is blank ({value!r})")
    return value


LINE_COLUMNS = ("line_no", "part_number", "unit_price", "quantity_ordered", "quantity_received", "quantity_invoiced")


def _fields(rows: list[Any]) -> dict[str, Any]:
    """A PO's header (in each of its rows, taken once) and its lines, as the model reads them."""
    header, number = rows[0], padless(rows[0]["po_number"])
    return {
        "po_number": number, "vendor_id": _named(header, "vendor_id"),
        "status": _status(number, header["status"]), "currency": _named(header, "currency"),
        "order_date": header["order_date"], "tax_rate": exact(header["tax_rate"]),
        "allowed_charges": [c.strip() for c in (header["allowed_charges"] or "").split(",") if c.strip()],
        "lines": [_line(row) for row in rows if any(row[column] is not None for column in LINE_COLUMNS)],
    }


def _snapshot(po_number: str, fields: dict[str, Any]) -> PurchaseOrder:
    """The PO as the rules read it, checked here, where Sampro's rows come in, and not in the model,
    which also reads the PO snapshots of verdicts made before."""
    try:
        po = PurchaseOrder.model_validate(fields)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in error["loc"])
        raise SamproDataError(f"PO {po_number}: {where}: {error['msg']} (value {error.get('input')!r:.80})") from None
    if (problem := purchase_order_problem(po)) is not None:
        raise SamproDataError(f"PO {po_number}: {problem}")
    return po


class SqlPurchaseOrderReader(PurchaseOrderReader):
    def __init__(self, engine: Engine, names: SamproNames = SamproNames()):
        self.engine = engine
        self.tables = sampro_tables(names)

    def purchase_order_queries(self, po_numbers: Collection[str]) -> Iterator[Select[Any]]:
        """The statements `fetch` runs: one per chunk of PO numbers, headers outer-joined to their lines."""
        return (self._purchase_order_query(chunk) for chunk in _po_chunks(po_numbers))

    def _rows(self, conn: Connection, po_numbers: list[str]) -> list[Any]:
        with mapped_errors("sampro"):
            return list(conn.execute(self._purchase_order_query(po_numbers)).mappings().all())  # one driver call

    def _purchase_order_query(self, chunk: list[str]) -> Select[Any]:
        header, line = self.tables.po_header, self.tables.po_line
        return (
            select(header.c.po_number, header.c.vendor_id, header.c.status, header.c.currency,
                   header.c.order_date, header.c.tax_rate, header.c.allowed_charges,
                   line.c.line_no, line.c.part_number, line.c.unit_price, line.c.quantity_ordered,
                   line.c.quantity_received, line.c.quantity_invoiced)
            .select_from(header.outerjoin(line, line.c.po_number == header.c.po_number))
            .where(among(header.c.po_number, chunk, self.engine.dialect))
            .order_by(header.c.po_number, line.c.line_no)
        )

    def entered_invoice_queries(self, lookups: Collection[Lookup]) -> Iterator[Select[Any]]:
        """The statements `entered_invoices` runs: one per chunk of lookups."""
        return (query for _, query in self._entered_invoice_queries(lookups))

    def _entered_invoice_queries(self, lookups: Collection[Lookup]) -> Iterator[tuple[list[Lookup], Select[Any]]]:
        """Sampro's columns hold the values as keyed in, so the lookup compares them trimmed and in
        upper case (`folded`, which the two indexes of tables.py serve), and asks for the totals; the
        duplicate checks then compare exactly. A loose number (`INV42` for `INV-0042`) is found
        here only when the total matches too, dated within the window: an index cannot find it
        otherwise. IN lists, not an OR per lookup: one index range scan, and SQL Server has no row IN."""
        wanted = sorted(set(lookups), key=lambda lookup: (lookup.vendor_key, lookup.number_key))
        for chunk in _chunks(wanted, LOOKUPS_A_STATEMENT):
            yield chunk, self._entered_invoice_query(chunk)

    def _entered_invoice_query(self, lookups: list[Lookup]) -> Select[Any]:
        invoice = self.tables.ap_invoice
        return (select(invoice.c.sampro_invoice_id, invoice.c.vendor_id, invoice.c.invoice_number,
                       invoice.c.total_amount, invoice.c.invoice_date)
                .where(*self._candidates(lookups, by_total=True)))

    def _candidates(self, lookups: list[Lookup], by_total: bool) -> list[ColumnElement[bool]]:
        """Where the AP invoices that may be the lookups' are: the vendor's, of the number or the total."""
        invoice, dialect = self.tables.ap_invoice, self.engine.dialect
        keyed_like = _keyed_in_like if dialect.name == "mssql" else _folded_like
        vendors = {sent for lookup in lookups for sent in _as_read(lookup.vendor_id)}
        numbers = {sent for lookup in lookups for sent in _as_read(lookup.invoice_number)}
        by_vendor = keyed_like(invoice.c.vendor_id, vendors, dialect)
        by_number = keyed_like(invoice.c.invoice_number, numbers, dialect)
        if not by_total:
            return [by_vendor, by_number]
        # The totals dated within the lookups' windows: from all time, each invoice of a flat-fee
        # vendor read every AP invoice of it ever entered.
        dated = same_total(invoice.c.total_amount, invoice.c.invoice_date, lookups, dialect)
        return [by_vendor, or_(by_number, *dated)]

    def fetch(self, po_numbers: Collection[str]) -> dict[str, PurchaseOrder | UnreadablePurchaseOrder]:
        if not po_numbers:
            return {}
        rows: list[Any] = []
        found: dict[str, PurchaseOrder | UnreadablePurchaseOrder] = {}
        with mapped_errors("sampro"), self.engine.connect() as conn:
            for chunk in _po_chunks(po_numbers):
                try:
                    rows += self._rows(conn, chunk)
                except UNREADABLE_ROW:
                    conn.rollback()  # PostgreSQL takes no statement after a failed one in its transaction
                    # A value the driver could not convert ('' or 20261101 in a date column) failed
                    # the whole statement, and every invoice of the batch was dead-lettered as
                    # bad_invoice, which no clerk may release: read PO by PO, that PO is unreadable.
                    for number in chunk:
                        try:
                            rows += self._rows(conn, [number])
                        except UNREADABLE_ROW as error:
                            conn.rollback()
                            found[number] = UnreadablePurchaseOrder(
                                po_number=number, problem=f"PO {number}: Sampro's row could not be read: "
                                                          f"{type(error).__name__}: {error}"[:500])
        by_po: dict[str, list[Any]] = {}
        for row in rows:
            by_po.setdefault(padless(row["po_number"]), []).append(row)
        # One PO's bad row makes that PO unreadable, not the batch: the batch's other POs are judged.
        for number, po_rows in by_po.items():
            try:
                found[number] = _snapshot(number, _fields(po_rows))
            except UNREADABLE_ROW as error:
                problem = str(error) if isinstance(error, SamproDataError) else f"{type(error).__name__}: {error}"
                found[number] = UnreadablePurchaseOrder(po_number=number, problem=problem[:500])
        return found

    def entered_invoices(self, lookups: Collection[Lookup]) -> list[KnownInvoice]:
        if not lookups:
            return []
        found = []
        with mapped_errors("sampro"), self.engine.connect() as conn:
            for chunk, query in self._entered_invoice_queries(lookups):
                try:
                    known = [_known_invoice(row._mapping) for row in _read(conn, query)]
                except UNREADABLE_ROW:
                    conn.rollback()  # PostgreSQL takes no statement after a failed one in its transaction
                    # One AP invoice the driver could not convert (a date of '2020-13-45', a view's
                    # CAST) failed the whole statement: each invoice of the batch was dead-lettered
                    # as bad_invoice, which no clerk may release, and a Sampro change that would clear
                    # a held one was dead-lettered. Read lookup by lookup, then row by row, that row
                    # is compared without what cannot be read, or passed over, and logged.
                    by_id = {invoice.invoice_id: invoice for lookup in chunk
                             for invoice in self._entered_invoices_of(conn, lookup)}
                    known = list(by_id.values())
                # The IN lists also match crossed pairs.
                found += [invoice for invoice in known if matches_lookup(invoice, chunk)]
        return found

    def _entered_invoices_of(self, conn: Connection, lookup: Lookup) -> list[KnownInvoice]:
        try:
            return [_known_invoice(row._mapping) for row in _read(conn, self._entered_invoice_query([lookup]))]
        except UNREADABLE_ROW:
            conn.rollback()
        key, table = self.tables.ap_invoice.c.sampro_invoice_id, self.tables.ap_invoice.name
        named = f"vendor {lookup.vendor_id!r:.80} invoice {lookup.invoice_number!r:.80}"
        try:
            keys = _read(conn, select(key).where(*self._candidates([lookup], by_total=True)))
        except UNREADABLE_ROW as by_total:  # comparing a total failed (a view's CAST)? Found by number only
            conn.rollback()
            try:
                keys = _read(conn, select(key).where(*self._candidates([lookup], by_total=False)))
            except UNREADABLE_ROW as error:  # gone without them, a resend of one of them was paid twice
                raise _cannot_check(table, named, error) from None
            log.warning("Sampro's %s: the totals of the AP invoices like %s cannot be compared (%s): the "
                        "same-total duplicate check goes without them", table, named, _why(by_total))
        return [known for (sampro_id,) in keys if (known := self._entered_row(conn, sampro_id)) is not None]

    def _entered_row(self, conn: Connection, sampro_id: Any) -> KnownInvoice | None:
        """One AP invoice, whole, or column by column: its vendor and number are enough for the
        DUPLICATE_INVOICE check, which a resend of an invoice keyed in by hand must not pass."""
        invoice = self.tables.ap_invoice
        this = invoice.c.sampro_invoice_id == sampro_id
        columns = (invoice.c.vendor_id, invoice.c.invoice_number, invoice.c.total_amount, invoice.c.invoice_date)
        try:
            rows = _read(conn, select(invoice.c.sampro_invoice_id, *columns).where(this))
            return _known_invoice(rows[0]._mapping) if rows else None
        except UNREADABLE_ROW:
            conn.rollback()
        values: dict[str, Any] = {"sampro_invoice_id": sampro_id}
        unreadable = []
        for column in columns:
            try:
                rows = _read(conn, select(column).where(this))
                values[column.key] = rows[0][0] if rows else None
            except UNREADABLE_ROW as error:
                conn.rollback()
                values[column.key] = None
                unreadable.append(f"{column.key} ({_why(error)})")
        if values["vendor_id"] is None or (values["invoice_number"] is None and values["total_amount"] is None):
            raise _cannot_check(invoice.name, f"row {sampro_id!r:.80}", "; ".join(unreadable))
        log.warning("Sampro's %s row %r: %s cannot be read: the duplicate checks compare the rest of it",
                    invoice.name, sampro_id, "; ".join(unreadable))
        return _known_invoice(values)


def _cannot_check(table: str, named: str, why: BaseException | str) -> DataError:
    """Fails closed: an AP invoice that may be the one judged, and cannot be read enough to tell,
    keeps the invoice from the RPA bot (dead-lettered, with its bad_invoice verdict)."""
    reason = _why(why) if isinstance(why, BaseException) else why
    return DataError(f"Sampro's {table}: the AP invoices like {named} cannot be read ({reason}): whether this "
                     "invoice is in Sampro already cannot be told")


def _read(conn: Connection, query: Select[Any]) -> list[Any]:
    with mapped_errors("sampro"):  # a value the database refuses to convert (SQLSTATE 22xxx): a DataError
        return list(conn.execute(query))  # the driver's conversions run as the rows are read


def _known_invoice(row: Mapping[str, Any]) -> KnownInvoice:
    # A NULL number (found by its total) still counts for the same-total check.
    return KnownInvoice(f"sampro:{row['sampro_invoice_id']}", row["vendor_id"], row["invoice_number"] or "",
                        "entered", exact(row["total_amount"]), row["invoice_date"])


def _why(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:300]


def _as_read(text: str) -> tuple[str, str]:
    """The text as sent, and as AP reads it: without what shows nothing, NFC-composed, its case
    kept (`identifier_key`), the number a clerk keys in by hand. Asked for as sent alone, a resend
    of INV-4, entered by hand, as `INV-4` and a Hangul filler, a soft hyphen or a zero-width space
    (a cent more freight) was not found, was ready for the RPA bot and paid twice."""
    return text, identifier_key(text, fold_case=False)


def _folded_like(column: ColumnElement[str], sent: set[str], dialect: Dialect) -> ColumnElement[bool]:
    """The values of `column` keyed in like one of `sent`, compared `folded` (PostgreSQL, SQLite)."""
    return among(folded(column), {spelling for text in sent for spelling in _spellings(text)}, dialect)


def _keyed_in_like(column: ColumnElement[str], sent: set[str], dialect: Dialect) -> ColumnElement[bool]:
    """The values of `column` keyed in like one of `sent`, on SQL Server. Compared as they are, under
    Sampro's collation (which ignores trailing blanks, and case as usually installed), which the
    ERP's own indexes serve: folded, no index served the lookup without a computed column added to
    the ERP's table, and each batch read every AP invoice ever entered.

    `=` and IN ignore trailing blanks there, not leading ones: ` INV-778` or vendor ` V100` keyed in
    by hand was not found, and the resend was paid twice. So a value that starts with a space or a
    tab (what hand keying and pasting put there) is also compared without its blanks, in upper case.
    Only those: `LIKE ' %'` is a range of the column's index (the values that start with a space),
    which the server seeks to and filters, where LTRIM over every row of the vendor missed a vendor
    keyed in after a blank, and over the column was a scan of every AP invoice. Tabs become spaces
    first: LTRIM takes off spaces alone before SQL Server 2022."""
    blanks_off = func.upper(func.ltrim(func.replace(column, literal("\t", column.type), literal(" ", column.type))),
                            type_=column.type)
    after_a_blank = and_(or_(column.like(" %"), column.like("\t%")),
                         blanks_off.in_({_upper(text.strip()) for text in sent}))
    return or_(column.in_({spelling for text in sent for spelling in _as_keyed_in(text)}), after_a_blank)


def _as_keyed_in(text: str) -> set[str]:
    """As sent, trimmed, in upper and in lower case: where a SQL Server collation tells case apart,
    the ways AP most often keys a number in."""
    trimmed = text.strip()
    return {text, trimmed, trimmed.upper(), trimmed.lower()}


def _spellings(text: str) -> set[str]:
    """The text as `folded` may make a value keyed in like it: upper case letter by letter, as SQL
    Server's UPPER and PostgreSQL's under libc make it (they keep `ß`, which Python's upper, and
    ICU's, make `SS`); and upper case in its ASCII letters alone, as an UPPER that folds ASCII only
    makes it (SQLite's; PostgreSQL's under the C locale), the others as sent or in lower case:
    `inv-ä1` keyed in is `INV-ä1` there, which no other spelling of a resend as `inv-ä1` or `INV-Ä1`
    was, and it was paid twice."""
    trimmed = text.strip()
    return {trimmed.upper(), _upper(trimmed),
            "".join(letter.upper() if letter.isascii() else letter for letter in trimmed),
            "".join(letter.upper() if letter.isascii() else letter.lower() for letter in trimmed)}


def _upper(text: str) -> str:
    """Upper case letter by letter, as SQL Server's UPPER makes it (`ß` kept, where Python makes `SS`)."""
    return "".join(letter if len(letter.upper()) > 1 else letter.upper() for letter in text)
