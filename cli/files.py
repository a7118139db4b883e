"""Reading the files AP hands to the CLI; every problem is one line naming the file and the field."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError

from rules.parsing import field_path
from rules.policy import Policy, PolicyError, load_policy

M = TypeVar("M", bound=BaseModel)


class InputFileError(Exception):
    """A file the command cannot use; the message is the one line shown to the user."""


def read_json(path: Path, what: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputFileError(f"{what} file {path}: cannot be read ({exc.strerror or exc})") from None
    try:
        # Decimal for every JSON number: binary floating point never touches an amount.
        return json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as exc:
        raise InputFileError(
            f"{what} file {path}: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None


def read_model(path: Path, what: str, model: type[M]) -> M:
    document = read_json(path, what)
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        error = exc.errors(include_url=False)[0]
        more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
        shown = "" if error["type"] == "missing" else f", got {error.get('input')!r}"
        raise InputFileError(f"{what} file {path}: {field_path(error['loc'])}: {error['msg']}{shown}{more}") from None


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


def fail(error: Exception) -> typer.Exit:
    typer.echo(f"error: {error}", err=True)
    return typer.Exit(code=2)
