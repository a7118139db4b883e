"""The email the RPA bot reads: the JSON payload in the body and as an attachment."""

from __future__ import annotations

import json
from email.message import EmailMessage

from rules.lifecycle import RpaRequest


def _header_safe(text: str) -> str:
    """Vendor text as a header may carry it: ASCII letters, digits and -._ only (a CR or LF would
    start a header of the vendor's choosing). The payload in the body carries the exact value."""
    return "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-._") else "_" for ch in text)[:64]


def message_id(invoice_id: str, version: int) -> str:
    """Derived from the invoice version, so a resend is recognisably the same message."""
    return f"<invoice-{_header_safe(invoice_id)}-v{version}@invoice-automation>"


def build_message(request: RpaRequest, mail_from: str, mail_to: str) -> EmailMessage:
    payload = request.payload
    document = json.dumps(payload.model_dump(mode="json"), indent=2)
    message = EmailMessage()
    message["Subject"] = (f"Enter invoice {_header_safe(payload.invoice_number)} from vendor "
                          f"{_header_safe(payload.vendor_id)} on PO {_header_safe(payload.po_number)}")
    message["From"] = mail_from
    message["To"] = mail_to
    message["Message-ID"] = message_id(request.invoice_id, request.invoice_version)
    message.set_content(document)
    message.add_attachment(document.encode(), maintype="application", subtype="json",
                           filename=f"invoice-{_header_safe(request.invoice_id)}-v{request.invoice_version}.json")
    return message
