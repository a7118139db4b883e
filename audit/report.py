"""The replay report for an auditor, as JSON, CSV or a self-contained HTML page, written as the
verdicts come from a spool on disk: a report of ten million verdicts kept whole in memory took
5 GiB, and as much again as text."""

from __future__ import annotations

import csv
import html
import json
import os
import pickle
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, fields
from datetime import UTC, datetime
from typing import TextIO

from audit.replay import NAMED, ReplayedVerdict, ReplayReport

FORMATS = ("json", "csv", "html")


class SpoolError(Exception):
    """The temporary folder took no more (full, or a tmpfs out of memory): the report cannot be made."""


class Spool:
    """Every verdict judged again, in a temporary file in the order judged; read back as often as
    written. The file is this process's own, so pickle is safe here, and keeps each field's type.
    About 400 bytes a verdict, in the temporary folder (TMPDIR): on a tmpfs, that is memory."""

    def __init__(self) -> None:
        with self._failing("making"):
            self._file = tempfile.TemporaryFile()

    def __call__(self, items: list[ReplayedVerdict]) -> None:
        with self._failing("writing to"):
            self._file.seek(0, 2)
            for item in items:
                pickle.dump(item, self._file, pickle.HIGHEST_PROTOCOL)

    def __iter__(self) -> Iterator[ReplayedVerdict]:
        with self._failing("reading"):
            self._file.seek(0)
            while True:
                try:
                    yield pickle.load(self._file)
                except EOFError:
                    return

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._file.close()
        except OSError:  # what it could not write, nothing reads any more
            pass

    @contextmanager
    def _failing(self, doing: str) -> Iterator[None]:
        try:
            yield
        except OSError as error:
            # Not tempfile.gettempdir(): with no usable folder, it raises again.
            where = os.environ.get("TMPDIR") or "the system's temporary folder"
            raise SpoolError(f"{doing} the report's temporary file in {where} (TMPDIR): "
                             f"{error.strerror or error}") from None


def write(report: ReplayReport, fmt: str, items: Iterable[ReplayedVerdict], out: TextIO) -> None:
    """The report of `items`, every verdict judged (a `Spool`, or `report.items` when it kept them all)."""
    if fmt == "json":
        _json(report, items, out)
    elif fmt == "csv":
        _csv(items, out)
    elif fmt == "html":
        _html(report, items, out)
    else:
        raise ValueError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")


def _json(report: ReplayReport, items: Iterable[ReplayedVerdict], out: TextIO) -> None:
    head = json.dumps(report.summary(), indent=2)
    out.write(head.removesuffix("\n}") + ',\n  "items": [')
    for n, item in enumerate(items):
        out.write(("," if n else "") + "\n    " + json.dumps(asdict(item)))
    out.write("\n  ]\n}\n")


def _cell(value) -> str:
    if isinstance(value, tuple):
        return " ".join(value)
    return "" if value is None else str(value)


def _spreadsheet_cell(value) -> str:
    """The cell as a spreadsheet shows it, never runs it: an id a vendor chose may start with `=`,
    and Excel would run `=HYPERLINK(...)` on the auditor's machine. A leading `'` keeps it text
    (OWASP's advice for CSV injection); no id or status of the pipeline's own starts with one of these."""
    text = _cell(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _csv(items: Iterable[ReplayedVerdict], out: TextIO) -> None:
    writer = csv.writer(out)
    names = [f.name for f in fields(ReplayedVerdict)]
    writer.writerow(names)
    for item in items:
        row = asdict(item)
        writer.writerow([_spreadsheet_cell(row[name]) for name in names])


def _ms(value: int | None) -> str:
    return "-" if value is None else datetime.fromtimestamp(value / 1000, UTC).isoformat()


def _html(report: ReplayReport, items: Iterable[ReplayedVerdict], out: TextIO) -> None:
    e = html.escape
    sel = report.selection
    transitions = "".join(f"<tr><td>{e(a)}</td><td>{e(str(b))}</td><td>{n}</td></tr>"
                          for (a, b), n in report.transitions.most_common()) or "<tr><td colspan=3>none</td></tr>"
    reasons = "".join(f"<tr><td>{e(c)}</td><td>{e(k)}</td><td>{n}</td></tr>"
                      for (c, k), n in report.reason_changes.most_common()) or "<tr><td colspan=3>none</td></tr>"
    out.write(f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Verdict replay: {e(report.topic)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem}}table{{border-collapse:collapse;margin-bottom:1.5rem}}
td,th{{border:1px solid #ccc;padding:.25rem .5rem;text-align:left}}tr.changed{{background:#fff3cd}}</style></head>
<body><h1>Verdict replay</h1>
<p>Topic <b>{e(report.topic)}</b>, from {e(_ms(sel.since_ms))} to {e(_ms(sel.until_ms))}{
    ', invoices ' + e(', '.join(sorted(sel.invoice_ids))) if sel.invoice_ids else ''}{
    ', POs ' + e(', '.join(sorted(sel.po_numbers))) if sel.po_numbers else ''}; judged again under rules
<b>{e(report.rules_version)}</b> (the range is of when each verdict was written to the topic). {report.judged}
verdicts, <b>{report.changed} changed</b>, {report.copies} copies of them (written again by a reprocess or a
recovery) counted once,
{report.not_rederivable} without an audit record, {report.duplicates_not_judged} without the duplicate checks
beyond the very number (an audit of rules before 2026.12.1 kept no other earlier invoice: a POSSIBLE_DUPLICATE
today's rules would find is not among the changes), {report.undecodable_count} undecodable records,
{report.not_judged_count} verdicts the rules failed on (listed at the end, not in the table; the first
{NAMED:,} of each are named).</p>
<h2>Status transitions</h2><table><tr><th>recorded</th><th>re-derived</th><th>verdicts</th></tr>{transitions}</table>
<h2>Reasons</h2><table><tr><th>code</th><th>change</th><th>verdicts</th></tr>{reasons}</table>
<h2>Every verdict</h2><table><tr><th>invoice</th><th>v</th><th>PO</th><th>recorded at</th><th>rules</th>
<th>recorded</th><th>re-derived</th><th>recorded reasons</th><th>re-derived reasons</th></tr>""")
    for i in items:
        out.write(
            f"<tr class={'changed' if i.changed else 'same'}><td>{e(_cell(i.invoice_id))}</td>"
            f"<td>{_cell(i.invoice_version)}</td><td>{e(_cell(i.po_number))}</td><td>{e(i.recorded_at)}</td>"
            f"<td>{e(i.recorded_rules_version)}</td><td>{e(i.recorded_status)}</td>"
            f"<td>{e(_cell(i.rederived_status) or 'cannot re-derive')}"
            f"{'' if i.duplicates_judged or i.rederived_status is None else ' (duplicates not judged)'}</td>"
            f"<td>{e(_cell(i.recorded_reasons))}</td><td>{e(_cell(i.rederived_reasons))}</td></tr>\n")
    out.write("</table>\n")
    for title, places in (("Undecodable records", report.undecodable),
                          ("Verdicts the rules failed on", report.not_judged)):
        if places:
            out.write(f"<h2>{title}</h2><ul>{''.join(f'<li>{e(place)}</li>' for place in places)}</ul>\n")
    out.write("</body></html>\n")
