"""How the commands log: plain text lines, or one JSON object per line (LOG_FORMAT=json) for a log
collector. librdkafka's lines come through the same handler (connectors/kafka_clients.py)."""

from __future__ import annotations

import logging
import sys

import typer

TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def logs_json() -> bool:
    """Whether the logs are configured as JSON objects (LOG_FORMAT=json)."""
    formatter = sys.modules.get("pythonjsonlogger.json")
    return formatter is not None and any(isinstance(handler.formatter, formatter.JsonFormatter)
                                         for handler in logging.getLogger().handlers)


def error_line(text: str) -> None:
    """One line of an error a command ends on: a JSON object when the logs are (a log collector
    reading JSON objects takes a line of text for noise), else `error: ...` on stderr."""
    if logs_json():
        logging.getLogger("invoice_automation").error(text)
    else:
        typer.echo(f"error: {text}", err=True)


def configure_logging(level: str, log_format: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s",
                                           rename_fields={"asctime": "time", "levelname": "level", "name": "logger"}))
    else:
        handler.setFormatter(logging.Formatter(TEXT))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
