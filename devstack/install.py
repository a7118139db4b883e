"""Fetching what the stack runs: jars from Maven Central (cached in ~/.m2 and the project cache),
PostgreSQL 15 and Chromium (for the dashboard's browser tests) from Debian's packages when missing."""

from __future__ import annotations

import ctypes.util
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from devstack.process import StackError

KAFKA_VERSION = "4.3.1"
DEBEZIUM_VERSION = "3.6.1.Final"
POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")
CHROMIUM = Path("/usr/bin/chromium")
POM = Path(__file__).with_name("maven") / "pom.xml"
COMPONENTS = ("postgres", "kafka", "connect")  # what the stack runs, in the order it starts them


def cache_dir() -> Path:
    return Path(os.environ.get("INVOICE_AUTOMATION_CACHE", Path.home() / ".cache" / "invoice-automation"))


def kafka_lib() -> Path:
    return cache_dir() / f"kafka-{KAFKA_VERSION}" / "lib"


def debezium_plugins() -> Path:
    return cache_dir() / f"debezium-{DEBEZIUM_VERSION}"


def _run(argv: list[str], what: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        output = (result.stdout + result.stderr).strip().splitlines()[-25:]
        raise StackError(f"{what} failed ({' '.join(argv[:3])} ...):\n" + "\n".join(output))


def _mvn() -> str:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError("Maven (mvn) is not on PATH: install Maven 3 and Java 17 to run the local stack.")
    return mvn


def _fetched_with(done: Path) -> bool:
    """Whether the marker says it was fetched with this pom.xml: a version moved there (log4j,
    slf4j) was never fetched while the folder's marker stood."""
    try:
        return done.read_text() == _pom_digest()
    except OSError:
        return False


def _pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()


def install_jars() -> bool:
    """Kafka broker + Connect runtime + log4j2 binding; returns True if anything was fetched."""
    lib, done = kafka_lib(), kafka_lib() / ".complete"
    if _fetched_with(done):
        return False
    shutil.rmtree(lib, ignore_errors=True)
    _run([_mvn(), "-q", "-B", "-C", "-f", str(POM), "dependency:copy-dependencies",
          f"-DoutputDirectory={lib}", "-DincludeScope=runtime"], "Fetching the Kafka jars from Maven Central")
    done.write_text(_pom_digest())
    return True


def install_debezium() -> bool:
    plugins, done = debezium_plugins(), debezium_plugins() / ".complete"
    if _fetched_with(done):
        return False
    shutil.rmtree(plugins, ignore_errors=True)
    artifact = f"io.debezium:debezium-connector-postgres:{DEBEZIUM_VERSION}:tar.gz:plugin"
    # Unpacked again whatever the plugin's marker (in the checkout's target/) says: with the cache
    # wiped, or another cache, it unpacked nothing, and every later install failed.
    _run([_mvn(), "-q", "-B", "-C", "-f", str(POM), "dependency:unpack", f"-Dartifact={artifact}",
          f"-DoutputDirectory={plugins}", "-Dmdep.overWriteReleases=true"],
         "Fetching the Debezium PostgreSQL plugin from Maven Central")
    for leftover in plugins.glob("PaxHeaders*"):  # tar metadata, not a plugin
        shutil.rmtree(leftover, ignore_errors=True)
    if not any(plugins.glob("debezium-connector-postgres/*.jar")):
        raise StackError(f"The Debezium plugin archive unpacked no connector jars into {plugins}")
    done.write_text(_pom_digest())
    return True


def _apt_install(package: str, what: str) -> None:
    if os.geteuid() != 0:
        raise StackError(f"{what} is missing: run `sudo apt-get install -y {package}` (or run as root).")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", package]):
        result = subprocess.run(argv, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            raise StackError(f"{' '.join(argv)} failed:\n{result.stderr[-2000:]}")


def install_postgres() -> bool:
    if (POSTGRES_BIN / "initdb").exists():
        return False
    _apt_install("postgresql-15", "PostgreSQL 15")
    return True


def install_chromium() -> bool:
    """Debian's Chromium, which Playwright drives in the dashboard tests (it never downloads a browser)."""
    if CHROMIUM.exists():
        return False
    _apt_install("chromium", "Chromium")
    return True


def install_odbc() -> bool:
    """Debian's unixODBC driver manager, which pyodbc links against; the SQL Server driver itself
    comes with the `mssql` extra from PyPI."""
    if ctypes.util.find_library("odbc"):
        return False
    _apt_install("unixodbc", "unixODBC")
    return True


def install_all(browser: bool = False, odbc: bool = False, components: tuple[str, ...] = COMPONENTS) -> list[str]:
    """What the components need (all of them by default), and the browser and unixODBC when asked
    (only the tests use them); returns what was fetched this time."""
    steps = []
    if "postgres" in components:
        steps.append(("PostgreSQL 15", install_postgres))
    if "kafka" in components or "connect" in components:
        steps.append(("Kafka jars", install_jars))
    if "connect" in components:
        steps.append(("Debezium plugin", install_debezium))
    if browser:
        steps.append(("Chromium", install_chromium))
    if odbc:
        steps.append(("unixODBC", install_odbc))
    return [name for name, step in steps if step()]
