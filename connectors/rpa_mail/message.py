"""The email the RPA bot reads: the JSON payload in the body and as an attachment, signed for the
bot to check when the RPA signing key is set (`signature`).

Written out directly as the bytes SMTP's DATA carries (CRLF line ends, both parts base64, so
every line is short ASCII whatever the vendor wrote): the email package's message objects cost
about 2 ms per email, more than everything else the pipeline does for an invoice. The test
reads each message back with the email package.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import json

from rules.lifecycle import RpaRequest

# base64 has no "_", so the boundary cannot occur inside a part
BOUNDARY = "=_invoice-automation_="
SIGNATURE_HEADER = "X-Invoice-Signature"


def _header_safe(text: str) -> str:
    """Vendor text as a header may carry it: ASCII letters, digits and -._ only (a CR or LF would
    start a header of the vendor's choosing). The payload in the body carries the exact value."""
    return "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-._") else "_" for ch in text)[:64]


def message_id(invoice_id: str, version: int, attempt: int = 1) -> str:
    """Derived from the invoice version and its hand-off, so a resend is recognisably the same
    message, and a hand-off again after an RPA failure is not taken for a copy of the first. An id
    the header cannot carry as it is gets its digest too: `A/1` and `A_1` would otherwise share
    one Message-ID, and a mailbox that drops copies would drop one of two invoices."""
    again = f"-a{attempt}" if attempt > 1 else ""
    safe = _header_safe(invoice_id)
    if safe != invoice_id:
        safe += "-" + hashlib.blake2b(invoice_id.encode(), digest_size=6).hexdigest()
    return f"<invoice-{safe}-v{version}{again}@invoice-automation>"


def signature(key: bytes, invoice_id: str, version: int, attempt: int, document: bytes) -> str:
    """`sha256=` and the hex HMAC-SHA256, under the RPA signing key, of the invoice id (UTF-8), its
    version and the hand-off (`X-Invoice-Attempt`), each followed by a line feed, then the JSON
    document exactly as both parts carry it once base64 is undone: the bytes the bot keys from. The
    email carried nothing the bot could check, and anyone who could mail its mailbox had an invoice
    entered in Sampro. Ids and versions are also in the document; the hand-off is not."""
    signed = f"{invoice_id}\n{version}\n{attempt}\n".encode() + document
    return "sha256=" + hmac.new(key, signed, hashlib.sha256).hexdigest()


def _address(value: str, field: str) -> str:
    if not value.isascii() or any(ch in value for ch in "\r\n"):
        raise ValueError(f"{field} {value!r} is not a one-line ASCII address")
    return value


def build_message(request: RpaRequest, mail_from: str, mail_to: str, signing_key: bytes | None = None) -> bytes:
    """The whole message, CRLF line ends, not yet dot-stuffed; signed with `signing_key` when given."""
    payload = request.payload
    raw = json.dumps(payload.model_dump(mode="json"), indent=2).encode()
    document = base64.encodebytes(raw).decode().rstrip("\n").replace("\n", "\r\n")
    name = f"invoice-{_header_safe(request.invoice_id)}-v{request.invoice_version}.json"
    signed = [] if signing_key is None else [f"{SIGNATURE_HEADER}: " + signature(
        signing_key, request.invoice_id, request.invoice_version, request.attempt, raw)]
    lines = [
        f"Subject: Enter invoice {_header_safe(payload.invoice_number)} from vendor "
        f"{_header_safe(payload.vendor_id)} on PO {_header_safe(payload.po_number)}",
        f"From: {_address(mail_from, 'RPA_MAIL_FROM')}",
        f"To: {_address(mail_to, 'RPA_MAIL_TO')}",
        f"Message-ID: {message_id(request.invoice_id, request.invoice_version, request.attempt)}",
        f"Date: {email.utils.formatdate(usegmt=True)}",
        # Which hand-off of the version this is: the bot echoes it in its callback (`attempt`).
        f"X-Invoice-Attempt: {request.attempt}",
        *signed,
        "MIME-Version: 1.0",
        f'Content-Type: multipart/mixed; boundary="{BOUNDARY}"',
        "",
        f"--{BOUNDARY}",
        'Content-Type: text/plain; charset="utf-8"',
        "Content-Transfer-Encoding: base64",
        "",
        document,
        f"--{BOUNDARY}",
        "Content-Type: application/json",
        "Content-Transfer-Encoding: base64",
        f'Content-Disposition: attachment; filename="{name}"',
        "",
        document,
        f"--{BOUNDARY}--",
        "",
    ]
    return "\r\n".join(lines).encode("ascii")
