"""SMTP delivery with a sent log: a replay never sends twice, a failure holds the offset.

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

from sqlalchemy import Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from tenacity import RetryError, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from connectors.rpa_mail.message import build_message
from connectors.scheduler.tables import rpa_sent_log
from rules.lifecycle import RpaRequest

_LINE_STARTING_WITH_DOT = re.compile(rb"(?m)^\.")
log = logging.getLogger(__name__)


class RpaMailError(RuntimeError):
    """The RPA mailbox could not be reached after the retries."""


class SqlSentLog:
    def __init__(self, engine: Engine):
        self.engine = engine

    def _row(self, invoice_id: str, version: int):
        t = rpa_sent_log
        return (t.c.invoice_id == invoice_id) & (t.c.invoice_version == version)

    def was_sent(self, invoice_id: str, version: int) -> bool:
        with self.engine.connect() as conn:
            return conn.execute(select(rpa_sent_log.c.message_id).where(self._row(invoice_id, version))).first() is not None

    def claim(self, invoice_id: str, version: int, mid: str) -> bool:
        """Commits 'this email goes out now'; False when an earlier attempt already did."""
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(rpa_sent_log).values(invoice_id=invoice_id, invoice_version=version,
                                                         message_id=mid, sent_at=datetime.now(UTC)))
            return True
        except IntegrityError:
            return False

    def confirm(self, invoice_id: str, version: int, server_reply: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(update(rpa_sent_log).where(self._row(invoice_id, version))
                         .values(server_reply=server_reply[:500]))

    def forget(self, invoice_id: str, version: int) -> None:
        """The server refused or never got the end of the message: the email may be sent again."""
        with self.engine.begin() as conn:
            conn.execute(delete(rpa_sent_log).where(self._row(invoice_id, version)))

    def in_doubt(self) -> list[tuple[str, int]]:
        """Hand-offs cut off between the log and the server's answer: check the RPA mailbox."""
        t = rpa_sent_log
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.c.invoice_id, t.c.invoice_version).where(t.c.server_reply.is_(None)))
            return [(row.invoice_id, row.invoice_version) for row in rows]


class SmtpRpaMailer:
    def __init__(
        self, *, host: str, port: int, mail_from: str, mail_to: str, sent_log: SqlSentLog, starttls: bool = False,
        username: str | None = None, password: str | None = None, attempts: int = 5, backoff_seconds: float = 0.5,
        timeout: float = 10.0,
    ):
        self.host, self.port, self.starttls = host, port, starttls
        self.username, self.password = username, password
        self.mail_from, self.mail_to = mail_from, mail_to
        self.sent_log = sent_log
        self.attempts, self.backoff, self.timeout = attempts, backoff_seconds, timeout

    def send(self, request: RpaRequest) -> bool:
        message = build_message(request, self.mail_from, self.mail_to)
        try:
            for attempt in Retrying(stop=stop_after_attempt(self.attempts),
                                    wait=wait_exponential(multiplier=self.backoff, max=30),
                                    retry=retry_if_exception_type((OSError, smtplib.SMTPException))):
                with attempt:
                    if self.sent_log.was_sent(request.invoice_id, request.invoice_version):
                        log.debug("RPA email for %s v%s already sent", request.invoice_id, request.invoice_version)
                        return False
                    return self._deliver(request, message)
        except RetryError as exc:
            cause = exc.last_attempt.exception()
            raise RpaMailError(f"RPA mailbox {self.host}:{self.port} unreachable after {self.attempts} attempts: "
                               f"{type(cause).__name__}: {cause}") from cause
        raise AssertionError("unreachable: tenacity either returns or raises")

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
