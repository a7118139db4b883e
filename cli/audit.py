"""`replay`, `explain` and `reprocess`: audit from the topics, under the settings' broker and topic names."""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Annotated, TextIO

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from cli.files import InputFileError, fail, not_text, read_policy
from cli.terminal import inert, stdout_console

err = Console(stderr=True)

SinceOption = Annotated[str | None, typer.Option(
    "--since", help="From this time on: YYYY-MM-DD (midnight UTC) or an ISO 8601 timestamp (UTC if no offset).")]
UntilOption = Annotated[str | None, typer.Option(
    "--until", help="Up to, not including, this time: YYYY-MM-DD or an ISO 8601 timestamp.")]


def parse_time(text: str | None, option: str) -> int | None:
    """Milliseconds since the epoch, as Kafka's record timestamps count."""
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text) if "T" in text or " " in text else None
        if moment is None:
            moment = datetime.combine(date.fromisoformat(text), datetime.min.time())
    except ValueError:
        raise InputFileError(f"{option} {text!r}: not a date (YYYY-MM-DD) or an ISO 8601 timestamp") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if moment.timestamp() < 0:  # Kafka takes -1 and -2 for "the end" and "the start" of a partition
        raise InputFileError(f"{option} {text!r}: before 1970-01-01, where Kafka's record times begin")
    return int(moment.timestamp() * 1000)


def time_range(since: str | None, until: str | None) -> tuple[int | None, int | None]:
    """--since and --until in milliseconds, the one before the other."""
    since_ms, until_ms = parse_time(since, "--since"), parse_time(until, "--until")
    if since_ms is not None and until_ms is not None and until_ms <= since_ms:
        raise InputFileError(f"--until {until!r} is not after --since {since!r}")
    return since_ms, until_ms


def _progress() -> Progress:
    # The description names a topic or a file as given, brackets and all: no markup.
    return Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                    TaskProgressColumn(), TextColumn("{task.fields[rate]}"),
                    TimeRemainingColumn(), console=err, transient=True)


SAID_EVERY = 10.0  # seconds between progress lines where stderr is no terminal (a cron job's log, a CI job)


def _advancing(progress: Progress, task: TaskID) -> Callable[[int], None]:
    """What moves the task on by n records, showing records a second since now. Where stderr is no
    terminal the bar is not drawn at all: a line every SAID_EVERY seconds says how far it is, or a
    run of an hour in a job's log was silent until its summary."""
    started = said = time.monotonic()

    def advance(n: int) -> None:
        nonlocal said
        progress.advance(task, n)
        now = time.monotonic()
        shown = progress.tasks[task]
        rate = shown.completed / ((now - started) or 1e-9)
        progress.update(task, rate=f"{rate:>9,.0f} records/s")
        if not progress.console.is_terminal and now - said >= SAID_EVERY:
            said = now
            of = f" of {shown.total:,.0f}" if shown.total is not None else ""
            progress.console.print(f"{shown.description}: {shown.completed:,.0f}{of} records, {rate:,.0f} records/s",
                                   markup=False, highlight=False)

    return advance


