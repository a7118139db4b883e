"""Reading the files AP hands to the CLI; every problem is one line naming the file and the field."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError

from rules.limits import lone_surrogate, not_json
from rules.parsing import field_path
from rules.policy import Policy, PolicyError, load_policy

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


class InputFileError(Exception):
    """A file the command cannot use; the message is the one line shown to the user."""


MAX_FILE_BYTES = 16_000_000  # as a record the pipeline takes (streams.record_size): an invoice or PO is far less


def read_json(path: Path, what: str) -> Any:
    try:
        with path.open("rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise InputFileError(f"{what} file {path}: cannot be read ({exc.strerror or exc})") from None
    if len(data) > MAX_FILE_BYTES:
        raise InputFileError(f"{what} file {path}: more than {MAX_FILE_BYTES:,} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{what} file {path}: not UTF-8 text (byte {exc.start}: "
                             f"{data[exc.start:exc.start + 1]!r})") from None
    try:
        # Decimal for every JSON number: binary floating point never touches an amount.
        value = json.loads(text, parse_float=Decimal, parse_constant=not_json)
    except json.JSONDecodeError as exc:
        raise InputFileError(
            f"{what} file {path}: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:  # a number of more than 4,300 digits; nesting past the stack
        raise InputFileError(f"{what} file {path}: not JSON this command reads ({type(exc).__name__}: "
                             f"{str(exc)[:200]})") from None
    if (where := lone_surrogate(text, value)) is not None:
        raise InputFileError(f"{what} file {path}: {where} holds a lone surrogate (a \\uD800-\\uDFFF escape "
                             "without its pair), which no text can carry")
    return value


def read_model(path: Path, what: str, model: type[M]) -> M:
    return read_validated(path, what, model.model_validate)


def read_validated(path: Path, what: str, validate: Callable[[Any], T]) -> T:
    """The file's JSON as `validate` makes it; a problem names the field and the value."""
    document = read_json(path, what)
    try:
        return validate(document)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        shown = "" if error["type"] == "missing" else f", got {error.get('input')!r:.80}"
        # A problem with the whole document has no field: it was named "invoice" in any file.
        where = field_path(error["loc"]) if error["loc"] else "the file"
        raise InputFileError(f"{what} file {path}: {where}: {error['msg']}{shown}{more}") from None


def read_policy(path: Path | None) -> Policy:
    """The tolerances in a TOML file; exact matching without one."""
    if path is None:
        return Policy()
    try:
        return load_policy(path)
    except OSError as exc:
        raise InputFileError(f"tolerances file {path}: cannot be read ({exc.strerror or exc})") from None
    except PolicyError as exc:
        raise InputFileError(f"tolerances file {exc}") from None


def not_text(value: str, what: str) -> None:
    """A command-line value the shell handed over as bytes that are not UTF-8 (Latin-1 pasted into a
    UTF-8 terminal): Python keeps them as surrogates, and the first encode was a traceback."""
    try:
        value.encode()
    except UnicodeEncodeError as exc:
        raise InputFileError(f"{what} {value!r:.80}: not UTF-8 text (byte {ord(value[exc.start]) - 0xDC00:#04x} at "
                             f"position {exc.start + 1}); type it again in a UTF-8 terminal") from None


def fail(error: Exception) -> typer.Exit:
    """The one line a command ends on for unusable input, exit 2: a JSON object with LOG_FORMAT=json,
    as `cli.main` writes the others (a log collector took the plain line for noise)."""
    from cli.logs import error_line

    error_line(str(error))
    return typer.Exit(code=2)
