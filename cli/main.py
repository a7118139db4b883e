"""The `invoice-automation` console script: one Typer app, one module per command group."""

from __future__ import annotations

import errno
import os
import sys
from importlib.metadata import version
from typing import Annotated, Any, NoReturn, TextIO, cast

import typer

from cli import api, audit, demo, settings, stack, validate, worker
from cli.failures import OPERATOR_ERRORS, explain
from cli.terminal import HELP_OPTIONS
from streams.settings import PREFIX

app = typer.Typer(
    name="invoice-automation",
    help="Match marketplace vendor invoices against Sampro purchase orders and hand the ready ones to the RPA bot.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Click's own help: paragraphs of a docstring reflowed to the terminal, flags shown as flags. Rich's
    # kept each line break of the source and wrapped again between them, and showed `--json <bool>`,
    # which refused a value.
    rich_markup_mode=None,
    context_settings=HELP_OPTIONS,
)
# Commands that need none of the settings: help, the password hash that fixes API_USERS (a wrong
# one refused the command that would make it right), and the local stack.
SETTINGS_FREE = (("api", "hash-password"), ("stack",))

for command_module in (validate, stack, worker, demo, api, audit, settings):
    command_module.register(app)


def _print_version(wanted: bool) -> None:
    if wanted:
        typer.echo(f"invoice-automation {version('invoice-automation')}")
        raise typer.Exit()


@app.callback()
def start(
    show_version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                               help="Print the version and exit.")] = False,
) -> None:
    """Every command checks the INVOICE_AUTOMATION_* settings first (a misspelt one is refused) and
    logs WARNING and above, librdkafka's lines included, as LOG_FORMAT says."""
    from cli.logs import configure_logging
    from streams.settings import Settings

    arguments = sys.argv[1:]
    if (any(flag in arguments for flag in HELP_OPTIONS["help_option_names"])
            or any(arguments[:len(command)] == list(command) for command in SETTINGS_FREE)):
        return
    configure_logging("warning", Settings().log_format)


class _Stdout:
    """sys.stdout, whose failures say they were stdout's: a report or a table sent to a full disk
    (`> /dev/full`) was a traceback and exit 1, which `replay` gives for another reason."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except OSError as exc:
            raise _StdoutFailed(exc.errno, exc.strerror) from exc

    def flush(self) -> None:
        try:
            self.stream.flush()
        except OSError as exc:
            raise _StdoutFailed(exc.errno, exc.strerror) from exc

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


class _StdoutFailed(OSError):
    """An OSError of writing to stdout, and no other (a file a command reads is named in its own error)."""


def main() -> None:
    stdout = _Stdout(sys.stdout)
    sys.stdout = cast(TextIO, stdout)
    try:
        try:
            app()
        finally:
            # What is still buffered fails here, where it is said, not as Python exits ("Exception ignored", exit 120).
            sys.stdout.flush()
    except OPERATOR_ERRORS as error:
        lines = explain(error)
        if lines is None:
            raise
        _end_on(lines)
    except _StdoutFailed as error:
        _write_nowhere()
        if error.errno == errno.EPIPE:
            sys.exit(1)  # the reader went (`| head`): as Click says it
        _end_on([f"writing to stdout: {error.strerror or error}"])
    finally:
        if sys.stdout is stdout:  # not Click's wrapper that quiets a reader gone
            sys.stdout = stdout.stream


def _write_nowhere() -> None:
    """What stdout still buffers goes nowhere as Python exits, not to fail there again (Python's
    advice for a reader gone)."""
    try:
        descriptor = sys.stdout.fileno()
    except (OSError, ValueError):  # a stream that is no file (a test's): it writes nothing at exit
        return
    nowhere = os.open(os.devnull, os.O_WRONLY)
    os.dup2(nowhere, descriptor)
    os.close(nowhere)


def _end_on(lines: list[str]) -> NoReturn:
    from cli.logs import configure_logging, error_line, logs_json

    if not logs_json() and os.environ.get(f"{PREFIX}LOG_FORMAT", "").strip().lower() == "json":
        configure_logging("warning", "json")  # the settings failed before the logs were set up from them
    for line in lines:
        error_line(line)
    sys.exit(2)


if __name__ == "__main__":
    main()
