"""One contract for the RPA sent log as the API reads it (connectors.api_ports.RpaSentLog): in
memory, and SqlSentLog on SQLite and PostgreSQL, where the mailer's own use of it is held too."""

from __future__ import annotations

import pytest

from connectors.rpa_mail import InMemorySentLog, SqlSentLog
from connectors.scheduler import upgrade
from rules.errors import Unavailable

CONFIRMED, CUT_OFF = ("MP-1", 1), ("MP-2", 1)


class RpaSentLogContract:
    @pytest.fixture
    def sent_log(self):
        """A sent log where CONFIRMED's email was accepted and CUT_OFF's was claimed, never answered."""
        raise NotImplementedError

    def test_only_the_email_without_an_answer_is_in_doubt(self, sent_log):
        assert sent_log.in_doubt() == [CUT_OFF]


class TestInMemorySentLog(RpaSentLogContract):
    @pytest.fixture
    def sent_log(self):
        return InMemorySentLog(in_doubt=[CUT_OFF])


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
            assert session.claim(CONFIRMED, "<a>") and session.claim(CUT_OFF, "<b>")
            session.confirm(CONFIRMED, "250 OK")
        return empty

    def test_an_email_is_claimed_once(self, empty):
        with empty.session() as session:
            assert session.claim(CONFIRMED, "<a>")
            assert not session.claim(CONFIRMED, "<a>")
        assert empty.sent_before([CONFIRMED, CUT_OFF]) == {CONFIRMED}

    def test_a_claim_and_a_reply_are_committed_before_the_next_step_of_the_email(self, empty):
        """The claim must be durable before the end-of-data dot goes out: another connection sees
        it while the batch is still under way, and sees the reply as soon as it is confirmed."""
        with empty.session() as session:
            assert session.claim(CONFIRMED, "<a>")
            assert empty.sent_before([CONFIRMED]) == {CONFIRMED} and empty.in_doubt() == [CONFIRMED]
            session.confirm(CONFIRMED, "250 OK")
            assert empty.in_doubt() == []

    def test_a_forgotten_claim_may_be_claimed_again(self, empty):
        with empty.session() as session:
            session.claim(CUT_OFF, "<b>")
            session.forget(CUT_OFF)
        assert empty.sent_before([CUT_OFF]) == set() and empty.in_doubt() == []
        with empty.session() as session:
            assert session.claim(CUT_OFF, "<b>")

    def test_the_last_answer_is_written_when_the_session_ends(self, empty):
        with empty.session() as session:
            session.claim(CONFIRMED, "<a>")
            session.confirm(CONFIRMED, "250 OK")
        assert empty.in_doubt() == []

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
