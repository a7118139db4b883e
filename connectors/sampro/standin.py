"""The Sampro stand-in for the demo and tests: load POs, and enter an invoice as the RPA bot does."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy import Engine, bindparam, delete, insert, select, update

from connectors.sampro.tables import SamproNames, sampro_tables
from rules.models import PurchaseOrder


@dataclass(frozen=True, slots=True)
class EnteredInvoice:
    """An invoice as the RPA bot keys it into Sampro: the header and (PO line, quantity) per line."""

    sampro_invoice_id: str
    vendor_id: str
    invoice_number: str
    po_number: str
    invoice_date: date | None
    total_amount: Decimal | None
    lines: tuple[tuple[int, Decimal], ...]


class SamproStandIn:
    def __init__(self, engine: Engine, names: SamproNames = SamproNames()):
        self.engine = engine
        self.tables = sampro_tables(names)

    def create_schema(self) -> None:
        self.tables.metadata.create_all(self.engine)

    def load_purchase_orders(self, purchase_orders: Iterable[PurchaseOrder]) -> None:
        """Replaces these POs (header and lines) with the given snapshots, as changed now."""
        header, po_line = self.tables.po_header, self.tables.po_line
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            for po in purchase_orders:
                conn.execute(delete(po_line).where(po_line.c.po_number == po.po_number))
                conn.execute(delete(header).where(header.c.po_number == po.po_number))
                conn.execute(insert(header).values(
                    po_number=po.po_number, vendor_id=po.vendor_id, status=po.status.value, currency=po.currency,
                    order_date=po.order_date, tax_rate=po.tax_rate, allowed_charges=",".join(po.allowed_charges),
                    updated_at=now))
                if po.lines:
                    conn.execute(insert(po_line), [{"po_number": po.po_number, **line.model_dump(), "updated_at": now}
                                                   for line in po.lines])

    def add_purchase_orders(self, purchase_orders: Iterable[PurchaseOrder]) -> None:
        """Adds POs that are not there yet, all in two statements (a benchmark's 200,000)."""
        header, po_line = self.tables.po_header, self.tables.po_line
        now, pos = datetime.now(UTC), list(purchase_orders)
        with self.engine.begin() as conn:
            conn.execute(insert(header), [{
                "po_number": po.po_number, "vendor_id": po.vendor_id, "status": po.status.value,
                "currency": po.currency, "order_date": po.order_date, "tax_rate": po.tax_rate,
                "allowed_charges": ",".join(po.allowed_charges), "updated_at": now} for po in pos])
            conn.execute(insert(po_line), [{"po_number": po.po_number, **line.model_dump(), "updated_at": now}
                                           for po in pos for line in po.lines])

    def enter_invoice(
        self, *, sampro_invoice_id: str, vendor_id: str, invoice_number: str, po_number: str,
        invoice_date: date | None, total_amount: Decimal | None, lines: Iterable[tuple[int, Decimal]],
    ) -> bool:
        """What the RPA bot does in Sampro; entering the same Sampro invoice twice counts once."""
        return self.enter_invoices([EnteredInvoice(sampro_invoice_id, vendor_id, invoice_number, po_number,
                                                   invoice_date, total_amount, tuple(lines))])[0]

    def enter_invoices(self, invoices: Sequence[EnteredInvoice]) -> list[bool]:
        """Several at once, in one transaction of three statements (the stand-in bot's mailbox
        read): whether each was entered now, False for one entered before or earlier in the list."""
        if not invoices:
            return []
        po_line, ap_invoice = self.tables.po_line, self.tables.ap_invoice
        now = datetime.now(UTC)
        with self.engine.begin() as conn:
            ids = {entry.sampro_invoice_id for entry in invoices}
            seen = set(conn.execute(select(ap_invoice.c.sampro_invoice_id)
                                    .where(ap_invoice.c.sampro_invoice_id.in_(ids))).scalars())
            fresh = []
            for entry in invoices:
                fresh.append(entry.sampro_invoice_id not in seen)
                seen.add(entry.sampro_invoice_id)
            new = [entry for entry, is_fresh in zip(invoices, fresh, strict=True) if is_fresh]
            if not new:
                return fresh
            conn.execute(insert(ap_invoice), [
                {"sampro_invoice_id": e.sampro_invoice_id, "vendor_id": e.vendor_id, "invoice_number": e.invoice_number,
                 "po_number": e.po_number, "invoice_date": e.invoice_date, "total_amount": e.total_amount,
                 "entered_at": now} for e in new])
            invoiced = [{"at_po": e.po_number, "at_line": line_no, "more": quantity}
                        for e in new for line_no, quantity in e.lines]
            if invoiced:
                more = po_line.c.quantity_invoiced + bindparam("more", type_=po_line.c.quantity_invoiced.type)
                on_line = (po_line.c.po_number == bindparam("at_po")) & (po_line.c.line_no == bindparam("at_line"))
                conn.execute(update(po_line).where(on_line).values(quantity_invoiced=more, updated_at=now), invoiced)
        return fresh
