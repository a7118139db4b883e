"""One contract for every RPA mailer: in memory, and SMTP to a real server with the sent log in SQL."""

from __future__ import annotations

import json
import ssl
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import trustme
from sqlalchemy import event

from connectors.rpa_mail import InMemoryRpaMailer, SmtpRpaMailer, SqlSentLog
from connectors.scheduler import upgrade
from devstack.mailbox import SmtpServer
from devstack.process import free_port
from devstack.rpa_bot import NotSigned, payload_of
from rules.errors import DataError, PutOff, Unavailable
from rules.lifecycle import RpaRequest
from streams.bootstrap import _real_mailer
from streams.settings import Settings
from tests.unit.rules.builders import INVOICE, judge

REQUEST = RpaRequest(invoice_id="MP-1001", invoice_version=1, po_number="PO-5001",
                     payload=judge(INVOICE).rpa_payload, requested_at=datetime(2026, 11, 25, tzinfo=UTC))


class RpaMailerContract:
    @pytest.fixture
    def mailer(self):
        raise NotImplementedError

    def test_a_request_is_sent_once(self, mailer):
        assert mailer.send([REQUEST]) == [REQUEST]
        assert mailer.send([REQUEST]) == []
        assert self.delivered(mailer) == 1

    def test_another_version_is_another_message(self, mailer):
        mailer.send([REQUEST])
        second = REQUEST.model_copy(update={"invoice_version": 2})
        assert mailer.send([second]) == [second]
        assert self.delivered(mailer) == 2

    def test_a_second_hand_off_of_a_version_is_another_message_sent_once(self, mailer):
        mailer.send([REQUEST])
        again = REQUEST.model_copy(update={"attempt": 2})  # AP released the bot's failure
        assert mailer.send([again, REQUEST]) == [again]
        assert mailer.send([again]) == []
        assert self.delivered(mailer) == 2

    def test_a_hand_off_read_again_after_a_later_one_of_its_version_was_sent_is_not_sent(self, mailer):
        """Hand-off 1, refused by the mailbox, is not logged (so that it fails); AP released the
        failure and hand-off 2 went out. rpa.requests read again then emailed hand-off 1: a second
        copy of the invoice for the bot to enter."""
        again = REQUEST.model_copy(update={"attempt": 2})
        mailer.send([again])
        assert mailer.unsent([REQUEST, again]).requests == [] and mailer.send([REQUEST]) == []
        assert self.delivered(mailer) == 1

    def test_a_hand_off_kept_failed_is_never_sent_and_is_named_until_a_later_one_passes_it(self, mailer):
        """The invoice-number gate failed it: kept nowhere, rpa.requests read again asked the gate again,
        and once the number was free it was emailed while processscheduler showed it rpa_failed."""
        why = "DUPLICATE_INVOICE: not handed to the RPA bot. Vendor V100 invoice INV-778 went to it already"
        mailer.keep_failed([(REQUEST, why)])
        mailer.keep_failed([(REQUEST, "read again")])  # the same failure: the first why stands
        # read again: among the unsent, so that the flow fails it again, and named as kept failed
        assert mailer.unsent([REQUEST]) == ([REQUEST], {("MP-1001", 1, 1): why})
        assert mailer.send([REQUEST]) == []
        again = REQUEST.model_copy(update={"attempt": 2})  # AP released it: a new hand-off, emailed
        assert mailer.unsent([again]) == ([again], {}) and mailer.send([again]) == [again]
        assert mailer.unsent([REQUEST, again]) == ([], {})
        assert self.delivered(mailer) == 1

    def test_unsent_names_what_the_sent_log_does_not_know_in_order(self, mailer):
        others = [REQUEST.model_copy(update={"invoice_id": f"MP-{n}"}) for n in range(2)]
        mailer.send([REQUEST])
        assert mailer.unsent([others[1], REQUEST, others[0]]).requests == [others[1], others[0]]
        assert self.delivered(mailer) == 1

    def test_a_batch_sends_what_was_not_sent_before_in_order(self, mailer):
        mailer.send([REQUEST])
        batch = [REQUEST.model_copy(update={"invoice_id": f"MP-{n}"}) for n in range(3)]
        assert mailer.send([batch[0], REQUEST, batch[1], batch[2], batch[1]]) == batch
        assert self.delivered(mailer) == 4


