"""What a command says when it cannot go on for a reason the operator can fix: one line naming
what is wrong, where, and what to check, and exit code 2, instead of a traceback."""

from __future__ import annotations

import re

from pydantic import ValidationError
from pydantic_settings import SettingsError

from connectors.mssql import NoOdbcDriver
from devstack.process import StackError
from rules.errors import Misconfigured, Unavailable
from streams.settings import PREFIX, shown_value

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
# StackError: the local stack's scripts (Maven missing, a server that did not start), said in one line.
OPERATOR_ERRORS = (Unavailable, ValidationError, NoOdbcDriver, SettingsError, Misconfigured, StackError)


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
            if problem["type"] == "default_factory_not_called":
                continue  # a default database URL left unmade because a setting before it failed, which is named
            where = "__".join(str(part) for part in problem["loc"]).upper()
            message = problem["msg"].removeprefix("Value error, ")
            if not where:
                lines.extend(message.splitlines())
                continue
            shown = shown_value(str(problem["loc"][0]), problem.get("input"))
            lines.append(f"setting {PREFIX}{where}{'' if shown is None else '=' + shown}: {message}")
        return lines
    if isinstance(error, SettingsError):  # a JSON setting that is not JSON; its value may be a secret
        field = re.search(r'field "([a-z_]+)"', str(error))
        where = f"{PREFIX}{field.group(1).upper()}" if field else "a JSON setting"
        return [f"setting {where}: not JSON (a JSON list or object: see streams/settings.py)"]
    return [str(error)]
