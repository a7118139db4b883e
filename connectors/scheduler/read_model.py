"""processscheduler as AP reads it: invoice lists, one invoice with its history, the KPI figures.

The values of the read model's port (connectors.api_ports.InvoiceReadModel), and the pure helpers
that keep its two implementations, `read_model_sql` and `read_model_memory`, from drifting apart;
the same contract suite runs on both.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any, overload

from pydantic import BaseModel, ConfigDict, Field

from rules.lifecycle import InvoiceStatus
from rules.models import Finding, PurchaseOrder, RpaPayload
from rules.table import STATUS_OF

REASON_CODES: tuple[str, ...] = tuple(STATUS_OF)
WAITING = (InvoiceStatus.SENT_TO_RPA, InvoiceStatus.WAITING_FOR_PO)
RPA_OUTCOMES = (InvoiceStatus.ENTERED, InvoiceStatus.RPA_FAILED)
VERDICT_EVENT_PREFIX = "verdict:"  # rules.po_ledger.verdict_event_id
REJUDGED_MARK = ":after:"  # in the event id of a verdict given again after a Sampro change (verdict_event_id)
WINDOW_MINUTES = 60
MAX_PAGE = 500
# AP's own figures (touchless, first pass, holds cleared, cycle time) cover the last KPI_DAYS UTC days.
KPI_DAYS = 30
HELD = (InvoiceStatus.MANUAL_REVIEW, InvoiceStatus.AWAITING_RECEIPT, InvoiceStatus.BAD_INVOICE,
        InvoiceStatus.PO_NOT_FOUND)
EXCEPTIONS = (*HELD, InvoiceStatus.RPA_FAILED)  # open work for AP while an invoice version is in one of these
RPA_FAILED_REASON = "RPA_FAILED"  # an rpa_failed invoice's reason among the open exceptions: not a rule's finding
# A re-judgement of an invoice awaiting its goods is recorded as a manual_review verdict, then awaiting_receipt
# again: that verdict does not end the wait, so it does not restart the exception's age.
SAME_HOLD: dict[str, str] = {InvoiceStatus.AWAITING_RECEIPT: InvoiceStatus.MANUAL_REVIEW}
AGE_BUCKETS: tuple[tuple[str, int | None], ...] = (("0-1d", 1), ("1-3d", 3), ("3-7d", 7), ("7d+", None))

CHANGES_PER_CALL = 500  # history events one `changes` call reads at most: a backlog goes out in pieces


class _View(BaseModel):
    model_config = ConfigDict(frozen=True)


class InvoiceQuery(_View):
    status: InvoiceStatus | None = None
    po_number: str | None = None
    vendor_id: str | None = None
    decided_from: date | None = None  # inclusive, UTC days
    decided_to: date | None = None  # inclusive
    reason_code: str | None = None
    limit: int = Field(default=50, ge=1, le=MAX_PAGE)
    offset: int = Field(default=0, ge=0)
    # The page after the one whose `next_before` this is. An offset shifts under a clerk working
    # down a list: each invoice released from "manual_review" moved one from the next page onto
    # the page already read, never seen. A row's place (its processscheduler row) does not move.
    before: int | None = Field(default=None, ge=1)

    def decided_between(self) -> tuple[datetime | None, datetime | None]:
        """[start, end) in UTC for the decided date range."""
        start = datetime.combine(self.decided_from, datetime.min.time(), UTC) if self.decided_from else None
        end = (datetime.combine(self.decided_to + timedelta(days=1), datetime.min.time(), UTC)
               if self.decided_to and self.decided_to < date.max else None)  # to 9999-12-31: no end
        return start, end


class InvoiceSummary(_View):
    invoice_id: str
    invoice_version: int
    po_number: str | None
    vendor_id: str | None
    invoice_number: str | None
    status: InvoiceStatus
    http_status: int | None
    reason_codes: list[str]
    decided_at: datetime | None
    sampro_invoice_id: str | None


class InvoicePage(_View):
    items: list[InvoiceSummary]
    total: int
    limit: int
    offset: int
    next_before: int | None = Field(default=None, description="`before` for the next page; null on the last")


class HistoryEntry(_View):
    event_id: str
    status: InvoiceStatus
    occurred_at: datetime
    actor: str | None
    reason: str | None
    holds: list[str] = []  # the holds an AP release released with this step


class InvoiceDetail(InvoiceSummary):
    reasons: list[Finding]
    rpa_payload: RpaPayload | None
    po_snapshot: PurchaseOrder | None
    invoice_document: Any = None  # the invoice as the vendor sent it and the rules judged it
    rules_version: str | None
    versions: list[int]
    history: list[HistoryEntry]


class ApKpi(_View):
    """AP's own figures, from processscheduler's history. Counted per invoice version, as processscheduler
    keeps them: a corrected version the vendor sends is an invoice of its own."""

    period_start: datetime = Field(description=f"Midnight UTC of the first of the {KPI_DAYS} days the figures "
                                               "cover; the last is today")
    entered: int = Field(description="Invoice versions entered in Sampro in the period")
    entered_touchless: int = Field(description="Of those, entered without any AP action: never released, no "
                                               "status change made by a person (such as a dispatch approval)")
    touchless_rate: float | None = Field(description="entered_touchless / entered; null when none was entered")
    judged: int = Field(description="Invoice versions whose first verdict was given in the period")
    first_pass_ready: int = Field(description="Of those, the first verdict was ready_to_process")
    first_pass_match_rate: float | None = Field(description="first_pass_ready / judged; null when none was judged")
    holds_cleared_by_rejudgement: int = Field(
        description="Held invoices (manual_review, awaiting_receipt, bad_invoice, po_not_found) made ready in the "
                    "period by a verdict given again after a change in Sampro, or of the rules (reprocessed)")
    holds_cleared_by_clerk: int = Field(description="Held invoices released by a clerk in the period")
    cycle_time_median_seconds: float | None = Field(
        description="Median time from upload (the invoice version's first history event) to entered, over the "
                    "versions entered in the period; null when none was")
    cycle_time_p90_seconds: float | None = Field(description="The 90th percentile of the same")
    entered_touchless_per_day: list[int] = Field(description=f"{KPI_DAYS} UTC days, oldest first")
    entered_touched_per_day: list[int] = Field(description="Entered after some AP action, per day likewise")
    open_exceptions: int = Field(description="Invoice versions now in " + ", ".join(EXCEPTIONS))
    open_exceptions_by_age: dict[str, int] = Field(
        description="By days since the invoice entered its current status: " + ", ".join(b for b, _ in AGE_BUCKETS)
                    + " (the lower bound included)")
    open_exceptions_by_reason: dict[str, int] = Field(
        description=f"By finding code of the held ones; {RPA_FAILED_REASON} for those the RPA bot could not enter")


class StatusFigures(_View):
    """What the pipeline is doing now, from the current rows and the last hour's history: all that
    /metrics exports, without the figures over all of history or the KPI period that `Kpi` adds."""

    as_of: datetime
    total: int
    by_status: dict[str, int]  # every lifecycle status, zeros included
    waiting_for_rpa: int
    parked: int
    oldest_waiting_since: datetime | None  # sent to the RPA bot or parked, whichever waits longest
    window_start: datetime  # the first of WINDOW_MINUTES one-minute buckets; the last one is the current minute
    verdicts_per_minute: list[int]
    verdicts_last_hour: dict[str, int]
    transitions_per_minute: dict[str, list[int]]  # every status change, by the status entered


class Kpi(StatusFigures):
    """The dashboard's figures: the status figures, the findings by code and AP's own."""

    by_reason: dict[str, int]  # invoice versions with a finding of that code (superseded ones left out)
    ap: ApKpi  # AP's own figures: touchless, first pass, holds cleared, cycle time, open exceptions


IdRange = tuple[int, int]  # history event ids, first and last


class Changes(_View):
    rows: list[InvoiceSummary]
    last_event: int  # pass back as `after` to get what changed since
    # Ids up to last_event not read yet: a writer that took them may commit after one that took
    # later ids (two workers); pass them back as `missing` for as long as they may still come.
    missing: list[IdRange] = []


def unread(after: int, asked: Sequence[IdRange], read: Iterable[int]) -> tuple[int, list[IdRange]]:
    """The last event after `after` read, and the ids of `asked` and of the span up to it that
    `read` does not hold, as ranges."""
    ids = sorted(set(read))
    last = max(ids[-1], after) if ids else after
    ranges: list[IdRange] = []
    for first, final in sorted({*asked, *([(after + 1, last)] if last > after else [])}):
        start = first
        for n in ids[bisect_left(ids, first):bisect_right(ids, final)]:
            if n > start:
                ranges.append((start, n - 1))
            start = n + 1
        if start <= final:
            ranges.append((start, final))
    return last, ranges


def is_note_at_bot(status: str, reason: str | None) -> bool:
    """A `sent_to_rpa` event with a reason is a note to the version the bot has (the vendor
    withdrew or replaced it), not a hand-off: the bot's hand-offs carry none (rules.po_ledger)."""
    return status == InvoiceStatus.SENT_TO_RPA and reason is not None


