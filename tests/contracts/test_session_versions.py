"""One contract for the API's session versions (connectors.api_ports.SessionVersions): in memory,
and in SQL on SQLite and PostgreSQL, where a sign-out outlives the process."""

from __future__ import annotations

import pytest

from connectors.session_versions import InMemorySessionVersions, SqlSessionVersions


class SessionVersionsContract:
    @pytest.fixture
    def versions(self):
        raise NotImplementedError

    def test_a_user_starts_at_zero_and_each_sign_out_moves_on(self, versions):
        assert versions.current("ana") == 0
        versions.end_sessions("ana")
        versions.end_sessions("ana")
        assert versions.current("ana") == 2

    def test_users_are_apart(self, versions):
        versions.end_sessions("ana")
        assert (versions.current("ana"), versions.current("victor")) == (1, 0)


class TestInMemorySessionVersions(SessionVersionsContract):
    @pytest.fixture
    def versions(self):
        return InMemorySessionVersions()


class SqlSessionVersionsContract(SessionVersionsContract):
    @pytest.fixture
    def engine(self):
        raise NotImplementedError

    @pytest.fixture
    def versions(self, engine):
        return SqlSessionVersions(engine)

    def test_a_sign_out_outlives_the_process(self, versions, engine):
        versions.end_sessions("ana")
        assert SqlSessionVersions(engine).current("ana") == 1


class TestSqliteSessionVersions(SqlSessionVersionsContract):
    @pytest.fixture
    def engine(self, sqlite_engine):
        return sqlite_engine


class TestPostgresSessionVersions(SqlSessionVersionsContract):
    @pytest.fixture
    def engine(self, scheduler_pg_engine):
        return scheduler_pg_engine
