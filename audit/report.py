"""The replay report for an auditor, as JSON, CSV or a self-contained HTML page."""

from __future__ import annotations

import csv
import html
import io
import json
from dataclasses import asdict, fields
from datetime import UTC, datetime

from audit.replay import ReplayedVerdict, ReplayReport

FORMATS = ("json", "csv", "html")


def render(report: ReplayReport, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(report.as_dict(), indent=2) + "\n"
    if fmt == "csv":
        return _csv(report)
    if fmt == "html":
        return _html(report)
    raise ValueError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")


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


def _csv(report: ReplayReport) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    names = [f.name for f in fields(ReplayedVerdict)]
    writer.writerow(names)
    for item in report.items:
        row = asdict(item)
        writer.writerow([_spreadsheet_cell(row[name]) for name in names])
    return out.getvalue()


def _ms(value: int | None) -> str:
    return "-" if value is None else datetime.fromtimestamp(value / 1000, UTC).isoformat()


def _html(report: ReplayReport) -> str:
    e = html.escape
    sel = report.selection
    transitions = "".join(f"<tr><td>{e(a)}</td><td>{e(str(b))}</td><td>{n}</td></tr>"
                          for (a, b), n in report.transitions().most_common()) or "<tr><td colspan=3>none</td></tr>"
    reasons = "".join(f"<tr><td>{e(c)}</td><td>{e(k)}</td><td>{n}</td></tr>"
                      for (c, k), n in report.reason_changes().most_common()) or "<tr><td colspan=3>none</td></tr>"
    rows = "".join(
        f"<tr class={'changed' if i.changed else 'same'}><td>{e(_cell(i.invoice_id))}</td>"
        f"<td>{_cell(i.invoice_version)}</td><td>{e(_cell(i.po_number))}</td><td>{e(i.recorded_at)}</td><td>{e(i.recorded_rules_version)}</td>"
        f"<td>{e(i.recorded_status)}</td><td>{e(_cell(i.rederived_status) or 'cannot re-derive')}</td>"
        f"<td>{e(_cell(i.recorded_reasons))}</td><td>{e(_cell(i.rederived_reasons))}</td></tr>"
        for i in report.items)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Verdict replay: {e(report.topic)}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2rem}}table{{border-collapse:collapse;margin-bottom:1.5rem}}
td,th{{border:1px solid #ccc;padding:.25rem .5rem;text-align:left}}tr.changed{{background:#fff3cd}}</style></head>
<body><h1>Verdict replay</h1>
<p>Topic <b>{e(report.topic)}</b>, from {e(_ms(sel.since_ms))} to {e(_ms(sel.until_ms))}{
    ', invoices ' + e(', '.join(sorted(sel.invoice_ids))) if sel.invoice_ids else ''}{
    ', POs ' + e(', '.join(sorted(sel.po_numbers))) if sel.po_numbers else ''}; judged again under rules
<b>{e(report.rules_version)}</b>. {report.judged} verdicts, <b>{len(report.changed)} changed</b>,
{len(report.not_rederivable)} without an audit record, {len(report.undecodable)} undecodable records.</p>
<h2>Status transitions</h2><table><tr><th>recorded</th><th>re-derived</th><th>verdicts</th></tr>{transitions}</table>
<h2>Reasons</h2><table><tr><th>code</th><th>change</th><th>verdicts</th></tr>{reasons}</table>
<h2>Every verdict</h2><table><tr><th>invoice</th><th>v</th><th>PO</th><th>recorded at</th><th>rules</th>
<th>recorded</th><th>re-derived</th><th>recorded reasons</th><th>re-derived reasons</th></tr>{rows}</table>
</body></html>
"""