class TestInMemoryMailer(RpaMailerContract):
    @pytest.fixture
    def mailer(self):
        return InMemoryRpaMailer()

    def delivered(self, mailer) -> int:
        return len(mailer.sent)


class SmtpMailerContract(RpaMailerContract):
    @pytest.fixture
    def engine(self):
        raise NotImplementedError

    @pytest.fixture
    def server(self):
        with SmtpServer() as server:
            yield server

    @pytest.fixture
    def mailer(self, engine, server):
        upgrade(engine)
        self.server = server
        return SmtpRpaMailer(host="127.0.0.1", port=server.port, mail_from="ia@test", mail_to="rpa@test",
                             sent_log=SqlSentLog(engine))

    def delivered(self, mailer) -> int:
        return len(self.server.mailbox.messages)

    def test_the_message_carries_the_payload_in_body_and_attachment(self, mailer, server):
        mailer.send([REQUEST])
        (message,) = server.mailbox.messages
        assert message["Message-ID"] == "<invoice-MP-1001-v1@invoice-automation>"
        # RFC 5322 requires it; Postfix adds none for a remote client, and spam filters score its absence
        assert abs((message["Date"].datetime - datetime.now(UTC)).total_seconds()) < 60
        assert "INV-778" in message["Subject"] and "PO-5001" in message["Subject"]
        body, attachment = [part for part in message.walk() if not part.is_multipart()]
        for part in (body, attachment):
            payload = json.loads(part.get_payload(decode=True), parse_float=Decimal)
            assert payload["total_amount"] == "57.25" and payload["lines"][0]["po_line_no"] == 1
        assert attachment.get_filename() == "invoice-MP-1001-v1.json"
        # The stand-in bot reads the same payload from the bytes received, with the lighter parser.
        assert payload_of(server.mailbox.received[0]) == (json.loads(body.get_payload(decode=True),
                                                                     parse_float=Decimal), 1)

    def test_each_hand_off_has_a_message_id_of_its_own(self, mailer, server):
        mailer.send([REQUEST, REQUEST.model_copy(update={"attempt": 2})])
        assert [message["Message-ID"] for message in server.mailbox.messages] == [
            "<invoice-MP-1001-v1@invoice-automation>", "<invoice-MP-1001-v1-a2@invoice-automation>"]
        # the bot echoes it in its callback: a report sent again after a new hand-off is not taken for it
        assert [message["X-Invoice-Attempt"] for message in server.mailbox.messages] == ["1", "2"]
        assert payload_of(server.mailbox.received[1])[1] == 2

    def test_with_a_signing_key_each_email_is_signed_as_the_bot_checks_it(self, engine, server):
        """Unsigned, the bot could not tell the pipeline's emails from anyone's who could mail its mailbox."""
        key = b"0123456789abcdef0123456789abcdef"
        mailer, _ = _mailer(engine, server, signing_key=key)
        again = REQUEST.model_copy(update={"attempt": 2})
        assert mailer.send([REQUEST, again]) == [REQUEST, again]
        assert [payload_of(message, key)[1] for message in server.mailbox.received] == [1, 2]
        with pytest.raises(NotSigned, match="not the pipeline's"):
            payload_of(server.mailbox.received[0], key[::-1])

    def test_what_was_emailed_and_what_was_kept_failed_come_from_one_read(self, engine, server):
        """The mail flow read the sent log twice a batch, for the same rows."""
        mailer, _ = _mailer(engine, server)
        other = REQUEST.model_copy(update={"invoice_id": "MP-2"})
        mailer.keep_failed([(REQUEST, "DUPLICATE_INVOICE: not handed to the RPA bot")])
        mailer.send([other])
        statements: list = []
        event.listen(engine, "before_execute", record := lambda conn, statement, *rest: statements.append(statement))
        try:
            answer = mailer.unsent([REQUEST, other])
        finally:
            event.remove(engine, "before_execute", record)
        assert answer == ([REQUEST], {("MP-1001", 1, 1): "DUPLICATE_INVOICE: not handed to the RPA bot"})
        assert len(statements) == 1

    def test_a_mailbox_that_is_down_is_unavailable_and_nothing_is_logged(self, engine, server):
        upgrade(engine)
        log = SqlSentLog(engine)
        down = SmtpRpaMailer(host="127.0.0.1", port=free_port(), mail_from="a@t", mail_to="b@t", sent_log=log)
        with pytest.raises(Unavailable, match="smtp is unavailable: ConnectionRefusedError"):
            down.send([REQUEST])
        assert log.looked_up([("MP-1001", 1, 1)]).sent == set()
        up = SmtpRpaMailer(host="127.0.0.1", port=server.port, mail_from="a@t", mail_to="b@t", sent_log=log)
        assert up.send([REQUEST]) == [REQUEST] and len(server.mailbox.messages) == 1

    def test_a_kept_connection_the_server_dropped_is_opened_again(self, mailer, server):
        mailer.send([REQUEST])
        server.outage()
        server.recover()
        second = REQUEST.model_copy(update={"invoice_version": 2})
        assert mailer.send([second]) == [second] and len(server.mailbox.messages) == 2


    def test_an_answer_to_the_end_of_data_slower_than_the_timeout_is_waited_for(self, engine, server):
        """A content filter reads the email before the server answers (RFC 5321 allows 10 minutes):
        past the 10 s timeout the email was left in doubt, never sent again."""
        server.mailbox.reply_delay = 1.5
        mailer, log = _mailer(engine, server, timeout=0.5, final_reply_timeout=5)
        assert mailer.send([REQUEST]) == [REQUEST]
        assert log.in_doubt() == [] and log.looked_up([("MP-1001", 1, 1)]).sent == {("MP-1001", 1, 1)}
        server.mailbox.reply_delay = 0
        second = REQUEST.model_copy(update={"invoice_version": 2})
        assert mailer.send([second]) == [second] and len(server.mailbox.messages) == 2

    def test_a_batch_begins_no_email_past_its_time_and_the_others_go_next(self, engine, server):
        """At 0.6 s an email (a relay's content filter), a batch of 500 outlived Kafka's five
        minutes: its partition went to another worker mid-batch, and an email the server then put
        off was dropped by both."""
        server.mailbox.reply_delay = 0.3
        mailer, log = _mailer(engine, server, batch_seconds=0.4)
        requests = [REQUEST.model_copy(update={"invoice_version": version}) for version in (1, 2, 3)]
        with pytest.raises(PutOff, match="2 of 3 emails sent in 1 s; the others go next"):
            mailer.send(requests)
        assert log.looked_up([("MP-1001", version, 1) for version in (1, 2, 3)]).sent == {
            ("MP-1001", 1, 1), ("MP-1001", 2, 1)}
        assert mailer.send(requests) == requests[2:]
        assert len(server.mailbox.messages) == 3 and log.in_doubt() == []

    @pytest.mark.parametrize("answer", ["251 2.0.0 Queued", "2.0.0 Ok: queued as 1234", "354 Go on"])
    def test_an_end_of_data_answered_otherwise_than_4xx_or_5xx_is_never_sent_again(self, engine, server, answer):
        """Any answer below 500 but 250 was taken for a 4xx: the claim was dropped, and an email the
        server had queued (a 251, a reply with no code) was sent again, for the bot to enter twice."""
        server.mailbox.refusals, server.mailbox.refusal = 1, answer
        mailer, log = _mailer(engine, server)
        if answer.startswith("251"):
            assert mailer.send([REQUEST]) == [REQUEST] and log.in_doubt() == []
        else:  # no SMTP reply: whether the server took it is not known
            with pytest.raises(Unavailable, match="answered with no SMTP reply"):
                mailer.send([REQUEST])
            assert log.in_doubt() == [("MP-1001", 1, 1)]
        assert mailer.send([REQUEST]) == [] and server.mailbox.refusals == 0 and server.mailbox.messages == []

    def test_a_message_refused_at_the_end_of_data_is_not_logged_and_is_sent_again(self, engine, server):
        server.mailbox.refusals = 1
        mailer, log = _mailer(engine, server)
        with pytest.raises(Unavailable, match="put the email off: 452 4.2.2 Mailbox full"):  # tried again later
            mailer.send([REQUEST])
        assert log.looked_up([("MP-1001", 1, 1)]).sent == set()
        assert mailer.send([REQUEST]) == [REQUEST]
        assert len(server.mailbox.messages) == 1 and log.in_doubt() == []

    def test_a_message_refused_for_good_is_a_data_error_logged_as_refused_and_never_sent_again(self, engine, server):
        """Forgotten, a refused hand-off was emailed when rpa.requests was read again (a new consumer
        group, an offset reset), after AP had released its failure and the retry had gone out."""
        server.mailbox.refusals, server.mailbox.refusal = 1, "554 5.6.0 Message content rejected"
        mailer, log = _mailer(engine, server)
        with pytest.raises(DataError, match="refused the email: 554 5.6.0 Message content rejected"):
            mailer.send([REQUEST])
        # Tried again, by the runtime one by one, by another worker, or read again: refused again,
        # so that its hand-off fails, and never emailed.
        another, _ = _mailer(engine, server)
        for sender in (mailer, another):
            assert sender.unsent([REQUEST]).requests == [REQUEST]
            with pytest.raises(DataError, match="554 5.6.0"):
                sender.send([REQUEST])
        assert log.in_doubt() == [] and server.mailbox.messages == []
        again = REQUEST.model_copy(update={"attempt": 2})  # AP released the failure: the retry goes
        assert another.send([again]) == [again]
        assert another.unsent([REQUEST]).requests == [] and len(server.mailbox.messages) == 1

    def test_a_refusal_the_sent_log_could_not_take_is_sent_again(self, engine, server):
        """Its claim kept as sent, the email was neither sent nor failed, for good."""
        server.mailbox.refusals, server.mailbox.refusal = 1, "554 5.6.0 Message content rejected"
        mailer, log = _mailer(engine, server, _RefuseFailsOnce)
        with pytest.raises(Unavailable, match="processscheduler"):
            mailer.send([REQUEST])
        assert mailer.unsent([REQUEST]).requests == [REQUEST] and mailer.send([REQUEST]) == [REQUEST]
        assert len(server.mailbox.messages) == 1 and log.in_doubt() == []

    def test_a_full_mailbox_makes_the_emails_wait_and_refuses_no_invoice(self, engine, server):
        """A 5xx at the end of data that names the mailbox (5.2.2 full, 5.2.1 disabled): every email
        would be refused alike, and each invoice's hand-off failed in turn until it was emptied."""
        server.mailbox.refusals, server.mailbox.refusal = 1, "552 5.2.2 Mailbox full: quota exceeded"
        mailer, log = _mailer(engine, server, refused_pause=0.5)
        with pytest.raises(Unavailable, match="refused the email: 552 5.2.2 Mailbox full"):
            mailer.send([REQUEST])
        assert log.looked_up([("MP-1001", 1, 1)]).sent == set()
        with pytest.raises(Unavailable, match="refused the email: 552"):  # not asked again before the pause
            mailer.send([REQUEST])
        time.sleep(0.5)
        assert mailer.send([REQUEST]) == [REQUEST] and len(server.mailbox.messages) == 1

    @pytest.mark.parametrize("refusal", [
        "550 5.7.60 SMTP; Client does not have permissions to send as this sender",  # a wrong RPA_MAIL_FROM
        "550 5.2.0 STOREDRV.Submission.Exception:SendAsDeniedException",  # Exchange's, the same
        # Exchange Online's daily sending quota, its sender blocked as a spammer, banned
        "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to process message",
        "550 5.1.8 Access denied, bad outbound sender",
        "550 5.7.511 Access denied, banned sender",
        "452 4.3.1 Insufficient system storage",
        "421 Service not available, closing transmission channel",
    ])
    def test_a_refusal_about_the_sender_or_the_mail_system_makes_the_emails_wait(self, engine, server, refusal):
        """Each was charged to the email: a wrong sender failed every ready invoice's hand-off, a
        full disk on the mail server one invoice every put_off_for_good seconds."""
        server.mailbox.refusals, server.mailbox.refusal = 100, refusal
        mailer, log = _mailer(engine, server, refused_pause=0.01, put_off_for_good=0.05)
        for _ in range(3):
            with pytest.raises(Unavailable, match=refusal.split(";")[0][:20]):
                mailer.send([REQUEST])
            time.sleep(0.06)
        server.mailbox.refusals = 0
        assert mailer.send([REQUEST]) == [REQUEST] and log.in_doubt() == []

    def test_an_email_put_off_for_good_is_refused_and_the_emails_after_it_go(self, engine, server):
        """A content filter that answers 451 to one email every time: tried again and again, it held
        every email after it."""
        server.mailbox.refusals, server.mailbox.refusal = 100, "451 4.7.1 Try again later"
        mailer, log = _mailer(engine, server, put_off_for_good=0.3)
        with pytest.raises(PutOff, match="put the email for MP-1001 v1 \\(hand-off 1\\) off: 451"):
            mailer.send([REQUEST])
        time.sleep(0.3)
        other = REQUEST.model_copy(update={"invoice_id": "MP-2"})
        with pytest.raises(DataError, match="put the email off for 0.3 s: 451 4.7.1"):
            mailer.send([REQUEST, other])
        # The runtime tries the batch again record by record: the email stays given up.
        with pytest.raises(DataError, match="refused the email: put off for 0.3 s: 451 4.7.1"):
            mailer.send([REQUEST])
        server.mailbox.refusals = 0
        assert mailer.send([other]) == [other] and log.in_doubt() == []
        assert log.looked_up([("MP-1001", 1, 1)]).sent == set()
        # Forgotten, it was emailed when rpa.requests was read again (another worker, a replay).
        another, _ = _mailer(engine, server)
        with pytest.raises(DataError, match="refused the email: put off for 0.3 s: 451 4.7.1"):
            another.send([REQUEST])
        assert len(server.mailbox.messages) == 1  # MP-2's

    def test_an_email_put_off_while_the_mailbox_is_full_is_never_given_up(self, engine, server):
        """452 4.2.2 puts every email off alike: counted against the first, it was refused, then the next."""
        server.mailbox.refusals = 100  # 452 4.2.2 Mailbox full
        mailer, _ = _mailer(engine, server, put_off_for_good=0.1)
        for _ in range(2):
            with pytest.raises(Unavailable, match="put the email off: 452 4.2.2"):
                mailer.send([REQUEST])
            time.sleep(0.15)

    def test_a_recipient_the_server_refuses_makes_the_emails_wait_and_refuses_no_invoice(self, engine, server):
        """A disabled mailbox or a wrong RPA_MAIL_TO: every email would be refused alike, and each
        invoice's hand-off failed; an outage of the mailbox waits, and goes on once it is fixed."""
        server.mailbox.recipient_refusal = "550 5.1.1 <b@t>: Recipient address rejected: mailbox disabled"
        mailer, _ = _mailer(engine, server, refused_pause=0.5)
        with pytest.raises(Unavailable, match="refused the session: 550 5.1.1 <b@t>: Recipient address rejected"):
            mailer.send([REQUEST])
        server.mailbox.recipient_refusal = None
        # Not asked again before the pause (a wrong password asked every few seconds locks the account).
        with pytest.raises(Unavailable, match="refused the session: 550"):
            mailer.send([REQUEST])
        time.sleep(0.5)
        assert mailer.send([REQUEST]) == [REQUEST] and len(server.mailbox.messages) == 1

    def test_a_refused_email_is_sent_again_after_the_database_failed_to_forget_it(self, engine, server):
        """Its claim kept, the email counted as sent, and its PO waited for a completion for good."""
        server.mailbox.refusals = 1
        mailer, log = _mailer(engine, server, _ForgetFailsOnce)
        with pytest.raises(Unavailable, match="processscheduler"):
            mailer.send([REQUEST])
        assert mailer.unsent([REQUEST]).requests == [REQUEST]  # the agent asks first: taken for sent, it was never sent
        assert mailer.send([REQUEST]) == [REQUEST]
        assert len(server.mailbox.messages) == 1 and log.in_doubt() == []

    def test_a_claim_kept_for_want_of_the_database_stays_in_doubt_until_its_request_comes_back(self, engine, server):
        """Dropped at the next send of any email, a claim whose partition had moved to another worker,
        which took it for the email sent, was gone without a trace: the email never sent, no failure."""
        server.mailbox.refusals, server.mailbox.refusal = 1, "451 4.7.1 Try again later"
        first, log = _mailer(engine, server, _ForgetFailsOnce)
        with pytest.raises(Unavailable, match="processscheduler"):
            first.send([REQUEST])
        second, _ = _mailer(engine, server)  # the worker the partition moved to
        assert second.unsent([REQUEST]).requests == []
        other = REQUEST.model_copy(update={"invoice_id": "MP-2"})
        assert first.send([other]) == [other] and log.in_doubt() == [("MP-1001", 1, 1)]  # for the operator
        assert first.send([REQUEST]) == [REQUEST] and log.in_doubt() == []  # back here: sent

    def test_a_crash_before_the_log_commits_sends_nothing_and_the_replay_sends_once(self, engine, server):
        upgrade(engine)
        dying = SmtpRpaMailer(host="127.0.0.1", port=server.port, mail_from="a@t", mail_to="b@t",
                              sent_log=_CrashingSentLog(engine, after_commit=False))
        with pytest.raises(_Crash):
            dying.send([REQUEST])
        restarted = SmtpRpaMailer(host="127.0.0.1", port=server.port, mail_from="a@t", mail_to="b@t",
                                  sent_log=SqlSentLog(engine))
        assert restarted.send([REQUEST]) == [REQUEST]
        assert len(server.mailbox.messages) == 1

    def test_a_crash_after_the_log_commits_never_sends_a_second_copy(self, engine, server):
        upgrade(engine)
        dying = SmtpRpaMailer(host="127.0.0.1", port=server.port, mail_from="a@t", mail_to="b@t",
                              sent_log=_CrashingSentLog(engine, after_commit=True))
        with pytest.raises(_Crash):
            dying.send([REQUEST])
        log = SqlSentLog(engine)
        restarted = SmtpRpaMailer(host="127.0.0.1", port=server.port, mail_from="a@t", mail_to="b@t", sent_log=log)
        assert restarted.send([REQUEST]) == []
        assert server.mailbox.messages == []  # the unfinished message was dropped by the server
        assert log.in_doubt() == [("MP-1001", 1, 1)]


