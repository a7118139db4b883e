"""Shared by the API's integration and browser tests: sign-in settings and sample invoices whose
ids are unique to one test, loaded into the Sampro stand-in of the e2e `pipeline` fixture."""

from __future__ import annotations

import json
import secrets
from decimal import Decimal
from pathlib import Path

from pydantic import SecretStr

from api.auth import hash_password
from rules.models import PurchaseOrder
from streams.settings import ApiUser, Settings

SAMPLES = Path(__file__).resolve().parents[1] / "samples"
TOKEN = secrets.token_hex(32)
CLERK, VIEWER, PASSWORD = "ana", "victor", "correct horse"
_HASH = hash_password(PASSWORD)


def with_api(settings: Settings) -> Settings:
    """The pipeline's settings plus a token for the RPA bot, a clerk and a viewer."""
    return settings.model_copy(update={
        "api_token": SecretStr(TOKEN), "api_session_secret": SecretStr(secrets.token_hex(32)),
        "api_sessions_db_url": f"sqlite:///{settings.data_dir}/api-sessions.db",
        "api_users": [ApiUser(name=CLERK, password_hash=_HASH, role="clerk"),
                      ApiUser(name=VIEWER, password_hash=_HASH, role="viewer")]})


def load_sample(pipeline, case: str, prefix: str) -> dict:
    """The invoice of samples/<case>* with ids made unique; its PO (if any) goes into Sampro."""
    folder = next(SAMPLES.glob(f"{case}*"))
    invoice = json.loads((folder / "invoice.json").read_text(), parse_float=Decimal)
    invoice["invoice_id"] = f"{prefix}-{invoice['invoice_id']}"
    invoice["po_number"] = f"{prefix}-{invoice['po_number']}"
    if (folder / "po.json").exists():
        po = json.loads((folder / "po.json").read_text(), parse_float=Decimal)
        pipeline.sampro.load_purchase_orders([PurchaseOrder.model_validate({**po, "po_number": invoice["po_number"]})])
    return invoice
