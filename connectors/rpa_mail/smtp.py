"""SMTP delivery with a sent log: a replay never sends twice, an outage holds the partition.

An email cannot be taken back, so the sent log is committed at the last moment a send can
still be called off: after the server has the whole message but before the end-of-data dot
that makes it accept it. A crash before the commit leaves no email (the server drops an
unfinished message) and no log entry, so the replay sends it; a crash after the commit finds
the entry and sends nothing. Only a crash in the microseconds between the commit and the
dot loses the email, and that entry stays without a server reply: `in_doubt()` lists it. For
AP a missing email (the invoice waits at `sent_to_rpa`, visibly) is far cheaper than one the
bot would enter twice. The deterministic Message-ID lets a mailbox drop any copy anyway.

A batch of requests goes out over one SMTP connection, kept open between batches, and one
database connection: one query finds what was sent before, and each email costs two statements,
each its own commit: the claim, and the server's reply.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import re
import smtplib
import socket
import ssl
import time
from collections.abc import Collection, Iterator, Sequence
from datetime import UTC, datetime
from typing import NamedTuple

from sqlalchemy import ColumnElement, Connection, Engine, delete, exists, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from connectors.api_ports import RpaSentLog
from connectors.ports import RpaMailer, Unsent
from connectors.rpa_mail.message import build_message, message_id
from connectors.scheduler.tables import history, processscheduler, rpa_sent_log
from connectors.sql import among, mapped_errors
from rules.errors import DataError, NextBatch, PutOff, Unavailable
from rules.lifecycle import InvoiceStatus, RpaRequest
from rules.po_ledger import last_hand_off_of

_LINE_STARTING_WITH_DOT = re.compile(rb"(?m)^\.")
REFUSED = "refused: "  # the server reply of a hand-off the mailbox refused for good
# In place of a server reply: a hand-off the mail flow failed before its email (the invoice-number gate).
NOT_HANDED_OVER = "not handed over: "
log = logging.getLogger(__name__)
HandOff = tuple[str, int, int]  # invoice id, version, RpaRequest.attempt


def _unavailable(error: BaseException) -> Unavailable:
    return Unavailable("smtp", f"{type(error).__name__}: {error}"[:300])


def _said(error: smtplib.SMTPResponseException) -> str:
    """The text of the server's answer, after its code."""
    said = error.smtp_error
    return said if isinstance(said, str) else said.decode(errors="replace")


def _reply_text(error: smtplib.SMTPResponseException) -> str:
    return f"{error.smtp_code} {_said(error)}"[:300]


class _MessageRefused(smtplib.SMTPResponseException):
    """The server's answer to the end of one email's data: about that email, not the session."""

    hand_off: HandOff
    put_off: Exception | None = None  # a 4xx's: tried again (PutOff), or put off for good (DataError)


# Enhanced status codes (RFC 3463) at the end of data that say the mailbox, the mail system or
# the sender, not the email, is the matter: the mailbox disabled or full (x.2.1, x.2.2), the system
# out of storage or not taking mail (x.3.0-x.3.2; x.3.4, too big, is the email's), the network or
# routing (x.4.x), the sign-in or the sender refused (5.7.57 not signed in, 5.7.60 and Exchange's
# SendAsDenied, 5.7.708 the sender's address, Exchange Online's 5.1.8 and 5.7.511 for a sender it
# blocked, and its SubmissionQuotaExceeded, the day's sending limit). Every email would be refused
# (or put off) alike, and each invoice's hand-off failed in turn: a wrong RPA_MAIL_FROM failed
# every ready invoice, and the day's quota every one after it until AP released each.
_MAILBOX_WIDE = re.compile(r"^[45]\.(1\.8|2\.[12]|3\.[0-2]|4\.\d{1,3}|7\.(57|60|511|708))\b")
_SENDER_WIDE = ("SendAsDenied", "SubmissionQuotaExceeded")
# A 4xx to one email counts toward giving it up while they come this close together: one after
# an outage of the server (no answer at all) starts the count again.
PUT_OFF_GAP = 600.0


def _about_the_mailbox(error: smtplib.SMTPResponseException) -> bool:
    """421 closes the session whatever it says (RFC 5321 4.2.2)."""
    said = _said(error).strip()
    return error.smtp_code == 421 or bool(_MAILBOX_WIDE.match(said)) or any(name in said for name in _SENDER_WIDE)


