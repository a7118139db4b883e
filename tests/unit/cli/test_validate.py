"""The `validate` command as AP runs it: a verdict on stdout, exit 2 and one line for unusable files."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app

SAMPLES = Path(__file__).resolve().parents[3] / "samples"
runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def sample(case: str, name: str) -> str:
    return str(SAMPLES / case / name)


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("01_ready_to_process", "ready_to_process"),
        ("02_manual_review_price", "manual_review"),
        ("04_bad_invoice_total", "bad_invoice"),
        ("06_bad_invoice_invalid", "bad_invoice"),
    ],
)
def test_prints_the_verdict_and_exits_0_whatever_the_status(case, status):
    result = run("validate", "--invoice", sample(case, "invoice.json"), "--po", sample(case, "po.json"),
                 "--today", "2026-11-25")
    assert result.exit_code == 0, result.output
    verdict = json.loads(result.stdout, parse_float=Decimal)
    assert verdict["status"] == status


def test_no_po_means_po_not_found():
    result = run("validate", "--invoice", sample("07_po_not_found", "invoice.json"))
    assert result.exit_code == 0
    assert json.loads(result.stdout)["http_status"] == 404


def test_history_feeds_the_duplicate_check():
    case = "05_bad_invoice_duplicate"
    args = ["validate", "--invoice", sample(case, "invoice.json"), "--po", sample(case, "po.json"),
            "--today", "2026-11-25"]
    assert json.loads(run(*args).stdout)["status"] == "ready_to_process"
    verdict = json.loads(run(*args, "--history", sample(case, "history.json")).stdout)
    assert [r["code"] for r in verdict["reasons"]] == ["DUPLICATE_INVOICE"]


def test_tolerances_file_applies_vendor_overrides():
    case = "09_ready_within_vendor_tolerance"
    args = ["validate", "--invoice", sample(case, "invoice.json"), "--po", sample(case, "po.json"),
            "--today", "2026-11-25"]
    assert json.loads(run(*args).stdout)["status"] == "manual_review"
    with_tolerance = run(*args, "--tolerances", str(SAMPLES / "tolerances.toml"))
    assert json.loads(with_tolerance.stdout)["status"] == "ready_to_process"


def test_money_stays_exact_on_the_wire():
    result = run("validate", "--invoice", sample("01_ready_to_process", "invoice.json"),
                 "--po", sample("01_ready_to_process", "po.json"), "--today", "2026-11-25")
    payload = json.loads(result.stdout)["rpa_payload"]
    assert payload["lines"][0]["unit_price"] == "15.50" and payload["total_amount"] == "57.52"


@pytest.mark.parametrize(
    ("content", "flag", "expected"),
    [
        (None, "--invoice", "invoice file"),
        ("{not json", "--invoice", "not JSON"),
        ('{"po_number": "PO-1", "vendor_id": "V1", "status": "lost", "currency": "USD", "order_date": "2026-01-01"}',
         "--po", "status"),
        ('[{"invoice_id": "A"}]', "--history", "history file"),
        ('{"a": 1}', "--history", "the file: Input should be a valid list, got {'a': 1}"),
        ("#" * 1_000_001, "--tolerances", "more than 1,000,000 bytes"),
        ('[default]\nprice_pct = "lots"\n', "--tolerances", "price_pct"),
        (b"\xff\xfe{}", "--invoice", "not UTF-8 text (byte 0: b'\\xff')"),
        ("[" * 100_000 + "]" * 100_000, "--invoice", "RecursionError"),
        ('{"total_amount": ' + "9" * 5000 + "}", "--invoice", "4300 digits"),
        ('{"invoice_number": "INV-\\ud800"}', "--invoice", "invoice_number holds a lone surrogate"),
        (b"[default]\nprice_pct = 1\n# \xff\n", "--tolerances", "not UTF-8 text (byte 26"),
        ('[default]\nprice_pct = "1e999999999"\n', "--tolerances", "at most 14 digits before the point"),
    ],
    ids=["missing", "not-json", "bad-status", "bad-history", "history-not-a-list", "tolerances-too-large",
         "bad-tolerance", "not-utf8", "too-deep",
         "int-too-long", "lone-surrogate", "tolerances-not-utf8", "tolerance-too-large"],
)
def test_unusable_file_exits_2_with_one_line_naming_file_and_field(tmp_path, content, flag, expected):
    path = tmp_path / "input"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    args = {"--invoice": sample("01_ready_to_process", "invoice.json"),
            "--po": sample("01_ready_to_process", "po.json")}
    args[flag] = str(path)
    flat = [part for pair in args.items() for part in pair]
    result = run("validate", *flat)
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and expected in lines[0]


@pytest.mark.parametrize("ends", ["\r\n", "\r"], ids=["crlf", "cr"])
def test_a_tolerances_file_with_windows_or_old_mac_line_ends_is_read(tmp_path, ends):
    """Read as bytes, a bare CR (TOML takes none) refused a file `read_text` had read."""
    from cli.files import read_policy

    path = tmp_path / "tolerances.toml"
    path.write_bytes(ends.join(["[default]", "price_pct = 2  # two per cent", ""]).encode())
    assert read_policy(path).default.price_pct == 2


@pytest.mark.parametrize(("change", "expected"), [
    (lambda po: po["lines"][0].update(quantity_invoiced="-100"), "line 1: quantity_invoiced -100 is below zero"),
    (lambda po: po["lines"].append(dict(po["lines"][0])), "line 1 appears more than once"),
    (lambda po: po.update(po_number="PO-9999"), "it is PO 'PO-9999', and the invoice names 'PO-5001'"),
    (lambda po: po["lines"][0].update(quantity_ordered="1e999999999"), "is not a number Sampro keeps"),
    (lambda po: po["lines"][0].update(line_no=2**31), "line 2147483648 is not a line number Sampro keeps"),
], ids=["negative-invoiced", "line-twice", "another-po", "overflowing", "line-past-32-bits"])
def test_a_po_file_is_held_to_what_sampros_rows_are(tmp_path, change, expected):
    """Taken as it was, a quantity invoiced of -100 made an invoice of 50 against 5 ordered ready,
    and 1e999999999 stopped the command with a traceback."""
    po = json.loads(Path(sample("01_ready_to_process", "po.json")).read_text())
    change(po)
    path = tmp_path / "po.json"
    path.write_text(json.dumps(po))
    result = run("validate", "--invoice", sample("01_ready_to_process", "invoice.json"), "--po", str(path))
    assert result.exit_code == 2 and expected in result.stderr and str(path) in result.stderr


def test_bad_today_is_refused():
    result = run("validate", "--invoice", sample("01_ready_to_process", "invoice.json"), "--today", "25/11/2026")
    assert result.exit_code == 2 and "--today" in result.stderr


def test_validate_samples_lists_every_case():
    result = run("validate-samples", str(SAMPLES))
    assert result.exit_code == 0
    for number in range(1001, 1011):
        assert f"MP-{number}" in result.stdout
    # the status column's, not the cases' names (07_po_not_found)
    assert result.stdout.count("│ po_not_found ") == 1 and result.stdout.count("│ ready_to_process ") == 3


def test_validate_samples_exits_2_when_a_case_or_the_day_cannot_be_used(tmp_path):
    """It exited 0 with every case unreadable."""
    assert run("validate-samples", str(SAMPLES), "--today", "25/11").exit_code == 2
    case = tmp_path / "01_broken"
    case.mkdir()
    (case / "invoice.json").write_text("{not json")
    result = run("validate-samples", str(tmp_path))
    assert result.exit_code == 2 and "unreadable" in result.stdout


def test_judged_as_the_worker_judges_with_its_tolerances_file_and_line_limit(monkeypatch):
    """A hand check that ignored the worker's settings answered otherwise than production did."""
    case = "09_ready_within_vendor_tolerance"
    args = ["validate", "--invoice", sample(case, "invoice.json"), "--po", sample(case, "po.json"),
            "--today", "2026-11-25"]
    monkeypatch.setenv("INVOICE_AUTOMATION_TOLERANCES_FILE", str(SAMPLES / "tolerances.toml"))
    assert json.loads(run(*args).stdout)["status"] == "ready_to_process"
    monkeypatch.setenv("INVOICE_AUTOMATION_MAX_INVOICE_LINES", "1")
    verdict = json.loads(run(*args).stdout)
    assert verdict["status"] == "bad_invoice" and "at most 1 are accepted" in verdict["reasons"][0]["message"]


def test_the_last_date_there_is_is_refused_as_today_in_one_line():
    result = run("validate", "--invoice", sample("01_ready_to_process", "invoice.json"), "--today", "9999-12-31")
    assert result.exit_code == 2 and "--today: 9999-12-31 is the last date there is" in result.output
