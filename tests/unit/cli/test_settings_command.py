"""`settings`: every setting by its variable, with the value it would run with, secrets not shown."""

from __future__ import annotations

import os

from typer.testing import CliRunner

from cli.main import app
from streams.settings import Settings


def test_every_setting_is_listed_by_its_variable_and_a_secret_only_as_set(monkeypatch):
    monkeypatch.setenv("INVOICE_AUTOMATION_BATCH_SIZE", "250")
    monkeypatch.setenv("INVOICE_AUTOMATION_DATA_DIR", "/srv/ap")
    monkeypatch.setenv("INVOICE_AUTOMATION_API_TOKEN", "s3cret-token-of-the-rpa-bot")
    monkeypatch.setenv("COLUMNS", "300")  # one row per setting, unfolded
    result = CliRunner().invoke(app, ["settings"])
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[2:4]]
            for line in result.output.splitlines() if line.startswith("│ INVOICE_AUTOMATION_")}
    assert set(rows) == {f"INVOICE_AUTOMATION_{name.upper()}" for name in Settings.model_fields}
    assert rows["INVOICE_AUTOMATION_BATCH_SIZE"] == ["250", "500"]
    assert rows["INVOICE_AUTOMATION_API_TOKEN"][0].startswith("(set: not shown")
    assert "s3cret" not in result.output and rows["INVOICE_AUTOMATION_SMTP_PASSWORD"][0] == "(not set)"
    assert rows["INVOICE_AUTOMATION_DATA_DIR"][0] == "'/srv/ap'"  # a path is shown: which file is in use


def test_in_a_pipe_each_setting_is_one_line_that_grep_finds(monkeypatch):
    """Folded at Rich's 80 columns where stdout is no terminal, `settings | grep
    KAFKA_BOOTSTRAP_SERVERS` found nothing: the name was cut in two lines."""
    monkeypatch.delenv("INVOICE_AUTOMATION_KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setattr("os.get_terminal_size", lambda *args: os.terminal_size((80, 24)))  # as in a cron job
    result = CliRunner().invoke(app, ["settings"])
    assert result.exit_code == 0, result.output
    (line,) = [line for line in result.output.splitlines() if "KAFKA_BOOTSTRAP_SERVERS" in line]
    assert line.split("│")[1].strip() == "INVOICE_AUTOMATION_KAFKA_BOOTSTRAP_SERVERS" and "'127.0.0.1:9092'" in line
    for name in Settings.model_fields:
        assert f"│ INVOICE_AUTOMATION_{name.upper()} " in result.output


def test_a_url_no_one_set_is_shown_as_the_default_in_use_and_a_set_one_is_not_shown(monkeypatch):
    """Every URL read "(set: not shown ...)", the computed SQLite defaults too: an operator whose unit
    file had not loaded was told the production database URLs were set. Lists and groups of settings,
    no secrets, were hidden alike, and SAMPRO_NAMES could not be checked."""
    for name in ("SCHEDULER_DB_URL", "SAMPRO_DB_URL"):
        monkeypatch.delenv(f"INVOICE_AUTOMATION_{name}", raising=False)
    monkeypatch.setenv("INVOICE_AUTOMATION_DATA_DIR", "/srv/ap")
    monkeypatch.setenv("INVOICE_AUTOMATION_SAMPRO_DB_URL", "mssql+pyodbc://ap:pa55word@sampro/ERP")
    monkeypatch.setenv("INVOICE_AUTOMATION_SAMPRO_NAMES__PO_LINE", "PO_LINES")
    monkeypatch.setenv("COLUMNS", "300")
    result = CliRunner().invoke(app, ["settings"])
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip()
            for line in result.output.splitlines() if line.startswith("│ INVOICE_AUTOMATION_")}
    assert rows["INVOICE_AUTOMATION_SCHEDULER_DB_URL"] == "(not set: 'sqlite:////srv/ap/scheduler.db')"
    assert rows["INVOICE_AUTOMATION_SAMPRO_DB_URL"].startswith("(set: not shown") and "pa55word" not in result.output
    assert "'po_line': 'PO_LINES'" in rows["INVOICE_AUTOMATION_SAMPRO_NAMES"]
    assert rows["INVOICE_AUTOMATION_RELEASE_REASON_CODES"].startswith("['PRICE_AGREED'")