class SentLogSession:
    """The sent log over one connection for one batch of emails. Each statement is a transaction
    of its own (the connection autocommits): a claim costs one round trip to the database, where
    a transaction around it cost four (BEGIN, the statement, COMMIT and the reply before it)."""

    def __init__(self, conn: Connection):
        self.conn = conn

    def claim(self, hand_off: HandOff, message_id_header: str) -> bool:
        """Commits 'this email goes out now'; False when an earlier try already did."""
        with mapped_errors("processscheduler"):
            try:
                self.conn.execute(insert(rpa_sent_log).values(invoice_id=hand_off[0], invoice_version=hand_off[1],
                                                              attempt=hand_off[2], message_id=message_id_header,
                                                              sent_at=datetime.now(UTC)))
            except IntegrityError:
                self.conn.rollback()  # nothing to undo in the database: resets the connection's state
                return False
        return True

    def confirm(self, hand_off: HandOff, server_reply: str) -> None:
        """The server accepted the email: it is no longer in doubt."""
        with mapped_errors("processscheduler"):
            self.conn.execute(update(rpa_sent_log).where(_claim_of(hand_off)).values(server_reply=server_reply[:500]))

    def refuse(self, hand_off: HandOff, server_reply: str) -> None:
        """The server refused the email for good: its hand-off fails, and it is never sent again,
        not even when rpa.requests is read again (forgotten, it was, after AP's retry had gone out)."""
        with mapped_errors("processscheduler"):
            self.conn.execute(update(rpa_sent_log).where(_claim_of(hand_off)).values(
                server_reply=f"{REFUSED}{server_reply}"[:500]))

    def keep_failed(self, hand_off: HandOff, message_id_header: str, why: str) -> None:
        """The mail flow failed this hand-off before its email (its invoice number went to the bot with
        another invoice): it is never emailed. Unlogged, rpa.requests read again (the mail group new on an
        upgrade, an offset reset) asked the gate again, and once the number was free it was emailed,
        while processscheduler showed it failed. Logged already, it is that same failure read again."""
        with mapped_errors("processscheduler"):
            try:
                self.conn.execute(insert(rpa_sent_log).values(invoice_id=hand_off[0], invoice_version=hand_off[1],
                                                              attempt=hand_off[2], message_id=message_id_header,
                                                              sent_at=datetime.now(UTC),
                                                              server_reply=f"{NOT_HANDED_OVER}{why}"[:500]))
            except IntegrityError:
                self.conn.rollback()

    def forget(self, hand_off: HandOff) -> None:
        """The server refused or never got the end of the message: the email may be sent again."""
        with mapped_errors("processscheduler"):
            self.conn.execute(delete(rpa_sent_log).where(_claim_of(hand_off)))


def _claim_of(hand_off: HandOff) -> ColumnElement[bool]:
    sent = rpa_sent_log.c
    return (sent.invoice_id == hand_off[0]) & (sent.invoice_version == hand_off[1]) & (sent.attempt == hand_off[2])


class LoggedHandOffs(NamedTuple):
    """What the sent log knows of some hand-offs."""

    # Claimed already, or past: a later hand-off of their version was claimed (`passed_by_later`).
    # One the mailbox refused, or the mail flow failed before its email (`SentLogSession.keep_failed`),
    # and no later one passed, is not: it is failed again.
    sent: set[HandOff]
    refused: dict[HandOff, str]  # of those not passed, the refusals, with the server's reply
    kept_failed: dict[HandOff, str]  # of those not passed, failed before their email, with why


