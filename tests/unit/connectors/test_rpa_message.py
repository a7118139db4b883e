"""The RPA email's headers carry no vendor text as sent: a CR/LF there would start a header of the
vendor's choosing (Bcc: ...). The payload in the body keeps the exact values."""

from __future__ import annotations

import email
import email.policy
import json
import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from connectors.rpa_mail import build_message
from connectors.rpa_mail.message import message_id
from rules.lifecycle import RpaRequest
from rules.models import RpaPayload, RpaPayloadLine


def _payload(number: str) -> RpaPayload:
    return RpaPayload(invoice_id="MP-1", invoice_version=1, vendor_id="V\n1", invoice_number=number,
                      invoice_date="2026-11-20", po_number="PO-1", currency="USD",
                      lines=[RpaPayloadLine(invoice_line_no=1, po_line_no=1, part_number="P", quantity=Decimal(1),
                                            unit_price=Decimal(1), amount=Decimal(1))],
                      tax_amount=Decimal(0), total_amount=Decimal(1))


def test_vendor_text_is_made_safe_in_every_header_and_kept_exact_in_the_body():
    number = "INV-1\r\nBcc: thief@example.com"
    request = RpaRequest(invoice_id="MP-1", invoice_version=1, po_number="PO-1", payload=_payload(number),
                         requested_at=datetime(2026, 11, 25, tzinfo=UTC))
    sent = email.message_from_bytes(build_message(request, "ia@test", "rpa@test"), policy=email.policy.default)
    assert sent["Bcc"] is None and sent["To"] == "rpa@test"
    assert sent["Subject"] == "Enter invoice INV-1__Bcc__thief_example.com from vendor V_1 on PO PO-1"
    assert json.loads(sent.get_body(("plain",)).get_content())["invoice_number"] == number
    assert sent.defects == [] and all(part.defects == [] for part in sent.walk())


def test_an_address_that_is_not_one_ascii_line_is_refused_by_name():
    request = RpaRequest(invoice_id="MP-1", invoice_version=1, po_number="PO-1", payload=_payload("INV-1"),
                         requested_at=datetime(2026, 11, 25, tzinfo=UTC))
    with pytest.raises(ValueError, match=re.escape(r"RPA_MAIL_TO 'rpa@test\r\nBcc: x@y'")):
        build_message(request, "ia@test", "rpa@test\r\nBcc: x@y")


def test_each_invoice_has_a_message_id_of_its_own_and_a_plain_id_keeps_the_one_it_had():
    """A mailbox that drops copies by Message-ID must not take one invoice for a copy of another."""
    ids = [message_id(invoice_id, 1) for invoice_id in ("A/1", "A_1", "A?1", "A 1", "A_1" + "x" * 70, "A_1" + "x" * 71)]
    assert len(set(ids)) == len(ids)
    assert message_id("MP-1.a_b", 2, attempt=3) == "<invoice-MP-1.a_b-v2-a3@invoice-automation>"
    assert all(re.fullmatch(r"<invoice-[A-Za-z0-9._-]+-v1@invoice-automation>", mid) for mid in ids)
