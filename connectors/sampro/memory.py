"""A dict-backed Sampro for unit tests and dry runs."""

from __future__ import annotations

from collections.abc import Collection, Iterable

from connectors.ports import PurchaseOrderReader
from rules.context import KnownInvoice
from rules.duplicates import Lookup, matches_lookup
from rules.models import PurchaseOrder, UnreadablePurchaseOrder


class InMemoryPurchaseOrderReader(PurchaseOrderReader):
    def __init__(self, purchase_orders: Iterable[PurchaseOrder | UnreadablePurchaseOrder] = (),
                 entered: Iterable[KnownInvoice] = ()):
        self.purchase_orders = {po.po_number: po for po in purchase_orders}
        self.entered = list(entered)
        self.asked: set[str] = set()  # every PO a fetch asked for

    def fetch(self, po_numbers: Collection[str]) -> dict[str, PurchaseOrder | UnreadablePurchaseOrder]:
        self.asked.update(po_numbers)
        return {n: self.purchase_orders[n] for n in po_numbers if n in self.purchase_orders}

    def entered_invoices(self, lookups: Collection[Lookup]) -> list[KnownInvoice]:
        return [known for known in self.entered if matches_lookup(known, lookups)]
