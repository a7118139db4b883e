"""One contract for the RPA sent log as the API reads it (connectors.api_ports.RpaSentLog): in
memory, and SqlSentLog on SQLite and PostgreSQL, where the mailer's own use of it is held too."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, text

from connectors.rpa_mail import InMemorySentLog, SqlSentLog
from connectors.scheduler import upgrade
from connectors.scheduler.tables import history, processscheduler
from rules.errors import Unavailable
from tests.contracts.migrations import downgrade

CONFIRMED, CUT_OFF = ("MP-1", 1), ("MP-2", 1)  # invoice versions
FIRST, CUT_OFF_FIRST = (*CONFIRMED, 1), (*CUT_OFF, 1)  # their first hand-offs, as the mailer claims them


class RpaSentLogContract:
    @pytest.fixture
    def sent_log(self):
        """A sent log where CONFIRMED's email was accepted and CUT_OFF's was claimed, never answered."""
        raise NotImplementedError

    def test_only_the_email_without_an_answer_is_in_doubt(self, sent_log):
        assert sent_log.in_doubt() == [CUT_OFF_FIRST]

    def test_the_last_hand_off_of_a_version_counts_one_in_doubt_too(self, sent_log):
        assert sent_log.last_hand_off(*CONFIRMED) == 1 and sent_log.last_hand_off(*CUT_OFF) == 1
        assert sent_log.last_hand_off("MP-1", 2) == 0 and sent_log.last_hand_off("MP-9", 1) == 0


class TestInMemorySentLog(RpaSentLogContract):
    @pytest.fixture
    def sent_log(self):
        return InMemorySentLog(in_doubt=[CUT_OFF_FIRST], hand_offs=[FIRST, CUT_OFF_FIRST])


class SqlSentLogContract(RpaSentLogContract):
    @pytest.fixture
    def engine(self):
        raise NotImplementedError

    @pytest.fixture
    def empty(self, engine):
        upgrade(engine)
        return SqlSentLog(engine)

    @pytest.fixture
    def sent_log(self, empty):
        with empty.session() as session:
            assert session.claim(FIRST, "<a>") and session.claim(CUT_OFF_FIRST, "<b>")
            session.confirm(FIRST, "250 OK")
        return empty

    def test_an_email_is_claimed_once(self, empty):
        with empty.session() as session:
            assert session.claim(FIRST, "<a>")
            assert not session.claim(FIRST, "<a>")
        assert empty.looked_up([FIRST, CUT_OFF_FIRST]).sent == {FIRST}

    def test_a_second_hand_off_of_a_version_is_an_email_of_its_own(self, empty):
        second = (*CONFIRMED, 2)
        with empty.session() as session:
            assert session.claim(FIRST, "<a>")
            session.confirm(FIRST, "250 OK")
            assert session.claim(second, "<a2>")
            assert not session.claim(second, "<a2>")
        assert empty.looked_up([FIRST, second, (*CONFIRMED, 3)]).sent == {FIRST, second}
        assert empty.in_doubt() == [second]  # not answered yet
        assert empty.last_hand_off(*CONFIRMED) == 2

    def test_a_claim_and_a_reply_are_committed_before_the_next_step_of_the_email(self, empty):
        """The claim must be durable before the end-of-data dot goes out: another connection sees
        it while the batch is still under way, and sees the reply as soon as it is confirmed."""
        with empty.session() as session:
            assert session.claim(FIRST, "<a>")
            assert empty.looked_up([FIRST]).sent == {FIRST} and empty.in_doubt() == [FIRST]
            session.confirm(FIRST, "250 OK")
            assert empty.in_doubt() == []

    def test_a_forgotten_claim_may_be_claimed_again(self, empty):
        with empty.session() as session:
            session.claim(CUT_OFF_FIRST, "<b>")
            session.forget(CUT_OFF_FIRST)
        assert empty.looked_up([CUT_OFF_FIRST]).sent == set() and empty.in_doubt() == []
        with empty.session() as session:
            assert session.claim(CUT_OFF_FIRST, "<b>")

    def test_the_last_answer_is_written_when_the_session_ends(self, empty):
        with empty.session() as session:
            session.claim(FIRST, "<a>")
            session.confirm(FIRST, "250 OK")
        assert empty.in_doubt() == []

    def test_emails_logged_before_hand_offs_were_counted_are_each_versions_first(self, engine):
        upgrade(engine, "0007")
        with engine.begin() as conn:  # rows as revision 0007 wrote them
            conn.execute(text("INSERT INTO rpa_sent_log (invoice_id, invoice_version, message_id, sent_at, "
                              "server_reply) VALUES ('MP-1', 1, '<a>', :at, '250 OK'), ('MP-2', 1, '<b>', :at, NULL)"),
                         {"at": datetime(2026, 11, 25, tzinfo=UTC)})
        upgrade(engine)
        log = SqlSentLog(engine)
        assert log.looked_up([FIRST, CUT_OFF_FIRST, (*CONFIRMED, 2)]).sent == {FIRST, CUT_OFF_FIRST}
        assert log.in_doubt() == [CUT_OFF_FIRST]
        with log.session() as session:
            assert session.claim((*CONFIRMED, 2), "<a2>") and not session.claim(FIRST, "<a>")
        downgrade(engine, "0007")  # back to one row per version: the first hand-off's
        with engine.connect() as conn:
            assert conn.execute(text("SELECT invoice_id FROM rpa_sent_log ORDER BY invoice_id")).scalars().all() == [
                "MP-1", "MP-2"]

    def test_an_email_in_doubt_is_resolved_by_the_next_hand_off_or_by_the_bots_answer(self, sent_log, engine):
        """The operator reported it failed and AP released it (the README's way), or the bot had it
        and answered: the gauge stayed above zero for good, asking for what was done."""
        with sent_log.session() as session:
            assert session.claim((*CUT_OFF, 2), "<b2>")
            session.confirm((*CUT_OFF, 2), "250 OK")
            assert session.claim(("MP-3", 1, 1), "<c>") and session.claim(("MP-4", 1, 1), "<d>")
        assert sent_log.in_doubt() == [("MP-3", 1, 1), ("MP-4", 1, 1)]
        at = datetime(2026, 11, 25, tzinfo=UTC)
        with engine.begin() as conn:
            conn.execute(insert(processscheduler), [
                {"invoice_id": "MP-3", "invoice_version": 1, "status": "entered", "created_at": at, "updated_at": at},
                {"invoice_id": "MP-4", "invoice_version": 1, "status": "sent_to_rpa", "created_at": at,
                 "updated_at": at}])
        assert sent_log.in_doubt() == [("MP-4", 1, 1)]

    @pytest.mark.parametrize("now", ["released", "manual_review", "sent_to_rpa"])
    def test_an_email_in_doubt_the_operator_reported_failed_stays_resolved_whatever_its_version_does_next(
            self, empty, engine, now):
        """The README's way: the operator reports it failed, a clerk releases it. Waiting as `released`
        behind another invoice of its PO, it was listed in doubt again, and held anew at its turn
        (`manual_review`) for good: the gauge alerted about what nobody could act on. Its next hand-off
        (`sent_to_rpa`, not emailed yet) is no answer to look for either."""
        with empty.session() as session:
            assert session.claim(("MP-6", 1, 1), "<f>")
        reported = datetime.now(UTC) + timedelta(minutes=5)
        with engine.begin() as conn:
            conn.execute(insert(processscheduler), [{"invoice_id": "MP-6", "invoice_version": 1, "status": now,
                                                     "created_at": reported, "updated_at": reported}])
            conn.execute(insert(history), [
                {"event_id": f"MP-6:v1:{status}:{n}", "invoice_id": "MP-6", "invoice_version": 1, "status": status,
                 "occurred_at": reported + timedelta(minutes=n)}
                for n, status in enumerate(["rpa_failed", "released", now])])
        assert empty.in_doubt() == []

    def test_an_email_in_doubt_is_not_resolved_by_the_answer_to_an_earlier_hand_off(self, empty, engine):
        """Hand-off 1 failed and AP released it; hand-off 2 is the one in doubt, whatever the row shows."""
        failed = datetime.now(UTC) - timedelta(minutes=5)
        with engine.begin() as conn:
            conn.execute(insert(processscheduler), [{"invoice_id": "MP-7", "invoice_version": 1, "status": "released",
                                                     "created_at": failed, "updated_at": failed}])
            conn.execute(insert(history), [{"event_id": "MP-7:v1:rpa_failed", "invoice_id": "MP-7",
                                            "invoice_version": 1, "status": "rpa_failed", "occurred_at": failed}])
        with empty.session() as session:
            session.claim(("MP-7", 1, 1), "<g>")
            session.confirm(("MP-7", 1, 1), "250 OK")
            assert session.claim(("MP-7", 1, 2), "<g2>")
        assert empty.in_doubt() == [("MP-7", 1, 2)]

    @pytest.mark.parametrize(("status", "listed"), [("sent_to_rpa", True), ("rpa_failed", False), ("released", False),
                                                    ("manual_review", False)])
    def test_a_refused_email_is_in_doubt_only_while_its_version_shows_at_the_bot(self, empty, engine, status, listed):
        """Its failure not out (a crash between the refusal and it), the version stays at the bot for
        good; once the failure is in, AP's release (released, held again at the next turn) is no
        email to look for in the mailbox."""
        with empty.session() as session:
            assert session.claim(("MP-5", 1, 1), "<e>")
            session.refuse(("MP-5", 1, 1), "554 5.6.0 Message content rejected")
        at = datetime(2026, 11, 25, tzinfo=UTC)
        with engine.begin() as conn:
            conn.execute(insert(processscheduler), [{"invoice_id": "MP-5", "invoice_version": 1, "status": status,
                                                     "created_at": at, "updated_at": at}])
        assert empty.in_doubt() == ([("MP-5", 1, 1)] if listed else [])

    def test_a_log_without_its_table_is_unavailable(self, engine):
        with pytest.raises(Unavailable, match="processscheduler"):
            SqlSentLog(engine).in_doubt()


class TestSqliteSentLog(SqlSentLogContract):
    @pytest.fixture
    def engine(self, sqlite_engine):
        return sqlite_engine


class TestPostgresSentLog(SqlSentLogContract):
    @pytest.fixture
    def engine(self, scheduler_pg_engine):
        return scheduler_pg_engine

