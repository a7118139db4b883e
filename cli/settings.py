"""`settings`: every INVOICE_AUTOMATION_* setting, the value this process would run with, and its
default; the names were otherwise only in streams/settings.py and scattered through the README."""

from __future__ import annotations

import typer
from pydantic_core import PydanticUndefined, to_jsonable_python
from rich.table import Table

from cli.terminal import inert, stdout_console
from streams.settings import PREFIX, Settings, shortened, shown_value

HIDDEN = "(set: not shown, it may hold a secret)"


def settings() -> None:
    """List every setting: its variable, the value this process would run with (from the
    environment, a .env file or the default), and the default. Secrets, URLs (they may carry a
    password) and the API users are not shown, only whether they are set."""
    current = Settings()
    table = Table(title="INVOICE_AUTOMATION_* settings (see streams/settings.py for each one's why)")
    for column in ("variable", "value", "default"):
        table.add_column(column, overflow="fold")
    for name, field in Settings.model_fields.items():
        value = getattr(current, name)
        default = "(computed)" if field.default is PydanticUndefined else repr(field.default)
        table.add_row(f"{PREFIX}{name.upper()}", inert(_in_use(name, value, name in current.model_fields_set)),
                      inert(shortened(default)))
    stdout_console().print(table)


def _in_use(name: str, value: object, set_here: bool) -> str:
    if value in (None, [], ""):
        return "(not set)"
    if (shown := shown_value(name, value)) is not None:
        return shown
    # A default holds no secret, and the computed ones (the SQLite files in DATA_DIR) are what this
    # process would use: "(set)" for them told the operator whose unit file had not loaded that its
    # production database URLs were there.
    return HIDDEN if set_here else f"(not set: {shortened(repr(to_jsonable_python(value)))})"


def register(app: typer.Typer) -> None:
    app.command()(settings)
