"""The pieces both composition roots build from settings: the worker's (streams/bootstrap.py) and
the API's (api/bootstrap.py). Each is made when called, from the settings it is given, never at
import time; what only one side needs stays in its own root.
"""

from __future__ import annotations

from connectors.ports import PurchaseOrderReader
from connectors.sql import engine_for
from rules.limits import Limits
from rules.policy import Policy, load_policy
from schemas.codec import Codec, codec_for
from streams.settings import Settings


def policy_from(settings: Settings) -> Policy:
    """The tolerances file when one is set, else the exact matching AP uses today."""
    return load_policy(settings.tolerances_file) if settings.tolerances_file else Policy()


def limits_from(settings: Settings) -> Limits:
    """What an invoice may hold: the worker judges with it, and the API's dry run the same way. Its
    JSON grows with the lines allowed: kept at 256,000 bytes, past about 1,900 lines the lines
    column could not be read, whatever MAX_INVOICE_LINES said."""
    return Limits(max_lines=settings.max_invoice_lines,
                  max_json_bytes=max(Limits().max_json_bytes, settings.max_invoice_lines * JSON_BYTES_PER_LINE))


JSON_BYTES_PER_LINE = 256  # as the default 256,000 bytes for 1,000 lines: four times a typical line


def purchase_order_reader(settings: Settings) -> PurchaseOrderReader:
    """Sampro, read side: PO snapshots and the invoices already entered (the API's dry run reads both)."""
    from connectors.sampro import SqlPurchaseOrderReader

    engine = engine_for(settings.sampro_db_url, lock_wait_seconds=settings.sampro_lock_wait_seconds)
    return SqlPurchaseOrderReader(engine, settings.sampro_names)


def codec_from(settings: Settings) -> Codec:
    """The wire format of every topic: the worker reads and writes it, the API writes PO commands."""
    return codec_for(settings.schema_registry_url, settings.schema_registry_subject)
