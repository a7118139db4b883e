"""`stack install|up|down|status`: the local Kafka, Kafka Connect (Debezium) and PostgreSQL. A
StackError ends a command as every operator error does (cli.main): one `error:` line, exit 2."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cli.terminal import HELP_OPTIONS, stdout_console
from devstack import LocalStack
from devstack.stack import COMPONENTS

stack_app = typer.Typer(rich_markup_mode=None, context_settings=HELP_OPTIONS,
                        help="Run the local stack (Kafka 4.3.1, Kafka Connect with Debezium, PostgreSQL 15).",
                        no_args_is_help=True)
RootOption = Annotated[Path, typer.Option("--root", help="Project folder; state and data go to ROOT/.stack.",
                                          file_okay=False, exists=True)]

def _endpoints_table(stack: LocalStack) -> Table:
    endpoints = stack.endpoints()
    status = stack.status()
    table = Table(title="Local stack")
    table.add_column("component")
    table.add_column("state")
    table.add_column("where", overflow="fold")
    where = {
        "kafka": endpoints.kafka_bootstrap,
        "connect": endpoints.connect_url,
        "postgres": endpoints.marketplace_db_url and endpoints.marketplace_db_url.rsplit("/", 1)[0]
        + "/{marketplace,sampro,scheduler}",
    }
    for name in COMPONENTS:
        running = status[name]["running"]
        table.add_row(name, "[green]running[/]" if running else "stopped", (where[name] or "-") if running else "-")
    return table


@stack_app.command()
def install(
    browser: Annotated[bool, typer.Option("--browser", help="Also Chromium (apt), for the dashboard's browser tests.")]
    = False,
    odbc: Annotated[bool, typer.Option("--odbc", help="Also unixODBC (apt), for the SQL Server driver's tests.")]
    = False,
) -> None:
    """Fetch PostgreSQL 15 (apt), the Kafka jars and the Debezium plugin (Maven Central); cached."""
    console = stdout_console()
    with console.status("Fetching what the stack runs (cached after the first run)..."):
        started = time.monotonic()
        fetched = LocalStack().install(browser, odbc)
    console.print(f"fetched {', '.join(fetched)} in {time.monotonic() - started:.0f} s" if fetched else "all cached")


@stack_app.command()
def up(
    root: RootOption = Path("."),
    only: Annotated[str, typer.Option(help="Comma-separated subset of postgres,kafka,connect.")] = ",".join(COMPONENTS),
) -> None:
    """Start what is not running yet and print where each component listens."""
    stack = LocalStack(root.resolve())
    console = stdout_console()
    with console.status("Starting the local stack..."):
        started = time.monotonic()
        stack.up(tuple(part.strip() for part in only.split(",") if part.strip()))
    console.print(_endpoints_table(stack))
    console.print(f"ready in {time.monotonic() - started:.1f} s")


@stack_app.command()
def down(root: RootOption = Path(".")) -> None:
    """Stop every component; nothing is left running."""
    stopped = LocalStack(root.resolve()).down()
    stdout_console().print(f"stopped {', '.join(stopped)}" if stopped else "nothing was running")


@stack_app.command()
def status(root: RootOption = Path(".")) -> None:
    """Show what runs where. Exit code 1 when no stack was ever started from ROOT."""
    stack = LocalStack(root.resolve())
    if not stack.home.exists():  # it said "stopped" for a stack running from another folder
        typer.echo(f"no stack has been started from {root.resolve()} (its state would be in {stack.home}): run "
                   "this in the project folder, or give --root", err=True)
        raise typer.Exit(1)
    stdout_console().print(_endpoints_table(stack))


def register(app: typer.Typer) -> None:
    app.add_typer(stack_app, name="stack")
