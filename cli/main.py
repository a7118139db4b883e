"""The `invoice-automation` console script: one Typer app, one module per command group."""

from __future__ import annotations

import typer

from cli import api, audit, demo, stack, validate, worker

app = typer.Typer(
    name="invoice-automation",
    help="Match marketplace vendor invoices against Sampro purchase orders and hand the ready ones to the RPA bot.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for command_module in (validate, stack, worker, demo, api, audit):
    command_module.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