@overload
def as_utc(moment: datetime) -> datetime: ...
@overload
def as_utc(moment: None) -> None: ...
@overload
def as_utc(moment: datetime | None) -> datetime | None: ...
def as_utc(moment: datetime | None) -> datetime | None:
    """SQLite hands timestamps back without a zone; everything written here is UTC."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def window_start(now: datetime) -> datetime:
    return as_utc(now).replace(second=0, microsecond=0) - timedelta(minutes=WINDOW_MINUTES - 1)


def minute_bounds(start: datetime) -> list[tuple[datetime, datetime]]:
    return [(start + timedelta(minutes=i), start + timedelta(minutes=i + 1)) for i in range(WINDOW_MINUTES)]


def reason_codes(reasons: Sequence[Mapping[str, Any]] | None) -> list[str]:
    return list(dict.fromkeys(reason["code"] for reason in reasons or ()))


Row = Mapping[Any, Any]  # a row as a mapping: a dict, or SQLAlchemy's RowMapping (keyed by name or column)


def summary(row: Row) -> InvoiceSummary:
    return InvoiceSummary(
        invoice_id=row["invoice_id"], invoice_version=row["invoice_version"], po_number=row.get("po_number"),
        vendor_id=row.get("vendor_id"), invoice_number=row.get("invoice_number"), status=row["status"],
        http_status=row.get("http_status"), reason_codes=reason_codes(row.get("reasons")),
        decided_at=as_utc(row.get("decided_at")), sampro_invoice_id=row.get("sampro_invoice_id"))


def detail(row: Row, history: Iterable[Row], versions: Iterable[int]) -> InvoiceDetail:
    return InvoiceDetail(
        **summary(row).model_dump(), reasons=row.get("reasons") or [], rpa_payload=row.get("rpa_payload"),
        po_snapshot=row.get("po_snapshot"), invoice_document=row.get("invoice_document"),
        rules_version=row.get("rules_version"), versions=sorted(versions),
        history=[HistoryEntry(event_id=h["event_id"], status=h["status"], occurred_at=as_utc(h["occurred_at"]),
                              actor=h.get("actor"), reason=h.get("reason"), holds=h.get("holds") or [])
                 for h in history])


def status_figures(
    now: datetime, by_status: Mapping[str, int], oldest_waiting: datetime | None,
    per_minute: Iterable[tuple[str, bool, Sequence[int]]],
) -> StatusFigures:
    """Assembles the figures; `per_minute` is (status, is a verdict, counts per minute) per group."""
    statuses = {status.value: by_status.get(status.value, 0) for status in InvoiceStatus}
    transitions = {status.value: [0] * WINDOW_MINUTES for status in InvoiceStatus}
    verdicts, verdicts_by_status = [0] * WINDOW_MINUTES, dict[str, int]()
    for status, is_verdict, counts in per_minute:
        transitions[status] = [a + b for a, b in zip(transitions[status], counts, strict=True)]
        if is_verdict:
            verdicts = [a + b for a, b in zip(verdicts, counts, strict=True)]
            verdicts_by_status[status] = verdicts_by_status.get(status, 0) + sum(counts)
    return StatusFigures(
        as_of=as_utc(now), total=sum(statuses.values()), by_status=statuses,
        waiting_for_rpa=statuses[InvoiceStatus.SENT_TO_RPA.value], parked=statuses[InvoiceStatus.WAITING_FOR_PO.value],
        oldest_waiting_since=as_utc(oldest_waiting), window_start=window_start(now),
        verdicts_per_minute=verdicts, verdicts_last_hour=verdicts_by_status, transitions_per_minute=transitions)


def kpi(figures: StatusFigures, by_reason: Mapping[str, int], ap: ApKpi) -> Kpi:
    return Kpi(**dict(figures), ap=ap,
               by_reason={code: by_reason.get(code, 0) for code in REASON_CODES if by_reason.get(code)})


def period_start(now: datetime) -> datetime:
    first_day = as_utc(now).date() - timedelta(days=KPI_DAYS - 1)
    return datetime.combine(first_day, datetime.min.time(), UTC)


def age_bounds(now: datetime) -> list[tuple[str, datetime | None, datetime | None]]:
    """Per age bucket, (name, entered the status after, entered at or before): younger buckets first."""
    bounds: list[tuple[str, datetime | None, datetime | None]] = []
    newer: datetime | None = None
    for name, days in AGE_BUCKETS:
        older = as_utc(now) - timedelta(days=days) if days is not None else None
        bounds.append((name, older, newer))
        newer = older
    return bounds


def in_status_since(status: str, statuses: Iterable[tuple[str, datetime]]) -> datetime | None:
    """When an invoice version now in `status` entered it for its latest stay, from its history's
    (status, occurred_at) in order; a SAME_HOLD re-judgement in between does not end the stay."""
    since: datetime | None = None
    for event_status, occurred_at in statuses:
        if event_status == status:
            since = since or as_utc(occurred_at)
        elif SAME_HOLD.get(status) != event_status:
            since = None  # it left the status; only its latest stay counts
    return since


def by_age(now: datetime, sinces: Iterable[datetime | None]) -> dict[str, int]:
    """How many of the moments fall in each age bucket (every bucket named, younger first); None,
    a version with no event of its own status, has no age and is left out."""
    bounds, counts = age_bounds(now), {name: 0 for name, _ in AGE_BUCKETS}
    for since in sinces:
        if since is None:
            continue
        counts[next(name for name, after, at_or_before in bounds
                    if (after is None or since > after) and (at_or_before is None or since <= at_or_before))] += 1
    return counts


def entries_per_day(
    start: datetime, entries: Iterable[tuple[datetime, bool, datetime]],
) -> tuple[dict[bool, list[int]], list[float]]:
    """Invoice versions entered in the KPI period from `start`, each as (first entered at, touched by
    AP, its first event at): per day, touched or not, and each one's cycle time in seconds. One first
    entered before the period is left out: a note on it since (a withdrawal, a second entry) is an
    `entered` event too, and counted it as entered again."""
    per_day = {False: [0] * KPI_DAYS, True: [0] * KPI_DAYS}
    cycle_times: list[float] = []
    for entered_at, touched, first_at in entries:
        if not start <= as_utc(entered_at) < start + timedelta(days=KPI_DAYS):
            continue
        per_day[touched][(as_utc(entered_at) - start).days] += 1
        cycle_times.append((as_utc(entered_at) - as_utc(first_at)).total_seconds())
    return per_day, cycle_times


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Linear between the two nearest ranks (as PostgreSQL's percentile_cont and numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * fraction
    below = int(rank)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (rank - below)


def ap_kpi(
    now: datetime, per_day: Mapping[bool, Sequence[int]], judged: int, first_pass_ready: int,
    cleared_by_rejudgement: int, cleared_by_clerk: int, cycle_times: Sequence[float],
    open_by_age: Mapping[str, int], open_by_reason: Mapping[str, int],
) -> ApKpi:
    """Assembles AP's figures; `per_day` is the entries per day, keyed by whether AP touched them."""
    touchless, touched = list(per_day.get(False, [0] * KPI_DAYS)), list(per_day.get(True, [0] * KPI_DAYS))
    entered, entered_touchless = sum(touchless) + sum(touched), sum(touchless)
    by_reason = {code: open_by_reason.get(code, 0) for code in (*REASON_CODES, RPA_FAILED_REASON)
                 if open_by_reason.get(code)}
    return ApKpi(
        period_start=period_start(now), entered=entered, entered_touchless=entered_touchless,
        touchless_rate=entered_touchless / entered if entered else None, judged=judged,
        first_pass_ready=first_pass_ready, first_pass_match_rate=first_pass_ready / judged if judged else None,
        holds_cleared_by_rejudgement=cleared_by_rejudgement, holds_cleared_by_clerk=cleared_by_clerk,
        cycle_time_median_seconds=percentile(cycle_times, 0.5), cycle_time_p90_seconds=percentile(cycle_times, 0.9),
        entered_touchless_per_day=touchless, entered_touched_per_day=touched,
        open_exceptions=sum(open_by_age.values()),
        open_exceptions_by_age={name: open_by_age.get(name, 0) for name, _ in AGE_BUCKETS},
        open_exceptions_by_reason=by_reason)


def round_trips(events: Iterable[Row], since: datetime) -> list[float]:
    """Pairs each outcome since `since` with the latest sent_to_rpa of the same version before it.
    `events` are history rows in the order they were recorded."""
    sent: dict[tuple[str, int], datetime] = {}
    found = []
    for event in events:
        key, at = (event["invoice_id"], event["invoice_version"]), as_utc(event["occurred_at"])
        if is_note_at_bot(event["status"], event["reason"]):
            continue
        if event["status"] == InvoiceStatus.SENT_TO_RPA:
            sent[key] = at
        elif event["status"] in RPA_OUTCOMES and at >= as_utc(since) and key in sent:
            found.append((at - sent.pop(key)).total_seconds())
    return found
