"""Sampro ERP, read side (PO snapshots, entered invoices), and the stand-in used by tests and the demo."""

from connectors.sampro.memory import InMemoryPurchaseOrderReader
from connectors.sampro.reader import SamproDataError, SqlPurchaseOrderReader
from connectors.sampro.tables import SamproNames, sampro_tables

__all__ = ["InMemoryPurchaseOrderReader", "SamproDataError", "SamproNames", "SqlPurchaseOrderReader", "sampro_tables"]
