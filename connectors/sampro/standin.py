"""The Sampro stand-in for the demo and tests: load POs, and enter an invoice as the RPA bot does."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy import Engine, delete, insert, select, update

from connectors.sampro.tables import SamproNames, sampro_tables
from rules.models import PurchaseOrder


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
        po_line, ap_invoice = self.tables.po_line, self.tables.ap_invoice
        with self.engine.begin() as conn:
            entered = ap_invoice.c.sampro_invoice_id == sampro_invoice_id
            if conn.execute(select(ap_invoice.c.sampro_invoice_id).where(entered)).first():
                return False
            now = datetime.now(UTC)
            conn.execute(insert(ap_invoice).values(
                sampro_invoice_id=sampro_invoice_id, vendor_id=vendor_id, invoice_number=invoice_number,
                po_number=po_number, invoice_date=invoice_date, total_amount=total_amount, entered_at=now))
            for line_no, quantity in lines:
                conn.execute(update(po_line).where(po_line.c.po_number == po_number, po_line.c.line_no == line_no)
                             .values(quantity_invoiced=po_line.c.quantity_invoiced + quantity, updated_at=now))
        return True
