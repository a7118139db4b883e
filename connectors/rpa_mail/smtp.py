"""SMTP delivery with a sent log: a replay never sends twice, an outage holds the partition.

An email cannot be taken back, so the sent log is committed at the last moment a send can
still be called off: after the server has the whole message but before the end-of-data dot
that makes it accept it. A crash before the commit leaves no email (the server drops an
unfinished message) and no log entry, so the replay sends it; a crash after the commit finds
the entry and sends nothing. Only a crash in the microseconds between the commit and the
dot loses the email, and that entry stays without a server reply: `in_doubt()` lists it. For
AP a missing email (the invoice waits at `sent_to_rpa`, visibly) is far cheaper than one the
bot would enter twice. The deterministic Message-ID lets a mailbox drop any copy anyway.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import re
import smtplib
import socket
from datetime import UTC, datetime
from email.message import EmailMessage

from sqlalchemy import ColumnElement, Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from connectors.rpa_mail.message import build_message
from connectors.scheduler.tables import rpa_sent_log
from connectors.sql import mapped_errors
from rules.errors import DataError, Unavailable
from rules.lifecycle import RpaRequest

_LINE_STARTING_WITH_DOT = re.compile(rb"(?m)^\.")
log = logging.getLogger(__name__)


def _unavailable(error: BaseException) -> Unavailable:
    return Unavailable("smtp", f"{type(error).__name__}: {error}"[:300])


class SqlSentLog:
    def __init__(self, engine: Engine):
        self.engine = engine

    def _row(self, invoice_id: str, version: int) -> ColumnElement[bool]:
        t = rpa_sent_log
        return (t.c.invoice_id == invoice_id) & (t.c.invoice_version == version)

    def was_sent(self, invoice_id: str, version: int) -> bool:
        with mapped_errors("processscheduler"), self.engine.connect() as conn:
            sent = select(rpa_sent_log.c.message_id).where(self._row(invoice_id, version))
            return conn.execute(sent).first() is not None

    def claim(self, invoice_id: str, version: int, mid: str) -> bool:
        """Commits 'this email goes out now'; False when an earlier attempt already did."""
        with mapped_errors("processscheduler"):
            try:
                with self.engine.begin() as conn:
                    conn.execute(insert(rpa_sent_log).values(invoice_id=invoice_id, invoice_version=version,
                                                             message_id=mid, sent_at=datetime.now(UTC)))
                return True
            except IntegrityError:
                return False

    def confirm(self, invoice_id: str, version: int, server_reply: str) -> None:
        with mapped_errors("processscheduler"), self.engine.begin() as conn:
            conn.execute(update(rpa_sent_log).where(self._row(invoice_id, version))
                         .values(server_reply=server_reply[:500]))

    def forget(self, invoice_id: str, version: int) -> None:
        """The server refused or never got the end of the message: the email may be sent again."""
        with mapped_errors("processscheduler"), self.engine.begin() as conn:
            conn.execute(delete(rpa_sent_log).where(self._row(invoice_id, version)))

    def in_doubt(self) -> list[tuple[str, int]]:
        """Hand-offs cut off between the log and the server's answer: check the RPA mailbox."""
        t = rpa_sent_log
        with mapped_errors("processscheduler"), self.engine.connect() as conn:
            rows = conn.execute(select(t.c.invoice_id, t.c.invoice_version).where(t.c.server_reply.is_(None)))
            return [(row.invoice_id, row.invoice_version) for row in rows]


class SmtpRpaMailer:
    """Each send is one SMTP session. A server that cannot be reached, or answers 4xx, is
    `Unavailable` (the runtime waits and tries again); a 5xx refusal of this message is a
    `DataError`: it will never be accepted as it is, so the hand-off fails visibly instead."""

    def __init__(
        self, *, host: str, port: int, mail_from: str, mail_to: str, sent_log: SqlSentLog, starttls: bool = False,
        username: str | None = None, password: str | None = None, timeout: float = 10.0,
    ):
        self.host, self.port, self.starttls = host, port, starttls
        self.username, self.password = username, password
        self.mail_from, self.mail_to = mail_from, mail_to
        self.sent_log = sent_log
        self.timeout = timeout

    def send(self, request: RpaRequest) -> bool:
        try:
            message = build_message(request, self.mail_from, self.mail_to)
        except (ValueError, TypeError) as error:  # a header the email library refuses
            raise DataError(f"the RPA email cannot be built: {error}") from None
        if self.sent_log.was_sent(request.invoice_id, request.invoice_version):
            log.debug("RPA email for %s v%s already sent", request.invoice_id, request.invoice_version)
            return False
        try:
            return self._deliver(request, message)
        except smtplib.SMTPResponseException as error:
            if error.smtp_code >= 500:
                said = error.smtp_error
                text = said if isinstance(said, str) else said.decode(errors="replace")
                raise DataError(f"the RPA mailbox refused the email: {error.smtp_code} {text[:300]}") from None
            raise _unavailable(error) from None
        except (OSError, smtplib.SMTPException) as error:
            raise _unavailable(error) from None

    def _deliver(self, request: RpaRequest, message: EmailMessage) -> bool:
        invoice = (request.invoice_id, request.invoice_version)
        smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        try:
            smtp.ehlo_or_helo_if_needed()
            if self.starttls:
                smtp.starttls()
            if self.username:
                smtp.login(self.username, self.password or "")
            _expect(smtp.mail(email.utils.parseaddr(self.mail_from)[1]), 250)
            _expect(smtp.rcpt(email.utils.parseaddr(self.mail_to)[1]), 250, 251)
            smtp.putcmd("data")
            _expect(smtp.getreply(), 354)
            smtp.send(_dot_stuffed(message))
            assert smtp.sock is not None, "send() succeeded, so the connection is open"
            smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # the lone dot must not wait for an ACK
            if not self.sent_log.claim(*invoice, message["Message-ID"]):
                return False  # another sender got there first: closing drops this unfinished copy
            try:
                smtp.send(b".\r\n")
            except OSError:
                self.sent_log.forget(*invoice)  # the end of data never left: nothing was sent
                raise
            try:
                code, reply = smtp.getreply()
            except OSError:  # the answer is lost: the email is in doubt and stays logged
                log.warning("RPA email for %s v%s is in doubt: no answer to its end of data (see in_doubt())", *invoice)
                raise
            if code != 250:
                self.sent_log.forget(*invoice)
                raise smtplib.SMTPDataError(code, reply)
            self.sent_log.confirm(*invoice, f"{code} {reply.decode(errors='replace')}")
            with contextlib.suppress(OSError, smtplib.SMTPException):
                smtp.quit()
            return True
        finally:
            smtp.close()  # no QUIT mid-DATA: the server would read it as part of the message


def _expect(answer: tuple[int, bytes], *codes: int) -> None:
    code, reply = answer
    if code not in codes:
        raise smtplib.SMTPResponseException(code, reply)


def _dot_stuffed(message: EmailMessage) -> bytes:
    """The message as DATA carries it, without the final dot (RFC 5321 §4.5.2)."""
    flat = message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
    flat = _LINE_STARTING_WITH_DOT.sub(b"..", flat)
    return flat if flat.endswith(b"\r\n") else flat + b"\r\n"