def replay(
    since: SinceOption = None,
    until: UntilOption = None,
    invoice: Annotated[list[str] | None, typer.Option(
        "--invoice", metavar="ID", help="Only this invoice id (repeatable).")] = None,
    po: Annotated[list[str] | None, typer.Option(
        "--po", metavar="PO", help="Only this PO number (repeatable).")] = None,
    tolerances: Annotated[Path | None, typer.Option(
        "--tolerances", help="Judge with these tolerances (TOML); by default the worker's "
        "INVOICE_AUTOMATION_TOLERANCES_FILE, else exact matching.")] = None,
    fmt: Annotated[str | None, typer.Option(
        "--format", metavar="json|csv|html",
        help="Write the full report as json, csv or html (to --output, else to stdout).")] = None,
    output: Annotated[Path | None, typer.Option("--output", help="File for the full report.")] = None,
    workers: Annotated[int | None, typer.Option(help="Processes that judge (default: one per core).")] = None,
    fail_on_change: Annotated[bool, typer.Option(
        "--fail-on-change", help="Exit 3 when any verdict would change (for a check before a rules change).")] = False,
) -> None:
    """Judge the recorded verdicts again under the current rules, and report what would change.

    Reads the verdicts topic over a time range and/or for some invoices or POs, and judges each
    verdict again against the PO snapshot, invoice and context recorded in it: Sampro and the live
    pipeline are not touched, no offset is committed. The range is of when each verdict was written
    to the topic (its record time, which Kafka maps to offsets per partition), not of when it was
    given: a verdict written again in the range by a reprocess or a recovery after a crash is in it.
    A verdict written more than once is counted once, its copies apart. Prints a summary of the changes by status
    transition and by reason.
    Exit code 0 when the replay ran; 3 with --fail-on-change when any verdict would change; else 1
    when it judged no verdict, none of those found had the audit record to be judged again by, or
    some records could not be read or judged (they are listed in the report), and with
    --fail-on-change when some verdicts' audits (rules before 2026.12.1) could not be judged again by
    the duplicate checks beyond the very number; 2 on unusable input, when Kafka or the schema
    registry does not answer, or when a process judging verdicts died (likely out of memory: give
    fewer --workers).
    """
    from audit.replay import JudgingProcessDied, Selection
    from audit.replay import replay as run_replay
    from audit.report import FORMATS, Spool, SpoolError, write
    from connectors.api_ports import TopicNotFound
    from connectors.topic_reader import KafkaTopicReader
    from streams.adapters import limits_from
    from streams.settings import Settings

    try:
        if fmt is not None and fmt not in FORMATS:
            raise InputFileError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
        if output is not None:
            fmt = _output_format(output, fmt, FORMATS)
        cores = os.cpu_count() or 1
        if workers is not None and not 1 <= workers <= cores:
            raise InputFileError(f"--workers {workers}: from 1 to {cores}, the cores this machine has")
        for option, ids in (("--invoice", invoice or []), ("--po", po or [])):
            if blank := [i for i in ids if not i.strip()]:
                raise InputFileError(f"{option} {blank[0]!r}: empty")
            for named in ids:
                not_text(named, option)
        since_ms, until_ms = time_range(since, until)
        selection = Selection(since_ms=since_ms, until_ms=until_ms, invoice_ids=frozenset(invoice or ()),
                              po_numbers=frozenset(po or ()))
    except InputFileError as exc:
        raise fail(exc) from None

    settings = Settings()
    try:
        # The worker's: judged with exact matching, verdicts given under tolerances all read as changed.
        policy = read_policy(tolerances or settings.tolerances_file)
    except InputFileError as exc:
        raise fail(exc) from None
    limits = limits_from(settings)
    reader = KafkaTopicReader(settings.kafka)
    spool = None
    try:
        spool = Spool() if fmt is not None else None
        with _progress() as progress:
            task = progress.add_task(f"Judging {settings.verdicts_topic} again", total=None, rate="")
            started = datetime.now(UTC)
            report = run_replay(reader, settings.verdicts_topic, selection, policy, limits=limits,
                                schema_registry_url=settings.schema_registry_url, workers=workers,
                                keep_items=False, spool=spool,
                                on_total=lambda total: progress.update(task, total=total),
                                on_progress=_advancing(progress, task))
            seconds = (datetime.now(UTC) - started).total_seconds()
            if spool is not None and fmt is not None and output is not None:
                progress.update(task, description=inert(f"Writing {output.name}").plain, rate="")
                items = progress.track(spool, total=report.judged, task_id=task)
                _write_whole(output, lambda out: write(report, fmt, items, out))
        if spool is not None and fmt is not None and output is None:
            # Once the progress bar, which takes stdout over on a terminal, is gone.
            write(report, fmt, spool, sys.stdout)
            sys.stdout.flush()  # a full disk fails the run here, before the summary says the replay went well
    except (TopicNotFound, SpoolError) as exc:
        raise fail(exc) from None
    except JudgingProcessDied as exc:
        # Exit 2, as for a machine the command cannot run on as asked: the operator can change that.
        raise fail(InputFileError(f"{exc}; run it again with fewer --workers")) from None
    finally:
        if spool is not None:
            spool.close()
    if output is not None:
        err.print(inert(f"full report ({fmt}): {output}"))
    _print_summary(report, seconds, limits.max_lines)
    if report.judged == 0:
        err.print("[yellow]no verdict was judged again[/]: nothing on the topic matched the selection "
                  "(--since/--until, --invoice, --po are exact)")
    if fail_on_change and report.changed:
        raise typer.Exit(3)
    if fail_on_change and report.duplicates_not_judged:
        # No change found is no pass where the duplicate checks were not judged again.
        err.print(f"[yellow]not passed[/]: {report.duplicates_not_judged:,} verdicts of rules before 2026.12.1 were "
                  "judged again without the duplicate checks beyond the very number, so no change there is not "
                  "known to be none (the full report, --format, marks each)")
        raise typer.Exit(1)
    # Some verdicts have no audit record (the bad_invoice of an invoice the pipeline failed to
    # judge): counted above. None with one: nothing was checked, and a gate must not pass.
    if report.judged == report.not_rederivable or report.undecodable_count or report.not_judged_count:
        raise typer.Exit(1)