def _mailer(engine, server, sent_log=SqlSentLog, **options) -> tuple[SmtpRpaMailer, SqlSentLog]:
    upgrade(engine)
    log = sent_log(engine)
    return SmtpRpaMailer(host="127.0.0.1", port=server.port, mail_from="a@t", mail_to="b@t", sent_log=log,
                         **options), log


class _Crash(BaseException):
    """Stands for kill -9: nothing after it runs, no retry catches it."""


class _CrashingSentLog(SqlSentLog):
    def __init__(self, engine, after_commit: bool):
        super().__init__(engine)
        self.after_commit = after_commit

    @contextmanager
    def session(self):
        with super().session() as session:
            claim = session.claim

            def crash(invoice, mid):
                if self.after_commit:
                    claim(invoice, mid)
                raise _Crash

            session.claim = crash
            yield session


def _fails_once(step: str) -> type[SqlSentLog]:
    """A sent log whose session's `step` (forget, refuse) meets processscheduler away, once."""

    class FailsOnce(SqlSentLog):
        failed = False

        @contextmanager
        def session(self):
            with super().session() as session:
                done = getattr(session, step)

                def fail_once(*args):
                    if not self.failed:
                        self.failed = True
                        raise Unavailable("processscheduler", "connection reset")
                    done(*args)

                setattr(session, step, fail_once)
                yield session

    return FailsOnce


