"""What a command says when it cannot go on for a reason the operator can fix: one line naming
what is wrong, where, and what to check, and exit code 2, instead of a traceback."""

from __future__ import annotations

from pydantic import ValidationError

from connectors.mssql import NoOdbcDriver
from rules.errors import Unavailable
from streams.settings import PREFIX

# The setting that says where each dependency is.
WHERE = {
    "kafka": "KAFKA_BOOTSTRAP_SERVERS",
    "sampro": "SAMPRO_DB_URL",
    "processscheduler": "SCHEDULER_DB_URL",
    "marketplace": "MARKETPLACE_DB_URL",
    "smtp": "SMTP_HOST and SMTP_PORT",
    "schema-registry": "SCHEMA_REGISTRY_URL",
    "connect": "CONNECT_URL",
}
OPERATOR_ERRORS = (Unavailable, ValidationError, NoOdbcDriver)


def explain(error: BaseException) -> list[str] | None:
    """The lines to print for one of OPERATOR_ERRORS; None for a ValidationError of anything but the
    settings, which is a bug to see in full."""
    if isinstance(error, Unavailable):
        where = WHERE.get(error.dependency)
        check = f"check {PREFIX}{where} and that it runs" if where else "check that it runs"
        return [f"{error.dependency} does not answer ({error.detail}); {check}"]
    if isinstance(error, ValidationError):
        if error.title != "Settings":
            return None
        lines = []
        for problem in error.errors(include_url=False):
            where = "__".join(str(part) for part in problem["loc"]).upper()
            message = problem["msg"].removeprefix("Value error, ")
            lines.extend(message.splitlines() if not where else [f"setting {PREFIX}{where}: {message}"])
        return lines
    return [str(error)]
