"""A real SMTP server on loopback (aiosmtpd) that keeps what it receives: the RPA mailbox of the demo and tests."""

from __future__ import annotations

import asyncio
import email
import email.policy
import ssl
import threading
import time
from email.message import EmailMessage

from aiosmtpd.controller import Controller

from devstack.process import free_port


class Mailbox:
    def __init__(self) -> None:
        self.received: list[bytes] = []  # each message as DATA brought it
        self.arrived = threading.Event()  # set by each message: a reader need not poll on a clock
        self.refusals = 0  # the next n messages are refused at the end of data, as a full mailbox would
        self.refusal = "452 4.2.2 Mailbox full"  # ... with this answer
        self.recipient_refusal: str | None = None  # every RCPT TO answered so, as a disabled mailbox is
        self.closing = False  # the server goes down: a new message is put off (421)
        self.in_transaction = 0  # messages between their MAIL FROM and their end of data
        self.reply_delay = 0.0  # seconds before the answer to an end of data, as a content filter takes
        self._parsed: list[EmailMessage] = []
        self._parsing = threading.Lock()

    @property
    def messages(self) -> list[EmailMessage]:
        """What was received, as message objects, parsed when asked for: parsing in the server's
        handler (the email package's headers cost about 1 ms a message) slowed every reply."""
        with self._parsing:
            while len(self._parsed) < len(self.received):
                raw = self.received[len(self._parsed)]
                self._parsed.append(email.message_from_bytes(raw, policy=email.policy.default))
            return self._parsed

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: N802
        """Offers PIPELINING (RFC 2920), as Postfix and Exchange do; aiosmtpd reads commands in order."""
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: N802
        if self.closing:
            return "421 4.3.2 Service shutting down"
        self.in_transaction += 1
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if self.recipient_refusal is not None:
            return self.recipient_refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's hook name)
        await asyncio.sleep(self.reply_delay)
        self.in_transaction -= 1
        if self.refusals:
            self.refusals -= 1
            return self.refusal
        self.received.append(envelope.original_content or envelope.content)
        self.arrived.set()
        return "250 OK"


class SmtpServer:
    def __init__(self, port: int | None = None, tls: ssl.SSLContext | None = None, implicit_tls: bool = False) -> None:
        """`tls`: offers STARTTLS with this server context, and takes no mail before it; with
        `implicit_tls`, speaks TLS from the first byte (SMTPS) instead."""
        self.mailbox = Mailbox()
        self.port = port or free_port()
        self._tls = ({} if tls is None else {"ssl_context": tls} if implicit_tls
                     else {"tls_context": tls, "require_starttls": True})
        self._controller = self._listening()

    def _listening(self) -> Controller:
        return Controller(self.mailbox, hostname="127.0.0.1", port=self.port, **self._tls)

    def __enter__(self) -> SmtpServer:
        self._controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self._controller.stop()

    def outage(self, settle_seconds: float = 2.0) -> None:
        """Goes down as a mailbox server its operator stops: a message already begun is taken, a new
        one is put off (421), then it stops listening and connections are refused. Stopped between
        an email's end of data and its answer, the email would be in doubt: the mailer's case for
        an operator (README, "in doubt"), which an outage test must not meet by chance."""
        self.mailbox.closing = True
        settled = time.monotonic() + settle_seconds
        while self.mailbox.in_transaction > 0 and time.monotonic() < settled:
            time.sleep(0.01)
        self._controller.stop()

    def recover(self) -> None:
        self.mailbox.closing, self.mailbox.in_transaction = False, 0
        self._controller = self._listening()
        self._controller.start()