_RefuseFailsOnce, _ForgetFailsOnce = _fails_once("refuse"), _fails_once("forget")


@pytest.fixture(scope="module")
def certificate_authority():
    return trustme.CA()


def test_starttls_checks_the_servers_certificate(sqlite_engine, certificate_authority, tmp_path, monkeypatch):
    """smtplib's STARTTLS checks no certificate: whoever sat between the worker and the relay took
    the password and every invoice. The system's CAs refuse one they did not sign; the relay's CA,
    SMTP_CA_FILE as the composition root reads it, takes it."""
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate_authority.issue_cert("127.0.0.1").configure_cert(server_side)
    trusting = ssl.create_default_context()
    certificate_authority.configure_trust(trusting)
    with SmtpServer(tls=server_side) as server:
        stranger, log = _mailer(sqlite_engine, server, tls=ssl.create_default_context())
        with pytest.raises(Unavailable, match="CERTIFICATE_VERIFY_FAILED"):
            stranger.send([REQUEST])
        assert log.looked_up([("MP-1001", 1, 1)]).sent == set() and server.mailbox.received == []
        mailer, _ = _mailer(sqlite_engine, server, tls=trusting)
        assert mailer.send([REQUEST]) == [REQUEST] and len(server.mailbox.messages) == 1
        ca_file = tmp_path / "relay-ca.pem"
        certificate_authority.cert_pem.write_to_path(str(ca_file))
        for name, value in {"SMTP_PORT": str(server.port), "SMTP_STARTTLS": "true", "SMTP_CA_FILE": str(ca_file),
                            "SCHEDULER_DB_URL": str(sqlite_engine.url)}.items():
            monkeypatch.setenv(f"INVOICE_AUTOMATION_{name}", value)
        configured = _real_mailer(Settings(_env_file=None))
        second = REQUEST.model_copy(update={"invoice_version": 2})
        assert configured.send([second]) == [second] and len(server.mailbox.messages) == 2


