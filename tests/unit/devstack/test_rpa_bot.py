"""The stand-in RPA bot enters only the emails the worker signed, when it holds the signing key: the
email carried nothing to check, and anyone who could mail the bot's mailbox had an invoice entered."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, select

from connectors.rpa_mail import build_message
from connectors.sampro.standin import SamproStandIn
from devstack.mailbox import Mailbox
from devstack.rpa_bot import RpaBot
from rules.lifecycle import RpaRequest
from rules.models import PurchaseOrder
from tests.unit.rules.builders import INVOICE, invoice, judge, po

KEY = b"0123456789abcdef0123456789abcdef"


class Reports:
    """The completions the bot would produce to Kafka."""

    def __init__(self) -> None:
        self.invoices: list[str] = []

    def produce(self, topic, key, value) -> None:
        self.invoices.append(key.decode())

    def poll(self, timeout) -> None:
        pass

    def flush(self, timeout) -> None:
        pass


def _email(invoice_id: str, key: bytes | None) -> bytes:
    payload = judge(invoice(invoice_id=invoice_id, invoice_number=f"INV-{invoice_id}")).rpa_payload
    return build_message(RpaRequest(invoice_id=invoice_id, invoice_version=1, po_number=INVOICE["po_number"],
                                    payload=payload, requested_at=datetime(2026, 11, 25, tzinfo=UTC)),
                         "invoice-automation@localhost", "rpa-bot@localhost", key)


@pytest.fixture
def sampro(tmp_path) -> SamproStandIn:
    standin = SamproStandIn(create_engine(f"sqlite:///{tmp_path / 'sampro.db'}"))
    standin.create_schema()
    standin.load_purchase_orders([PurchaseOrder.model_validate(po())])
    return standin


def _bot(sampro: SamproStandIn, key: bytes | None) -> RpaBot:
    bot = RpaBot(Mailbox(), sampro, "127.0.0.1:1", "rpa.completions", signing_key=key)
    bot.producer = Reports()
    return bot


def _entered(sampro: SamproStandIn) -> list[str]:
    with sampro.engine.connect() as conn:
        return sorted(conn.execute(select(sampro.tables.ap_invoice.c.invoice_number)).scalars())


def test_with_the_key_only_the_emails_the_worker_signed_are_entered_and_reported(sampro, caplog):
    bot = _bot(sampro, KEY)
    forged, wrong_key = _email("MP-666", None), _email("MP-667", b"x" * 32)
    garbage = b"X-Invoice-Signature: sha256=00\r\nContent-Type: text/plain\r\n\r\n{not json\r\n"
    with caplog.at_level(logging.WARNING, logger="devstack.rpa_bot"):
        bot._enter([forged, wrong_key, garbage, _email("MP-1", KEY)])
    assert _entered(sampro) == ["INV-MP-1"] and bot.entered == ["MP-1"] and bot.producer.invoices == ["PO-5001"]
    assert [record.getMessage().split(": ", 1)[1] for record in caplog.records] == [
        "no X-Invoice-Signature", "its X-Invoice-Signature is not the pipeline's",
        "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"]


def test_without_the_key_the_bot_enters_what_it_is_sent_as_before(sampro):
    bot = _bot(sampro, None)
    bot._enter([_email("MP-1", None), _email("MP-2", KEY)])
    assert _entered(sampro) == ["INV-MP-1", "INV-MP-2"]