def _output_format(output: Path, fmt: str | None, formats: tuple[str, ...]) -> str:
    """The report's format, and a place it can be written, checked before the topic is read."""
    suffix = output.suffix.lstrip(".").lower()
    if fmt is None and suffix not in formats:
        raise InputFileError(f"--output {output}: say --format json, csv or html")
    if fmt is not None and suffix in formats and suffix != fmt:
        raise InputFileError(f"--output {output}: a .{suffix} file for a {fmt} report; name it .{fmt}")
    if output.is_dir():
        raise InputFileError(f"--output {output}: a folder")
    if _replaceable(output):
        if not output.parent.is_dir() or not os.access(output.parent, os.W_OK):
            raise InputFileError(f"--output {output}: no folder to write it in")
    elif not os.access(output if output.exists() else output.resolve().parent, os.W_OK):  # a link to a new file
        raise InputFileError(f"--output {output}: cannot be written to")
    return fmt or suffix


def _replaceable(output: Path) -> bool:
    """Whether the report is written beside the file and put in its place: only where there is none,
    or a regular file. A link, a device or a pipe is written to as it is: /dev/stdout or a link to
    the share the auditors read became a regular file of the same name, and /dev/null one too."""
    try:
        return stat.S_ISREG(output.lstat().st_mode)
    except FileNotFoundError:
        return True


def _write_whole(output: Path, writer: Callable[[TextIO], None]) -> None:
    """The whole report or, on failure (a full disk), the report that was there before: written
    beside it, with its permissions (a report of mode 600 came back 644, vendors' prices readable by
    all), then put in its place. Anything but a regular file is written to as it is (_replaceable)."""
    if not _replaceable(output):
        try:
            with output.open("w", encoding="utf-8", newline="") as out:
                writer(out)
        except OSError as exc:
            raise fail(InputFileError(f"--output {output}: {exc.strerror or exc}")) from None
        return
    part = output.with_name(f".{output.name}.{os.getpid()}.part")
    try:
        kept = stat.S_IMODE(output.stat().st_mode) if output.exists() else None
        # Made with no permission beyond the kept ones: the report is never readable by more while written.
        created = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if kept is None else kept)
        if kept is not None:
            os.fchmod(created, kept)  # as it was, whatever the umask
        with open(created, "w", encoding="utf-8", newline="") as out:
            writer(out)
        os.replace(part, output)
    except OSError as exc:
        part.unlink(missing_ok=True)
        raise fail(InputFileError(f"--output {output}: {exc.strerror or exc}")) from None
    except BaseException:  # Ctrl-C, or the spool: no half report is left beside the file
        part.unlink(missing_ok=True)
        raise