def test_an_smtps_relay_is_spoken_to_in_tls_from_the_first_byte(sqlite_engine, certificate_authority, monkeypatch,
                                                                 tmp_path):
    """Only STARTTLS was spoken: an SMTPS relay (port 465) said nothing to the clear-text greeting,
    every email waited, and readiness said only "Connection unexpectedly closed: timed out"."""
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    certificate_authority.issue_cert("127.0.0.1").configure_cert(server_side)
    ca_file = tmp_path / "relay-ca.pem"
    certificate_authority.cert_pem.write_to_path(str(ca_file))
    with SmtpServer(tls=server_side, implicit_tls=True) as server:
        for name, value in {"SMTP_PORT": str(server.port), "SMTP_IMPLICIT_TLS": "true", "SMTP_CA_FILE": str(ca_file),
                            "SCHEDULER_DB_URL": str(sqlite_engine.url)}.items():
            monkeypatch.setenv(f"INVOICE_AUTOMATION_{name}", value)
        upgrade(sqlite_engine)
        assert _real_mailer(Settings(_env_file=None)).send([REQUEST]) == [REQUEST]
        assert len(server.mailbox.messages) == 1
        stranger, _ = _mailer(sqlite_engine, server, tls=ssl.create_default_context(), implicit_tls=True)
        with pytest.raises(Unavailable, match="CERTIFICATE_VERIFY_FAILED"):
            stranger.send([REQUEST.model_copy(update={"invoice_version": 2})])


class TestSmtpMailerSqlite(SmtpMailerContract):
    @pytest.fixture
    def engine(self, sqlite_engine):
        return sqlite_engine


class TestSmtpMailerPostgres(SmtpMailerContract):
    @pytest.fixture
    def engine(self, scheduler_pg_engine):
        return scheduler_pg_engine
