"""The email the RPA bot reads: the JSON payload in the body and as an attachment."""

from __future__ import annotations

import json
from email.message import EmailMessage

from rules.lifecycle import RpaRequest


def message_id(invoice_id: str, version: int) -> str:
    """Derived from the invoice version, so a resend is recognisably the same message."""
    safe = "".join(ch if ch.isalnum() or ch in "-._" else "_" for ch in invoice_id)
    return f"<invoice-{safe}-v{version}@invoice-automation>"


def build_message(request: RpaRequest, mail_from: str, mail_to: str) -> EmailMessage:
    payload = request.payload
    document = json.dumps(payload.model_dump(mode="json"), indent=2)
    message = EmailMessage()
    message["Subject"] = (f"Enter invoice {payload.invoice_number} from vendor {payload.vendor_id} "
                          f"on PO {payload.po_number}")
    message["From"] = mail_from
    message["To"] = mail_to
    message["Message-ID"] = message_id(request.invoice_id, request.invoice_version)
    message.set_content(document)
    message.add_attachment(document.encode(), maintype="application", subtype="json",
                           filename=f"invoice-{request.invoice_id}-v{request.invoice_version}.json")
    return message