def _print_summary(report, seconds: float, max_lines: int) -> None:
    # The line limit is the environment's (INVOICE_AUTOMATION_MAX_INVOICE_LINES), not the verdict's: said.
    err.print(f"{report.records_read:,} records read, {report.judged:,} verdicts judged again under rules "
              f"{report.rules_version} (invoices of {max_lines:,} lines at most) in {seconds:.1f} s: "
              f"[bold]{report.changed:,} would change[/]"
              + (f", {report.copies:,} copies of them (written again by a reprocess or a recovery) counted once"
                 if report.copies else "")
              + (f", {report.not_rederivable:,} have no audit record" if report.not_rederivable else "")
              + (f", {report.duplicates_not_judged:,} judged again without the duplicate checks beyond the very "
                 "number (rules before 2026.12.1 kept no other earlier invoice in the audit: a POSSIBLE_DUPLICATE "
                 "today's rules would find is not among the changes)" if report.duplicates_not_judged else "")
              + (f", {report.undecodable_count:,} records undecodable" if report.undecodable_count else "")
              + (f", {report.not_judged_count:,} verdicts the rules failed on (a bug: please report them)"
                 if report.not_judged_count else ""))
    if report.changed:
        transitions = Table(title="What would change, by status")
        for column in ("recorded", "re-derived", "verdicts"):
            transitions.add_column(column)
        for (recorded, rederived), count in report.transitions.most_common():
            transitions.add_row(recorded, rederived, f"{count:,}")
        reasons = Table(title="What would change, by reason")
        for column in ("reason", "change", "verdicts"):
            reasons.add_column(column)
        for (code, change), count in report.reason_changes.most_common():
            reasons.add_row(code, change, f"{count:,}")
        err.print(transitions)
        err.print(reasons)


def explain(
    invoice_id: Annotated[str, typer.Argument(help="The marketplace invoice id, e.g. MP-1001.")],
    since: SinceOption = None,
    until: UntilOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the steps as JSON.")] = False,
) -> None:
    """Tell one invoice's story from the topics: every version received, every verdict with its rules
    version and PO snapshot, parking, the RPA dispatch and completion, AP releases with who and why.

    Reads every record of six topics, the dead letters' with them (record timestamps from --since
    up to --until; by default all the topics keep, ten years unless their retention says
    otherwise): give the month the invoice came in to read only that. A step the pipeline refused
    says so, with the dead letter's why.
    Exit code 0 for the whole story; 1 when part of it may be missing (a record that holds the
    invoice id could not be read, a topic does not exist, or the story has no receipt of its first
    version where retention deleted the partition's first records: each is listed); 2 when nothing
    names it, on unusable input, or when Kafka or the schema registry does not answer.
    """
    from audit.explain import story
    from connectors.topic_reader import KafkaTopicReader
    from schemas.codec import codec_for
    from streams.settings import Settings

    try:
        if not invoice_id.strip():
            raise InputFileError(f"invoice id {invoice_id!r}: empty")
        not_text(invoice_id, "invoice id")
        since_ms, until_ms = time_range(since, until)
    except InputFileError as exc:
        raise fail(exc) from None
    settings = Settings()
    topics = [settings.invoices_topic, settings.verdicts_topic, settings.rpa_requests_topic,
              settings.completions_topic, settings.commands_topic, settings.dlq_topic]
    with _progress() as progress:
        task = progress.add_task("Reading the topics", total=None, rate="")
        told = story(KafkaTopicReader(settings.kafka), codec_for(settings.schema_registry_url),
                     topics, invoice_id, since_ms, until_ms, on_total=lambda total: progress.update(task, total=total),
                     on_progress=_advancing(progress, task))
    steps = told.steps
    within = "" if since is None and until is None else f" from {since or 'the start'} to {until or 'now'}"
    if not steps and told.complete:
        raise fail(InputFileError(f"invoice {invoice_id!r}: nothing about it on {', '.join(topics)}{within}"))
    if as_json:
        typer.echo(json.dumps([{**s.__dict__, "at": s.at.isoformat()} for s in steps], indent=2, default=str))
    else:
        table = Table(title=inert(f"Invoice {invoice_id}: {len(steps)} steps"))
        for column in ("when (UTC)", "v", "what", "", "from"):
            table.add_column(column, overflow="fold", no_wrap=column in ("when (UTC)", "what"))
        for s in steps:
            table.add_row(s.at.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3], str(s.invoice_version), s.what,
                          inert(s.summary), f"{s.topic}[{s.partition}]@{s.offset}")
        stdout_console().print(table)
    if within:  # exit 0 is then the whole story within the range, not the invoice's whole story
        err.print(inert(f"only the records{within}: steps outside it are not shown"))
    if not told.complete:
        for topic in told.missing_topics:
            err.print(inert(f"incomplete: topic {topic} does not exist (check the settings' topic names)"))
        for where in told.unreadable:
            err.print(inert(f"incomplete: a record that may be about {invoice_id} could not be read: {where}"))
        if told.deleted:
            err.print(inert(f"incomplete: the story has no receipt of its first version: its beginning may be "
                            f"among the records retention deleted from {invoice_id}'s partitions"))
        for gone in told.deleted:
            err.print(inert(f"incomplete: {gone}"))
        raise typer.Exit(1)


