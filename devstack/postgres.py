"""A project-owned PostgreSQL 15 instance with logical decoding on, for Debezium.

PostgreSQL refuses to run as root, so as root every server command runs as the `postgres`
user, and the data directory is owned by it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
from pathlib import Path

from sqlalchemy import create_engine, text

from connectors.marketplace_table import metadata as marketplace_metadata
from devstack.install import POSTGRES_BIN
from devstack.process import StackError, runs_under, tail

ROLE, PASSWORD = "invoice", "invoice"
DATABASES = ("marketplace", "sampro", "scheduler")


def _as_server_user(argv: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def _own(path: Path) -> None:
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(path, user.pw_uid, user.pw_gid)


def _run(argv: list[str], what: str, log: Path | None = None) -> None:
    result = subprocess.run(_as_server_user(argv), capture_output=True, text=True)
    if result.returncode != 0:
        detail = (result.stdout + result.stderr).strip()[-2000:]
        hint = f"\nLast lines of {log}:\n{tail(log)}" if log else ""
        raise StackError(f"{what} failed: {detail}{hint}")


def url(port: int, database: str) -> str:
    return f"postgresql+psycopg://{ROLE}:{PASSWORD}@127.0.0.1:{port}/{database}"


def start_postgres(home: Path, port: int) -> None:
    """A new server on `home`, stopped again if it cannot be set up: pg_ctl detaches it, so a
    failed setup or a Ctrl-C left it running where no state file named it, and the next start
    wiped its folder under it and started a second one."""
    if runs_under(postgres_pid(home), home):  # one a start left behind; a stale pid file (a reboot) is no server
        stop_postgres(home)
    shutil.rmtree(home, ignore_errors=True)
    data, sockets, log = home / "data", home / "run", home / "postgres.log"
    for folder in (home, sockets):
        folder.mkdir(parents=True, exist_ok=True)
        _own(folder)
    # The server user must be able to reach its folder through the project's path.
    for parent in home.parents:
        if parent != Path("/") and not os.stat(parent).st_mode & 0o001:
            os.chmod(parent, os.stat(parent).st_mode | 0o001)
    _run([str(POSTGRES_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth-local=trust",
          "--auth-host=scram-sha-256", "-E", "UTF8", "--no-sync"], "initdb")
    log.touch()
    _own(log)
    try:
        restart_postgres(home, port)
        _setup(sockets, port)
    except BaseException:
        with contextlib.suppress(StackError):  # the failure that stopped the start is the one to show
            stop_postgres(home)
        raise


def restart_postgres(home: Path, port: int) -> None:
    """Starts the server on its existing data, as after a stop: what a database outage ends with."""
    data, sockets, log = home / "data", home / "run", home / "postgres.log"
    options = " ".join([
        f"-p {port}", f"-k {sockets}", "-c listen_addresses=127.0.0.1", "-c wal_level=logical",
        "-c max_wal_senders=10", "-c max_replication_slots=10", "-c fsync=off", "-c synchronous_commit=off",
        "-c full_page_writes=off",
    ])
    _run([str(POSTGRES_BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options, "-w", "-t", "60", "start"],
         "Starting PostgreSQL", log)


def _setup(sockets: Path, port: int) -> None:
    admin = create_engine(f"postgresql+psycopg://postgres@/postgres?host={sockets}&port={port}",
                          isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE ROLE {ROLE} LOGIN SUPERUSER REPLICATION PASSWORD '{PASSWORD}'"))
        for database in DATABASES:
            conn.execute(text(f"CREATE DATABASE {database} OWNER {ROLE}"))
    admin.dispose()
    marketplace = create_engine(url(port, "marketplace"))
    marketplace_metadata.create_all(marketplace)
    with marketplace.begin() as conn:
        # Deletes carry the whole old row, so a withdrawal still names its PO.
        conn.execute(text("ALTER TABLE marketplace_invoices REPLICA IDENTITY FULL"))
    marketplace.dispose()


def stop_postgres(home: Path) -> None:
    data = home / "data"
    if postgres_pid(home) is not None:
        _run([str(POSTGRES_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], "Stopping PostgreSQL")


def postgres_pid(home: Path) -> int | None:
    try:
        return int((home / "data" / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None