class SqlSentLog(RpaSentLog):
    def __init__(self, engine: Engine):
        self.engine = engine

    def looked_up(self, hand_offs: Collection[HandOff]) -> LoggedHandOffs:
        """What the log knows of these hand-offs, in one query."""
        if not hand_offs:
            return LoggedHandOffs(set(), {}, {})
        sent = rpa_sent_log.c
        with mapped_errors("processscheduler"), self.engine.connect() as conn:
            # by invoice id alone: SQL Server has no row-value IN
            rows = conn.execute(select(sent.invoice_id, sent.invoice_version, sent.attempt, sent.server_reply)
                                .where(among(sent.invoice_id, {hand_off[0] for hand_off in hand_offs},
                                             self.engine.dialect))).all()
        logged = {(row.invoice_id, row.invoice_version, row.attempt): row.server_reply for row in rows}
        wanted = set(hand_offs)
        last = last_hand_off_of(logged)
        standing = {key: reply for key, reply in logged.items()
                    if key in wanted and reply is not None and last[key[:2]] == key[2]}
        refused = {key: reply.removeprefix(REFUSED) for key, reply in standing.items() if reply.startswith(REFUSED)}
        kept_failed = {key: reply.removeprefix(NOT_HANDED_OVER) for key, reply in standing.items()
                       if reply.startswith(NOT_HANDED_OVER)}
        return LoggedHandOffs(passed_by_later(wanted, logged) - set(refused) - set(kept_failed), refused, kept_failed)

    @contextlib.contextmanager
    def session(self) -> Iterator[SentLogSession]:
        """One autocommitting connection for a batch."""
        with mapped_errors("processscheduler"):
            conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        with conn:
            yield SentLogSession(conn)

    def last_hand_off(self, invoice_id: str, version: int) -> int:
        sent = rpa_sent_log.c
        with mapped_errors("processscheduler"), self.engine.connect() as conn:
            return conn.execute(select(func.max(sent.attempt)).where(
                sent.invoice_id == invoice_id, sent.invoice_version == version)).scalar() or 0

    def in_doubt(self) -> list[HandOff]:
        """Hand-offs cut off between the log and the server's answer, still unresolved: check the RPA
        mailbox. One is resolved once the version has a later hand-off (the operator reported it
        failed and AP released it, as the README says) or processscheduler shows the bot's answer,
        now or in the version's history since the email's claim: counted for good, they kept the gauge
        above zero after the operator had done all there was. By the row alone, the clerk's release
        (`released`, waiting behind another invoice of its PO) listed it again, and a hold anew at its
        turn (`manual_review`) for good."""
        sent, later, row, event = rpa_sent_log.c, rpa_sent_log.alias("later").c, processscheduler.c, history.c
        answered = [status.value for status in (InvoiceStatus.ENTERED, InvoiceStatus.RPA_FAILED,
                                                InvoiceStatus.WITHDRAWN, InvoiceStatus.SUPERSEDED)]
        # A refusal too, while processscheduler shows its version at the bot: a crash before its
        # failure went out left it there for good.
        of_version = (row.invoice_id == sent.invoice_id) & (row.invoice_version == sent.invoice_version)
        # Since the claim: an earlier hand-off's failure (the one AP released for this one) answers nothing.
        answered_since = exists().where(event.invoice_id == sent.invoice_id,
                                        event.invoice_version == sent.invoice_version,
                                        event.status.in_(answered), event.occurred_at >= sent.sent_at)
        query = (select(sent.invoice_id, sent.invoice_version, sent.attempt)
                 .where(~exists().where(later.invoice_id == sent.invoice_id,
                                        later.invoice_version == sent.invoice_version, later.attempt > sent.attempt),
                        (sent.server_reply.is_(None)
                         & ~exists().where(of_version, row.status.in_(answered)) & ~answered_since)
                        | (sent.server_reply.startswith(REFUSED, autoescape=True)
                           & exists().where(of_version, row.status == InvoiceStatus.SENT_TO_RPA.value)))
                 .order_by(sent.invoice_id, sent.invoice_version, sent.attempt))
        with mapped_errors("processscheduler"), self.engine.connect() as conn:
            return [(found.invoice_id, found.invoice_version, found.attempt) for found in conn.execute(query)]