def reprocess(
    since: Annotated[str, typer.Option(
        "--since", help="Rewind to invoices recorded from then on (date or timestamp).")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only show what would be reprocessed.")] = False,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Run the live pipeline again over the invoices since a time, after a change of rules.

    Rewinds the pipeline's consumer group on the invoices topic. Invoices held under other rules
    (manual_review, awaiting_receipt, bad_invoice, po_not_found) are judged again, a failed
    hand-off AP released and held again at its next turn included: cleared now, it goes to the
    RPA bot as its next hand-off. Everything else is re-emitted as it stands and the sinks ignore
    it: no hand-off is emailed twice. Refused while a worker of the group runs (exit 1). Exit 2
    on unusable input.
    """
    from audit.reprocess import execute, plan
    from connectors.api_ports import GroupIsActive, TopicNotFound
    from connectors.consumer_groups import KafkaConsumerGroups
    from connectors.topic_reader import KafkaTopicReader
    from streams.settings import Settings

    try:
        since_ms = parse_time(since, "--since")
    except InputFileError as exc:
        raise fail(exc) from None
    settings = Settings()
    groups = KafkaConsumerGroups(settings.kafka)
    try:
        rewind = plan(KafkaTopicReader(settings.kafka), groups, settings.app_id,
                      settings.invoices_topic, since_ms)
    except TopicNotFound as exc:
        raise fail(exc) from None
    out = stdout_console()
    table = Table(title=f"Reprocess {settings.invoices_topic} for group {settings.app_id} since {since}")
    for column in ("partition", "committed", "rewind to", "end", "offsets again"):
        table.add_column(column, justify="right")
    for p in rewind.partitions:
        table.add_row(str(p.partition), "-" if p.committed is None else str(p.committed),
                      str(p.rewind_to) if p.moves else "-", str(p.end), str(p.to_reprocess))
    out.print(table)
    # Offsets, not invoices: counting the records would read them all now, as the workers will.
    out.print(f"{rewind.total:,} offset(s) of {settings.invoices_topic} would be read again: the vendors' "
              "uploads and deletes, the PO agent's moves and deletes told to another PO, and the "
              "transaction markers between them (one a transaction): more than the invoice versions "
              "judged again.")
    if unread := [str(p.partition) for p in rewind.partitions if p.committed is None]:
        out.print(f"Partition(s) {', '.join(unread)}: the group has committed nothing there, so its workers "
                  "read them from their start; they are left as they are.")
        if len(unread) == len(rewind.partitions):
            err.print(f"[yellow]{settings.app_id} has no offsets on {settings.invoices_topic} at all[/]: if its "
                      "workers ran before, Kafka dropped them (offsets.retention.minutes, 7 days by default after "
                      "the group stopped), and the workers will read the whole topic again.")
    if rewind.running_members:
        # Kafka's text as it is: a client id with brackets in it read as markup, and was a traceback.
        err.print(f"[red]refused[/]: worker(s) of {inert(settings.app_id)} are running "
                  f"({inert(', '.join(rewind.running_members))}); stop them, then run this again.")
        raise typer.Exit(1)
    if dry_run or rewind.total == 0:
        return
    if not yes and not typer.confirm("Rewind the pipeline now?"):
        raise typer.Exit(1)
    try:
        moved = execute(groups, rewind)
    except GroupIsActive as exc:
        err.print(f"[red]refused[/]: {inert(str(exc))}")
        raise typer.Exit(1) from None
    if left := sorted({p.partition for p in rewind.partitions if p.moves} - moved.keys()):
        err.print(f"[yellow]Partition(s) {', '.join(map(str, left))} left as they are[/]: the group's offset there "
                  "moved meanwhile to this plan's or before it, or is gone; it is never moved forward.")
    if not moved:
        out.print("Nothing was moved.")
        return
    out.print(f"Rewound partition(s) {', '.join(map(str, sorted(moved)))}. Start the workers: they judge "
              "again what the new rules may decide differently.")


def register(app: typer.Typer) -> None:
    app.command()(replay)
    app.command()(explain)
    app.command()(reprocess)
