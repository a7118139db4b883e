"""The API on in-memory adapters: processscheduler rows recorded as the pipeline records them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import hash_password
from api.server import ThreadedServer
from connectors.pipeline_lag import InMemoryPipelineLag
from connectors.po_commands import InMemoryPurchaseOrderCommands
from connectors.rpa_mail import InMemorySentLog
from connectors.sampro import InMemoryPurchaseOrderReader
from connectors.scheduler import InMemoryProcessScheduler
from connectors.scheduler.read_model_memory import InMemoryInvoiceReadModel
from connectors.session_versions import InMemorySessionVersions
from devstack.process import free_port
from rules.lifecycle import InvoiceStatus, StatusChanged
from rules.models import PurchaseOrder
from streams.settings import Settings
from tests.unit.rules.builders import INVOICE, PO, invoice, judge

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
TOKEN = "rpa-bot-token-4f7c2a9e1b3d8f60c5a7e2b9d1f4a6c3"
SESSION_SECRET = "session-secret-9c1e4b7a2f5d8e3b6a0c9f2e5d8b1a4c"
PASSWORD = "correct horse"
PRICE_OFF = [{**INVOICE["lines"][0], "unit_price": "16.00", "amount": "32.00"}, INVOICE["lines"][1]]


def change(invoice_id: str, status: InvoiceStatus, cause: str, minutes: int = 0, version: int = 1,
           **extra) -> StatusChanged:
    return StatusChanged(event_id=f"{invoice_id}:v{version}:{status.value}:{cause}", invoice_id=invoice_id,
                         invoice_version=version, po_number="PO-5001", status=status,
                         occurred_at=NOW - timedelta(minutes=minutes), **extra)


def verdict(document: dict, minutes: int = 0):
    return judge(document).model_copy(update={"evaluated_at": NOW - timedelta(minutes=minutes)})


def freight(cents: int) -> dict:
    """The builders' invoice with its freight (and so its total) a few cents up: each seeded invoice
    has a total of its own, so that none looks like a duplicate of another (rules.duplicates)."""
    amount = Decimal("10.00") + Decimal(cents) / 100
    return {"extra_charges": [{"kind": "freight", "amount": amount}], "total_amount": Decimal("57.25") + amount - 10}


def seed(scheduler: InMemoryProcessScheduler) -> None:
    """MP-1 at the RPA bot, MP-2 bad, MP-3 manual review, MP-4 entered, MP-5 ready (approval mode)."""
    scheduler.record([
        verdict(invoice(invoice_id="MP-1", invoice_number="INV-1", **freight(1)), minutes=30),
        change("MP-1", InvoiceStatus.SENT_TO_RPA, "verdict", minutes=30),
        verdict(invoice(invoice_id="MP-2", invoice_number="INV-2", total_amount="1.00"), minutes=20),
        verdict(invoice(invoice_id="MP-3", invoice_number="INV-3", lines=PRICE_OFF, tax_amount="3.58",
                        extra_charges=[{"kind": "freight", "amount": "10.03"}], total_amount="58.36"), minutes=10),
        verdict(invoice(invoice_id="MP-4", invoice_number="INV-4", **freight(4)), minutes=5),
        change("MP-4", InvoiceStatus.SENT_TO_RPA, "verdict", minutes=5),
        change("MP-4", InvoiceStatus.ENTERED, "rpa:MP-4:v1:attempt1", minutes=2, sampro_invoice_id="S-4"),
        verdict(invoice(invoice_id="MP-5", invoice_number="INV-5", **freight(5)), minutes=1),
    ])


@dataclass
class Api:
    client: TestClient
    scheduler: InMemoryProcessScheduler
    read_model: InMemoryInvoiceReadModel
    commands: InMemoryPurchaseOrderCommands
    lag: InMemoryPipelineLag
    sent_log: InMemorySentLog
    settings: Settings
    sessions: InMemorySessionVersions

    @property
    def context(self):
        return self.client.app.state.context

    def as_clerk(self) -> dict:
        return {"auth": ("ana", PASSWORD)}

    def as_viewer(self) -> dict:
        return {"auth": ("victor", PASSWORD)}

    def as_bot(self) -> dict:
        return {"headers": {"Authorization": f"Bearer {TOKEN}"}}


def api_settings(**overrides) -> Settings:
    """The unit tests' settings: the status is never cached unless a test asks for it."""
    return Settings(**{"_env_file": None, "api_token": TOKEN, "api_session_secret": SESSION_SECRET,
                       "api_status_cache_seconds": 0, "api_users": [
                           {"name": "ana", "password_hash": HASH, "role": "clerk"},
                           {"name": "victor", "password_hash": HASH, "role": "viewer"}], **overrides})


def make_api(client_address: tuple[str, int] = ("testclient", 50000), sessions: InMemorySessionVersions | None = None,
             read_model=None, commands=None, lag=None, **settings_overrides) -> Api:
    """The API on in-memory adapters; `read_model`, `commands` or `lag` replace one of them."""
    scheduler = InMemoryProcessScheduler()
    seed(scheduler)
    settings = api_settings(**settings_overrides)
    read_model = read_model or InMemoryInvoiceReadModel(scheduler)
    commands, lag = commands or InMemoryPurchaseOrderCommands(), lag or InMemoryPipelineLag()
    sent_log, sessions = InMemorySentLog(), sessions or InMemorySessionVersions()
    app = create_app(settings, read_model=read_model, commands=commands, scheduler=scheduler, lag=lag,
                     sent_log=sent_log, sessions=sessions,
                     purchase_orders=InMemoryPurchaseOrderReader([PurchaseOrder.model_validate(PO)]),
                     clock=lambda: NOW)
    return Api(TestClient(app, client=client_address), scheduler, read_model, commands, lag, sent_log, settings,
               sessions)


HASH = hash_password(PASSWORD)


@contextmanager
def served(api: Api) -> Iterator[str]:
    """The same app over real HTTP (uvicorn on a thread): its base URL."""
    server = ThreadedServer(api.client.app, port=free_port()).start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def api() -> Api:
    return make_api()
