"""`demo`: the whole pipeline on embedded defaults, deciding the bundled sample invoices."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from cli.terminal import inert, stdout_console


def _summary(rows: list[dict], emails: int, entered: int) -> Table:
    table = Table(title=f"processscheduler after the demo: {emails} RPA emails, {entered} entered in Sampro")
    for column in ("invoice", "v", "PO", "vendor", "status", "HTTP", "reasons"):
        table.add_column(column, overflow="fold", no_wrap=column in ("invoice", "status"))
    for row in rows:
        reasons = ", ".join(dict.fromkeys(r["code"] for r in row["reasons"] or [])) or "-"
        table.add_row(inert(row["invoice_id"]), str(row["invoice_version"]), inert(row["po_number"] or "-"),
                      inert(row["vendor_id"] or "-"), row["status"], str(row["http_status"] or "-"), reasons)
    return table


def _print_api(console: Console, run) -> None:
    from devstack.demo import DEMO_USERS

    users = " or ".join(f"[bold]{name}[/] / {password} ({role})" for name, (password, role) in DEMO_USERS.items())
    console.print(f"Dashboard: [link]{run.api.url}/dashboard[/] (sign in as {users}); "
                  f"API document: {run.api.url}/openapi.json")
    console.print(f"RPA callbacks: POST {run.api.url}/rpa/invoices/ID/success|failure with "
                  f"'Authorization: Bearer {run.settings.api_token.get_secret_value()}'")


def demo(
    samples: Annotated[Path, typer.Option(help="Folder of sample cases (invoice.json, po.json, history.json).",
                                          exists=True, file_okay=False)] = Path("samples"),
    once: Annotated[bool, typer.Option("--once", help="Print the summary and stop, instead of running on.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for every invoice to be decided.")] = 120,
    api_port: Annotated[int, typer.Option(help="Port of the API and dashboard (another one when taken).",
                                          min=1, max=65535)] = 8000,
) -> None:
    """Start Kafka, the worker, a local SMTP mailbox, the API with the dashboard and a stand-in RPA bot;
    upload the samples to the marketplace; print what the pipeline decided. Ctrl-C stops everything."""
    from devstack import demo as run_demo

    root = Path.cwd()
    console = stdout_console()
    with console.status("Starting Kafka, the worker, the API and the RPA mailbox..."):
        run = run_demo.start(root, samples.resolve(), api_port)
    _print_api(console, run)
    try:
        run_demo.upload(run.settings, run.invoices)
        with Progress(TextColumn("Invoices decided"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=True) as progress:
            task = progress.add_task("decide", total=len(run.invoices))
            settled = run_demo.wait_until_settled(
                run, timeout, lambda done, total: progress.update(task, completed=done))
        cleared = None
        if settled:
            with console.status("The buyer corrects a PO price in Sampro; the held invoice is judged again..."):
                cleared = run_demo.correct_a_price(run, timeout)
        console.print(_summary(run.scheduler.rows(), len(run.mailbox.mailbox.messages), len(run.bot.entered)))
        if cleared:
            console.print(f"{cleared} was held for PRICE_MISMATCH; once the buyer corrected the PO price in Sampro, "
                          "the pipeline judged it again by itself, cleared it and the bot entered it.")
        if not settled:
            console.print(f"[red]not every invoice was decided within {timeout:.0f} s[/]; "
                          f"worker log: {run.worker.log}")
            raise typer.Exit(1)
        if not once:
            console.print("The pipeline keeps running: add rows to the marketplace table "
                          f"({run.settings.marketplace_db_url}), or release invoices on the dashboard "
                          f"({run.api.url}/dashboard). Ctrl-C stops everything.")
            run.worker.process.wait()
    except KeyboardInterrupt:
        console.print("stopping...")
    finally:
        run_demo.stop(run, root)


def register(app: typer.Typer) -> None:
    app.command()(demo)
