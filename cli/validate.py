"""`validate` and `validate-samples`: the rules on files, as the old HTTP endpoint answered them."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated

import typer
from pydantic import TypeAdapter
from rich.table import Table

from cli.files import InputFileError, fail, read_json, read_model, read_policy, read_validated
from cli.terminal import inert, stdout_console
from rules import EvaluationContext, KnownInvoice, PurchaseOrder, Verdict, evaluate
from rules.limits import Limits, purchase_order_problem

_HISTORY = TypeAdapter(list[KnownInvoice])

InvoiceOption = Annotated[
    Path, typer.Option("--invoice", help="The vendor's invoice as the marketplace holds it (canonical JSON).")
]
PoOption = Annotated[
    Path | None,
    typer.Option("--po", help="The Sampro purchase order snapshot (JSON). Leave out when Sampro has no such PO."),
]
HistoryOption = Annotated[
    Path | None,
    typer.Option(
        "--history",
        help="Invoices processed before, for the duplicate check: a JSON list of "
        '{"invoice_id", "vendor_id", "invoice_number", "status"}. Entries that were bad_invoice or '
        "po_not_found do not count.",
    ),
]
TolerancesOption = Annotated[
    Path | None,
    typer.Option("--tolerances", help="TOML file of price, total and quantity tolerances (default: the worker's "
                                      "INVOICE_AUTOMATION_TOLERANCES_FILE, else exact matching)."),
]
TodayOption = Annotated[
    str | None,
    typer.Option("--today", help="Date to judge invoice dates against, YYYY-MM-DD (default: today)."),
]


def _history(path: Path | None) -> list[KnownInvoice]:
    if path is None:
        return []
    return read_validated(path, "history", _HISTORY.validate_python)


def _today(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        today = date.fromisoformat(text)
    except ValueError:
        raise InputFileError(f"--today: expected YYYY-MM-DD, got {text!r:.80}") from None
    if today == date.max:  # the rules look a day ahead (a vendor east of UTC): past the last date there is
        raise InputFileError(f"--today: {text} is the last date there is; the rules look a day past it")
    return today


def judge_files(
    invoice: Path, po: Path | None, history: Path | None, tolerances: Path | None, today: str | None,
    limits: Limits = Limits(),
) -> Verdict:
    context = EvaluationContext(
        history=_history(history), policy=read_policy(tolerances), now=datetime.now(UTC), today=_today(today),
        limits=limits,
    )
    document = read_json(invoice, "invoice")
    snapshot = _purchase_order(po, document) if po else None
    return evaluate(document, snapshot, context)


def _purchase_order(path: Path, invoice: object) -> PurchaseOrder:
    """The PO file, held to what the pipeline holds Sampro's rows to: a quantity invoiced of -100
    made an invoice of 50 against 5 ordered ready, and a PO other than the invoice's judged it."""
    snapshot = read_model(path, "PO", PurchaseOrder)
    if (problem := purchase_order_problem(snapshot)) is not None:
        raise InputFileError(f"PO file {path}: {problem}")
    named = invoice.get("po_number") if isinstance(invoice, dict) else None
    if isinstance(named, str) and named.strip() != snapshot.po_number:
        raise InputFileError(f"PO file {path}: it is PO {snapshot.po_number!r:.80}, and the invoice names "
                             f"{named!r:.80}")
    return snapshot


def validate(
    invoice: InvoiceOption,
    po: PoOption = None,
    history: HistoryOption = None,
    tolerances: TolerancesOption = None,
    today: TodayOption = None,
) -> None:
    """Check one invoice against its purchase order and print the verdict as JSON.

    Judged as the worker judges: with its tolerances file and its MAX_INVOICE_LINES, unless
    --tolerances names another file. Exit code 0 whenever a verdict was produced
    (ready_to_process, manual_review, bad_invoice or po_not_found); 2 when an input file cannot be
    used.
    """
    from streams.adapters import limits_from
    from streams.settings import Settings

    settings = Settings()  # a hand check that ignored them answered otherwise than the worker
    try:
        verdict = judge_files(invoice, po, history, tolerances or settings.tolerances_file, today,
                              limits_from(settings))
    except InputFileError as exc:
        raise fail(exc) from None
    typer.echo(verdict.model_dump_json(indent=2, exclude={"audit"}))


def validate_samples(
    folder: Annotated[Path, typer.Argument(help="Folder with one sub-folder per sample case.")] = Path("samples"),
    today: Annotated[str, typer.Option(
        "--today", help="Date to judge the samples' invoice dates against, YYYY-MM-DD: the day they were "
                        "written for.")] = "2026-11-25",
) -> None:
    """Check every bundled sample (invoice.json, po.json, history.json) and print a summary table.

    Exit code 0 when every case was judged; 2 when a case's files or --today cannot be used.
    """
    cases = sorted(p for p in folder.iterdir() if (p / "invoice.json").exists()) if folder.is_dir() else []
    if not cases:
        raise fail(InputFileError(f"samples folder {folder}: no case with an invoice.json inside"))
    tolerances = folder / "tolerances.toml"
    try:
        _today(today)
    except InputFileError as exc:
        raise fail(exc) from None
    table = Table(title=f"Sample invoices ({len(cases)})")
    table.add_column("case", overflow="fold")
    for column in ("invoice", "PO", "status", "HTTP"):
        table.add_column(column, no_wrap=True)
    table.add_column("reasons", overflow="fold")
    unreadable = 0
    for case in cases:

        def optional(name: str, case: Path = case) -> Path | None:
            return case / name if (case / name).exists() else None

        try:
            verdict = judge_files(
                case / "invoice.json", optional("po.json"), optional("history.json"),
                tolerances if tolerances.exists() else None, today,
            )
        except InputFileError as exc:
            table.add_row(inert(case.name), "-", "-", "[red]unreadable[/]", "-", inert(exc))
            unreadable += 1
            continue
        reasons = ", ".join(dict.fromkeys(r.code for r in verdict.reasons)) or "-"
        table.add_row(inert(case.name), inert(verdict.invoice_id or "-"), inert(verdict.po_number or "-"),
                      verdict.status.value, str(verdict.http_status), reasons)
    stdout_console().print(table)
    if unreadable:
        raise typer.Exit(code=2)


def register(app: typer.Typer) -> None:
    app.command()(validate)
    app.command("validate-samples")(validate_samples)
