"""`settings`: every INVOICE_AUTOMATION_* setting, the value this process would run with, and its
default; the names were otherwise only in streams/settings.py and scattered through the README."""

from __future__ import annotations

import typer
from pydantic_core import PydanticUndefined
from rich.table import Table

from cli.terminal import inert, stdout_console
from streams.settings import MAX_SHOWN_VALUE, PREFIX, Settings, shown_value

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
        shown = shown_value(name, value)
        default = "(computed)" if field.default is PydanticUndefined else repr(field.default)
        default = default if len(default) <= MAX_SHOWN_VALUE else default[:MAX_SHOWN_VALUE - 3] + "..."
        table.add_row(f"{PREFIX}{name.upper()}", inert(shown if shown is not None else
                                                       HIDDEN if value not in (None, [], "") else "(not set)"),
                      inert(default))
    stdout_console().print(table)


def register(app: typer.Typer) -> None:
    app.command()(settings)
