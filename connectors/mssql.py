"""SQL Server through pyodbc: which ODBC driver a `mssql+pyodbc` URL uses when it names none.

The `mssql` extra installs Microsoft's ODBC Driver 18 from PyPI (the `mssql-python-odbc` wheel,
which Microsoft publishes for its own `mssql-python`); pyodbc loads a driver by the path of its
library as well as by the name unixODBC's odbcinst.ini gives it, so no system-wide driver
registration is needed. A URL with `driver=...` keeps that driver.
"""

from __future__ import annotations

import platform
from pathlib import Path

from sqlalchemy.engine import URL

# Microsoft builds the Linux driver per distribution family (they link different system libraries).
_FAMILIES = {"debian": "debian_ubuntu", "ubuntu": "debian_ubuntu", "rhel": "rhel", "fedora": "rhel",
             "centos": "rhel", "suse": "suse", "opensuse": "suse"}
LOGIN_TIMEOUT_SECONDS = 5  # the driver's own 15 s would hold a worker that long on every try of a down Sampro


class NoOdbcDriver(ValueError):
    """A `mssql+pyodbc` URL names no driver, and none ships with the installation."""


def bundled_odbc_driver() -> Path | None:
    """The ODBC Driver 18 library of the `mssql-python-odbc` wheel for this Linux, if installed."""
    try:
        import mssql_python_odbc
    except ImportError:
        return None
    if platform.system() != "Linux":
        return None
    try:
        release = platform.freedesktop_os_release()
    except OSError:
        release = {}
    ids = [release.get("ID", ""), *release.get("ID_LIKE", "").split()]
    family = next((_FAMILIES[name] for name in ids if name in _FAMILIES), "debian_ubuntu")
    found = sorted(Path(mssql_python_odbc.get_libs_dir()).glob(f"linux/{family}/*/lib/libmsodbcsql-18*.so*"))
    return found[-1] if found else None


def with_odbc_driver(url: URL) -> URL:
    """The URL with the bundled driver when it names none; `NoOdbcDriver` when there is none to name."""
    if "driver" in url.query or "odbc_connect" in url.query:
        return url
    driver = bundled_odbc_driver()
    if driver is None:
        raise NoOdbcDriver(
            f"the SQL Server URL of database {url.database!r} names no ODBC driver and none is bundled: install "
            "the mssql extra (pip install 'invoice-automation[mssql]'), or add "
            "?driver=ODBC+Driver+18+for+SQL+Server for a driver registered with unixODBC")
    return url.update_query_dict({"driver": str(driver)})
