"""SMTP delivery with a sent log: a replay never sends twice, a failure holds the offset.

The log entry is written only after the server accepted the message. A crash between the
two can still resend once; the deterministic Message-ID lets the bot's mailbox drop it.
"""

from __future__ import annotations

import smtplib
from datetime import UTC, datetime

from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError
from tenacity import RetryError, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from connectors.rpa_mail.message import build_message, message_id
from connectors.scheduler.tables import rpa_sent_log
from rules.lifecycle import RpaRequest


class RpaMailError(RuntimeError):
    """The RPA mailbox could not be reached after the retries."""


class SqlSentLog:
    def __init__(self, engine: Engine):
        self.engine = engine

    def was_sent(self, invoice_id: str, version: int) -> bool:
        t = rpa_sent_log
        query = select(t.c.message_id).where(t.c.invoice_id == invoice_id, t.c.invoice_version == version)
        with self.engine.connect() as conn:
            return conn.execute(query).first() is not None

    def mark_sent(self, invoice_id: str, version: int, mid: str) -> None:
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(rpa_sent_log).values(invoice_id=invoice_id, invoice_version=version,
                                                         message_id=mid, sent_at=datetime.now(UTC)))
        except IntegrityError:
            pass  # logged by an earlier attempt: the same fact


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
        if self.sent_log.was_sent(request.invoice_id, request.invoice_version):
            return False
        message = build_message(request, self.mail_from, self.mail_to)
        try:
            for attempt in Retrying(stop=stop_after_attempt(self.attempts),
                                    wait=wait_exponential(multiplier=self.backoff, max=30),
                                    retry=retry_if_exception_type((OSError, smtplib.SMTPException))):
                with attempt:
                    self._deliver(message)
        except RetryError as exc:
            cause = exc.last_attempt.exception()
            raise RpaMailError(f"RPA mailbox {self.host}:{self.port} unreachable after {self.attempts} attempts: "
                               f"{type(cause).__name__}: {cause}") from cause
        self.sent_log.mark_sent(request.invoice_id, request.invoice_version,
                                message_id(request.invoice_id, request.invoice_version))
        return True

    def _deliver(self, message) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            if self.starttls:
                smtp.starttls()
            if self.username:
                smtp.login(self.username, self.password or "")
            smtp.send_message(message)
