"""Server-side session versions: a session cookie names the version its user's sessions had when
it was signed, and signing out moves the version on, which ends every session of that user (the
live event stream included, which checks again while it runs). Kept in a database of the API's
own (API_SESSIONS_DB_URL), so a signed-out cookie stays dead across restarts and replicas."""

from __future__ import annotations

from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, select, update
from sqlalchemy.exc import IntegrityError

from connectors.api_ports import SessionVersions
from connectors.sql import mapped_errors

SESSIONS_DATABASE = "the API's sessions database"
metadata = MetaData()
session_versions = Table("api_session_versions", metadata,
                         Column("user_name", String(200), primary_key=True),
                         Column("version", Integer, nullable=False))


class InMemorySessionVersions(SessionVersions):
    def __init__(self) -> None:
        self.versions: dict[str, int] = {}

    def current(self, user: str) -> int:
        return self.versions.get(user, 0)

    def end_sessions(self, user: str) -> None:
        self.versions[user] = self.current(user) + 1


class SqlSessionVersions(SessionVersions):
    """A database that cannot be reached is `Unavailable` (connectors.sql): the API answers 503."""

    def __init__(self, engine: Engine):
        self.engine = engine
        with mapped_errors(SESSIONS_DATABASE):
            metadata.create_all(engine)

    def current(self, user: str) -> int:
        with mapped_errors(SESSIONS_DATABASE), self.engine.connect() as conn:
            found = conn.execute(select(session_versions.c.version).where(session_versions.c.user_name == user))
            return found.scalar() or 0

    def end_sessions(self, user: str) -> None:
        row = session_versions.c
        with mapped_errors(SESSIONS_DATABASE):
            with self.engine.begin() as conn:
                moved = conn.execute(update(session_versions).where(row.user_name == user)
                                     .values(version=row.version + 1)).rowcount
            if not moved:
                try:
                    with self.engine.begin() as conn:
                        conn.execute(session_versions.insert().values(user_name=user, version=1))
                except IntegrityError:  # another replica signed the same user out at the same moment
                    self.end_sessions(user)
