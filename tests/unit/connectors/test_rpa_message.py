"""The RPA email's headers carry no vendor text as sent: a CR/LF there would start a header of the
vendor's choosing (Bcc: ...). The payload in the body keeps the exact values. Signed, the email is
one the bot can tell from anyone else's."""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from connectors.rpa_mail import build_message
from connectors.rpa_mail.message import message_id, signature
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


KEY = b"0123456789abcdef0123456789abcdef"


def _readmes_check():
    """The bot writer's check, as the README gives it."""
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    (code,) = [block.removeprefix("python\n") for block in readme.split("```") if "def signed_invoice" in block]
    names: dict = {}
    exec(code, names)  # the README's own example, run as a bot writer would
    return names["signed_invoice"]


def _request(invoice_id: str = "MP-1", attempt: int = 1) -> RpaRequest:
    payload = _payload("INV-1").model_copy(update={"invoice_id": invoice_id})
    return RpaRequest(invoice_id=invoice_id, invoice_version=1, po_number="PO-1", payload=payload,
                      requested_at=datetime(2026, 11, 25, tzinfo=UTC), attempt=attempt)


def test_a_signed_email_passes_the_readmes_check_and_a_forged_or_altered_one_does_not():
    """The email carried nothing the bot could check: anyone who could mail its mailbox had an invoice
    keyed into Sampro."""
    signed_invoice = _readmes_check()
    signed = build_message(_request(), "ia@test", "rpa@test", KEY)
    assert re.search(rb"\r\nX-Invoice-Signature: sha256=[0-9a-f]{64}\r\n", signed)
    assert signed_invoice(signed, KEY)["invoice_id"] == "MP-1"
    assert signed_invoice(signed, KEY.upper()) is None  # another key
    assert signed_invoice(build_message(_request(), "ia@test", "rpa@test"), KEY) is None  # unsigned
    assert signed_invoice(signed.replace(b"X-Invoice-Attempt: 1", b"X-Invoice-Attempt: 2"), KEY) is None
    # another invoice's document under this email's signature
    other = build_message(_request("MP-2"), "ia@test", "rpa@test", KEY)
    swapped = signed.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n" + other.split(b"\r\n\r\n", 1)[1]
    assert signed_invoice(swapped, KEY) is None and signed_invoice(other, KEY)["invoice_id"] == "MP-2"


def test_the_signature_is_over_the_hand_off_and_the_json_bytes_as_the_attachment_carries_them():
    sent = email.message_from_bytes(build_message(_request(attempt=3), "ia@test", "rpa@test", KEY),
                                    policy=email.policy.default)
    body, attachment = [part.get_payload(decode=True) for part in sent.walk() if not part.is_multipart()]
    assert body == attachment and sent["X-Invoice-Attempt"] == "3"
    assert sent["X-Invoice-Signature"] == signature(KEY, "MP-1", 1, 3, attachment) == "sha256=" + hmac.new(
        KEY, b"MP-1\n1\n3\n" + attachment, hashlib.sha256).hexdigest()