class SmtpRpaMailer(RpaMailer):
    """One SMTP connection, kept between batches. A server that cannot be reached, answers 4xx, or
    refuses the session (the greeting, the sign-in, the sender or the recipient: a setting, the
    same for every email), or answers an email about the mailbox, the mail system or the sender
    (`_MAILBOX_WIDE`), is `Unavailable`: the emails wait and are tried again. A 5xx answer to the
    end of an email's data, or a 4xx to it for `put_off_for_good` seconds, refuses that email: it
    will never be accepted as it is, so its hand-off fails visibly (a `DataError`)."""

    def __init__(
        self, *, host: str, port: int, mail_from: str, mail_to: str, sent_log: SqlSentLog,
        tls: ssl.SSLContext | None = None, username: str | None = None, password: str | None = None,
        timeout: float = 10.0, implicit_tls: bool = False,
        refused_pause: float = 300.0, put_off_for_good: float = 3600.0, final_reply_timeout: float = 120.0,
        batch_seconds: float = 60.0, signing_key: bytes | None = None,
    ):
        # STARTTLS with this context, which checks the server's certificate and name: smtplib's
        # own default checks neither, and whoever sits between took the password and the invoices.
        self.host, self.port, self.tls = host, port, tls
        # With `tls`: from the first byte (SMTPS), where STARTTLS is not offered.
        self.implicit_tls = implicit_tls
        self.username, self.password = username, password
        self.mail_from, self.mail_to = mail_from, mail_to
        self.signing_key = signing_key  # each email signed with it for the bot to check (message.signature)
        self.sent_log = sent_log
        self.timeout, self.refused_pause = timeout, refused_pause
        # The answer to an email's end of data comes after the server's filters have read it, and RFC
        # 5321 lets it take 10 minutes: past `timeout` the email was left in doubt, never sent again.
        # Two minutes keep the worker's loop well inside Kafka's max.poll.interval.ms (5 minutes).
        self.final_reply_timeout = max(timeout, final_reply_timeout)
        # No email of a batch is begun past this: at 0.6 s an email (a relay's content filter) a
        # batch of 500 outlived Kafka's five minutes, the group gave its partition to another worker
        # while this one still sent, and an email the server then put off was dropped by both.
        self.batch_seconds = batch_seconds
        self._smtp: smtplib.SMTP | None = None
        self._idle = False  # kept from an earlier batch: asked whether it is still open before use
        # Refused or cut off before their end of data, with the database away when their claim was
        # to be dropped: kept, they would count as sent, and their invoices would wait for good.
        self._unforgotten: set[HandOff] = set()
        self._refused: str | None = None  # the server's last refusal of the session ...
        self._refused_until = 0.0  # ... said again without asking it until then
        # A 4xx at the end of one email's data is tried again, but one put off for `put_off_for_good`
        # seconds (a content filter that answers 451 to that email every time) is refused: waited
        # for, it held every email after it for good. (first, last) 4xx of each email put off; one
        # given up is logged as refused, like a 5xx (forgotten, the runtime's retry one by one put
        # it off again, the count begun anew, and a replay of rpa.requests emailed it).
        self.put_off_for_good = put_off_for_good
        self._put_off_at: dict[HandOff, tuple[float, float]] = {}

    def unsent(self, requests: Sequence[RpaRequest]) -> Unsent:
        found = self.sent_log.looked_up({_hand_off(r) for r in requests})
        # A claim still to be dropped (the database was away when the server refused the email) is
        # no email sent: counted as one, the email was never sent, and no failure reached AP.
        before = found.sent - self._unforgotten
        return Unsent([r for r in requests if _hand_off(r) not in before], found.kept_failed)

    def keep_failed(self, failures: Sequence[tuple[RpaRequest, str]]) -> None:
        if not failures:
            return
        with self.sent_log.session() as sent_log:
            for request, why in failures:
                sent_log.keep_failed(_hand_off(request), message_id(*_hand_off(request)), why)

    def send(self, requests: Sequence[RpaRequest]) -> list[RpaRequest]:
        """Sends each request not sent before, in order; returns the ones sent now."""
        if self._refused is not None and time.monotonic() < self._refused_until:
            raise Unavailable("smtp", self._refused)
        # Only this call's: its email goes out next. Another's claim stays in the log, where in_doubt()
        # shows it, until its request comes back here; dropped at any send, it was lost without a
        # trace when its partition had moved to a worker that took the claim for the email sent.
        if mine := self._unforgotten & {_hand_off(r) for r in requests}:
            with self.sent_log.session() as sent_log:
                for hand_off in sorted(mine):
                    self._forget(sent_log, hand_off)
        messages = []
        for request in requests:
            try:
                messages.append((request, build_message(request, self.mail_from, self.mail_to, self.signing_key)))
            except (ValueError, TypeError) as error:  # an address that is not one ASCII line
                raise DataError(f"the RPA email cannot be built: {error}") from None
        before, refused, kept_failed = self.sent_log.looked_up({_hand_off(r) for r in requests})
        if said := next((refused[_hand_off(r)] for r in requests if _hand_off(r) in refused), None):
            # Refused before: its hand-off fails again (the runtime's retry one by one, another worker, a
            # replay of rpa.requests), and the email is never sent.
            raise DataError(f"the RPA mailbox refused the email: {said}")
        due = [(r, m) for r, m in messages if _hand_off(r) not in before and _hand_off(r) not in kept_failed]
        if not due:
            return []
        sent, tried, started = [], 0, time.monotonic()
        try:
            with self.sent_log.session() as sent_log:
                for request, message in due:
                    if tried and time.monotonic() - started > self.batch_seconds:
                        break
                    tried += 1
                    if self._deliver(self._connection(), sent_log, request, message):
                        sent.append(request)
            self._idle, self._refused = True, None
        except _MessageRefused as error:
            self._drop()
            if _about_the_mailbox(error):
                if error.smtp_code < 500:
                    raise Unavailable("smtp", f"the RPA mailbox put the email off: {_reply_text(error)}") from None
                raise self._session_refused(error, "the RPA mailbox refused the email") from None
            if error.put_off is not None:  # a 4xx
                raise error.put_off from None
            raise DataError(f"the RPA mailbox refused the email: {_reply_text(error)}") from None
        except smtplib.SMTPResponseException as error:
            self._drop()
            if error.smtp_code < 500:  # busy, or a limit for now (421, 451)
                raise Unavailable("smtp", f"the RPA mailbox put the session off: {_reply_text(error)}") from None
            raise self._session_refused(error, "the RPA mailbox refused the session") from None
        except (OSError, smtplib.SMTPException) as error:
            self._drop()
            raise _unavailable(error) from None
        except BaseException:
            self._drop()  # mid-DATA perhaps: the server must drop the unfinished message
            raise
        if tried < len(due):  # the batch is read again after a pause, and its emails sent are not sent again
            raise NextBatch("smtp", f"{tried} of {len(due)} emails sent in {time.monotonic() - started:.0f} s; the "
                                 "others go next, so that the worker answers Kafka in time")
        return sent

    def _put_off(self, error: _MessageRefused) -> Exception:
        """A 4xx to the end of the email's data: that email tried again (its partition waits, the
        others go), until it is put off for good."""
        hand_off, now = error.hand_off, time.monotonic()
        self._put_off_at = {key: times for key, times in self._put_off_at.items() if now - times[1] < PUT_OFF_GAP}
        first, _ = self._put_off_at.get(hand_off, (now, now))
        self._put_off_at[hand_off] = (first, now)
        if now - first < self.put_off_for_good:
            return PutOff("smtp", f"the RPA mailbox put the email for {hand_off[0]} v{hand_off[1]} (hand-off "
                                  f"{hand_off[2]}) off: {_reply_text(error)}")
        del self._put_off_at[hand_off]
        return DataError(f"the RPA mailbox put the email off for {self.put_off_for_good:g} s: {_reply_text(error)}")

    def _session_refused(self, error: smtplib.SMTPResponseException, what: str) -> Unavailable:
        """A setting, most likely, or the mailbox itself: asked again every few seconds, a mail
        server locks the account of a wrong password, or bans the address. The emails wait, and
        the server is asked again only after `refused_pause` seconds."""
        self._refused = (f"{what}: {_reply_text(error)} (check the SMTP_* and RPA_MAIL_* settings, and the "
                         "mailbox; the emails wait)")
        self._refused_until = time.monotonic() + self.refused_pause
        return Unavailable("smtp", self._refused)

    def _connection(self) -> smtplib.SMTP:
        if self._smtp is not None:
            if not self._idle:
                return self._smtp
            try:
                _expect(self._smtp.noop(), 250)
                self._idle = False
                return self._smtp
            except (OSError, smtplib.SMTPException):  # the server closed it while idle
                self._drop()
        if self.implicit_tls and self.tls is not None:
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=self.tls)
        else:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        self._smtp, self._idle = smtp, False
        smtp.ehlo_or_helo_if_needed()
        if self.tls is not None and not self.implicit_tls:
            smtp.starttls(context=self.tls)
            smtp.ehlo()
        if self.username:
            smtp.login(self.username, self.password or "")
        assert smtp.sock is not None, "connected"
        smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # the lone dot must not wait for an ACK
        return smtp

    def _drop(self) -> None:
        """Closes without QUIT: mid-DATA the server would read it as part of the message."""
        if self._smtp is not None:
            self._smtp.close()
            self._smtp = None

    def _deliver(self, smtp: smtplib.SMTP, sent_log: SentLogSession, request: RpaRequest,
                 message: bytes) -> bool:
        hand_off = _hand_off(request)
        envelope = [f"MAIL FROM:<{email.utils.parseaddr(self.mail_from)[1]}>",
                    f"RCPT TO:<{email.utils.parseaddr(self.mail_to)[1]}>", "DATA"]
        if smtp.does_esmtp and smtp.has_extn("pipelining"):  # one round trip instead of three
            smtp.send("".join(f"{command}\r\n" for command in envelope))
            replies = [smtp.getreply() for _ in envelope]
        else:
            replies = []
            for command in envelope:
                smtp.putcmd(command)
                replies.append(smtp.getreply())
                if replies[-1][0] >= 400:
                    break
        for (code, reply), expected in zip(replies, ((250,), (250, 251), (354,)), strict=False):
            if code not in expected:
                raise smtplib.SMTPResponseException(code, reply)
        smtp.send(_dot_stuffed(message))
        if not sent_log.claim(hand_off, message_id(*hand_off)):
            self._drop()  # another sender got there first: closing drops this unfinished copy
            return False
        try:
            smtp.send(b".\r\n")
        except OSError:
            self._forget(sent_log, hand_off)  # the end of data never left: nothing was sent
            raise
        try:
            if smtp.sock is not None:
                smtp.sock.settimeout(self.final_reply_timeout)
            code, reply = smtp.getreply()
        except OSError:  # the answer is lost: the email is in doubt and stays logged
            log.warning("RPA email for %s v%s (hand-off %s) is in doubt: no answer to its end of data "
                        "(see in_doubt())", *hand_off)
            raise
        finally:
            if smtp.sock is not None:
                smtp.sock.settimeout(self.timeout)
        if not (200 <= code < 300 or 400 <= code < 600):
            # No SMTP reply (2.0.0 with no code, a 3xx): whether the server took the email is not
            # known. Taken for a 4xx, its claim was dropped and an email the server had queued was
            # sent again; it stays claimed, in doubt (in_doubt()), as with no answer at all.
            log.warning("RPA email for %s v%s (hand-off %s) is in doubt: its end of data was answered %r "
                        "(see in_doubt())", *hand_off, reply[:200])
            raise smtplib.SMTPException(f"the end of data was answered with no SMTP reply: {code} {reply[:200]!r}")
        if code >= 400:
            refused = _MessageRefused(code, reply)
            refused.hand_off = hand_off
            if code < 500 and not _about_the_mailbox(refused):
                refused.put_off = self._put_off(refused)
            if _about_the_mailbox(refused) or isinstance(refused.put_off, PutOff):
                self._forget(sent_log, hand_off)
            else:  # refused for good, or put off for good: logged so, it is never sent, nor read again as sent
                why = _reply_text(refused)
                self._unforgotten.add(hand_off)  # if the log cannot take it, the claim is dropped at the retry
                sent_log.refuse(hand_off, why if code >= 500 else f"put off for {self.put_off_for_good:g} s: {why}")
                self._unforgotten.discard(hand_off)
            raise refused
        try:
            sent_log.confirm(hand_off, f"{code} {reply.decode(errors='replace')}")
        except Unavailable:
            log.warning("RPA email for %s v%s (hand-off %s) was accepted, but processscheduler did not take the "
                        "server's reply: it is listed in doubt, and it is in the RPA mailbox", *hand_off)
            raise
        self._put_off_at.pop(hand_off, None)
        return True

    def _forget(self, sent_log: SentLogSession, hand_off: HandOff) -> None:
        self._unforgotten.add(hand_off)
        sent_log.forget(hand_off)
        self._unforgotten.discard(hand_off)


def passed_by_later(hand_offs: Collection[HandOff], logged: Collection[HandOff]) -> set[HandOff]:
    """The hand-offs the sent log has, and those it has a later hand-off of the same version for: one
    with no row of its own (refused before refusals were kept, or put off for good), read again
    from rpa.requests after AP had released it and its next hand-off had gone out, was emailed
    then, a second copy of the invoice for the bot to enter."""
    last = last_hand_off_of(logged)
    return {hand_off for hand_off in hand_offs if last.get(hand_off[:2], 0) >= hand_off[2]}


def _hand_off(request: RpaRequest) -> HandOff:
    return request.invoice_id, request.invoice_version, request.attempt


def _expect(answer: tuple[int, bytes], *codes: int) -> None:
    code, reply = answer
    if code not in codes:
        raise smtplib.SMTPResponseException(code, reply)


def _dot_stuffed(message: bytes) -> bytes:
    """The message as DATA carries it, without the final dot (RFC 5321 §4.5.2)."""
    flat = _LINE_STARTING_WITH_DOT.sub(b"..", message)
    return flat if flat.endswith(b"\r\n") else flat + b"\r\n"
