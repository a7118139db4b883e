"""What a vendor wrote reaches the terminal as text: no markup, no escape sequence, no reordering."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from typer.testing import CliRunner

from audit.explain import Step, Story
from cli.main import app
from tests.unit.rules.builders import INVOICE

LINK = "\x1b]8;;https://evil.example/pay\x1b\\remit here\x1b]8;;\x1b\\"  # a terminal hyperlink
runner = CliRunner()


def test_validate_samples_shows_hostile_ids_as_text(tmp_path):
    case = tmp_path / "hostile"
    case.mkdir()
    invoice = {**INVOICE, "invoice_id": "INV [/b] [link=https://evil.example]x[/link]", "po_number": f"PO-1{LINK}"}
    (case / "invoice.json").write_text(json.dumps(invoice))
    result = runner.invoke(app, ["validate-samples", str(tmp_path)], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output  # `[/b]` read as markup: MarkupError
    assert "[/b] [link=https://evil.example]x[/link]" in result.output
    assert "\x1b" not in result.output and "PO-1\\u001b]8;;https://evil.example/pay" in result.output


def test_explain_shows_a_summary_as_text(monkeypatch):
    summary = f"vendor V-1\u202e0001 [link=https://evil.example]pay[/link] {LINK}"
    step = Step(at=datetime(2026, 11, 25, tzinfo=UTC), topic="invoices", partition=0, offset=7, invoice_version=1,
                what="received", summary=summary)
    monkeypatch.setattr("audit.explain.story", lambda *args, **kwargs: Story(steps=[step]))
    result = runner.invoke(app, ["explain", "MP-[/b]"], env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    assert "Invoice MP-[/b]" in result.output
    assert "V-1\\u202e0001 [link=https://evil.example]pay[/link] \\u001b]8;;" in result.output
    assert "\x1b" not in result.output and "\u202e" not in result.output


def test_explain_says_what_its_story_may_be_missing_and_exits_1(monkeypatch):
    step = Step(at=datetime(2026, 11, 25, tzinfo=UTC), topic="invoices", partition=0, offset=7, invoice_version=1,
                what="received", summary="version 1")
    told = Story(steps=[step], unreadable=["verdicts[2]@41: DecodeError: Verdict body cannot be read"],
                 missing_topics=["verdict"])
    monkeypatch.setattr("audit.explain.story", lambda *args, **kwargs: told)
    result = runner.invoke(app, ["explain", "MP-1"], env={"COLUMNS": "400"})
    assert result.exit_code == 1, result.output
    assert "incomplete: topic verdict does not exist (check the settings' topic names)" in result.output
    assert "incomplete: a record that may be about MP-1 could not be read: verdicts[2]@41: DecodeError" \
        in result.output
    assert "Invoice MP-1: 1 steps" in result.output

