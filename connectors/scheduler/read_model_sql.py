"""The read model on SQLAlchemy Core: the same statements on PostgreSQL, SQLite and SQL Server.

Finding codes are searched in the short `reason_codes` column (` PRICE_MISMATCH `, as
`rows.reason_codes_column` writes it), not in the findings' JSON; per-minute figures are one
statement of SUM(CASE ...) columns, and "the event before this one" is a correlated MAX(id), so
nothing depends on a dialect's JSON, date or window functions.
Worked out in Python, from rows the KPI period or the open exceptions bound: the cycle-time
percentiles (SQL has no portable percentile: PostgreSQL's PERCENTILE_CONT is an ordered-set
aggregate, SQL Server's a window function, SQLite has none; nor a portable difference of two
timestamps), the entries per day beside them, and how long each open exception has been in its
status (by the memory model's rule, from its history).
A database that cannot be reached, or lacks the tables, is `Unavailable` (connectors.sql), which
the API answers with 503.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, and_, case, exists, func, not_, or_, select

from connectors.api_ports import InvoiceReadModel
from connectors.scheduler import read_model as views
from connectors.scheduler.read_model import (
    CHANGES_PER_CALL,
    EXCEPTIONS,
    HELD,
    KPI_DAYS,
    REASON_CODES,
    REJUDGED_MARK,
    RPA_FAILED_REASON,
    RPA_OUTCOMES,
    VERDICT_EVENT_PREFIX,
    WAITING,
    WINDOW_MINUTES,
    ApKpi,
    Changes,
    IdRange,
    InvoiceDetail,
    InvoicePage,
    InvoiceQuery,
    Kpi,
    StatusFigures,
)
from connectors.scheduler.rows import vendor_key_of
from connectors.scheduler.tables import history, processscheduler
from connectors.sql import mapped_errors
from rules.lifecycle import InvoiceStatus

p, h = processscheduler, history


def _reason_pattern(code: str) -> ColumnElement[bool]:
    escaped = code.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return p.c.reason_codes.like(f"% {escaped} %", escape="\\")


def _per_code(*only: ColumnElement[bool]) -> list[ColumnElement[Any]]:
    """One count per finding code of the rule table, of the rows that also meet `only`."""
    return [func.sum(case((and_(*only, _reason_pattern(code)), 1), else_=0)) for code in REASON_CODES]


def _counted(codes: tuple[str, ...], counts: Any) -> dict[str, int]:
    return dict(zip(codes, (int(n or 0) for n in counts), strict=True))


def _values(statuses: tuple[InvoiceStatus, ...]) -> list[str]:
    return [status.value for status in statuses]


def _same_version(a: Any, b: Any) -> ColumnElement[bool]:
    """`a` and `b` are tables or aliases with invoice_id and invoice_version columns."""
    return and_(a.c.invoice_id == b.c.invoice_id, a.c.invoice_version == b.c.invoice_version)


def _of_vendor(vendor_id: str) -> ColumnElement[bool]:
    """Rows of the vendor as the rules tell vendors apart (`rows.vendor_key_of`); a row with no key
    (an invoice without a number a duplicate check could look up) by its vendor id as sent."""
    return or_(p.c.vendor_key == vendor_key_of(vendor_id), and_(p.c.vendor_key.is_(None), p.c.vendor_id == vendor_id))


def _summary_columns() -> tuple[ColumnElement[Any], ...]:
    return (p.c.invoice_id, p.c.invoice_version, p.c.po_number, p.c.vendor_id, p.c.invoice_number, p.c.status,
            p.c.http_status, p.c.reasons, p.c.decided_at, p.c.sampro_invoice_id)


class SqlInvoiceReadModel(InvoiceReadModel):
    def __init__(self, engine: Engine):
        self.engine = engine

    def invoices(self, query: InvoiceQuery) -> InvoicePage:
        conditions = []
        for column, value in ((p.c.status, query.status), (p.c.po_number, query.po_number)):
            if value is not None:
                conditions.append(column == value)
        if query.vendor_id is not None:
            conditions.append(_of_vendor(query.vendor_id))
        start, end = query.decided_between()
        if start is not None:
            conditions.append(p.c.decided_at >= start)
        if end is not None:
            conditions.append(p.c.decided_at < end)
        if query.reason_code is not None:
            conditions.append(_reason_pattern(query.reason_code))
        after = [p.c.id < query.before] if query.before is not None else []
        page = (select(p.c.id, *_summary_columns()).where(*conditions, *after).order_by(p.c.id.desc())
                .limit(query.limit + 1).offset(query.offset))
        with mapped_errors("processscheduler"), self.engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(p).where(*conditions)).scalar_one()
            rows = conn.execute(page).mappings().all()
        shown = rows[:query.limit]
        return InvoicePage(items=[views.summary(row) for row in shown], total=total, limit=query.limit,
                           offset=query.offset, next_before=shown[-1]["id"] if len(rows) > query.limit else None)

    def invoice(self, invoice_id: str, version: int | None = None) -> InvoiceDetail | None:
        with mapped_errors("processscheduler"), self.engine.connect() as conn:
            versions = list(conn.execute(select(p.c.invoice_version).where(p.c.invoice_id == invoice_id)).scalars())
            wanted = max(versions, default=None) if version is None else version
            if wanted not in versions:
                return None
            row = conn.execute(
                select(p).where(p.c.invoice_id == invoice_id, p.c.invoice_version == wanted)).mappings().one()
            events = conn.execute(select(h).where(h.c.invoice_id == invoice_id, h.c.invoice_version == wanted)
                                  .order_by(h.c.id)).mappings().all()
        return views.detail(row, events, versions)

    def entered_as(self, sampro_invoice_id: str) -> list[tuple[str, int]]:
        query = (select(p.c.invoice_id, p.c.invoice_version).where(p.c.sampro_invoice_id == sampro_invoice_id)
                 .order_by(p.c.id))
        with mapped_errors("processscheduler"), self.engine.connect() as conn:
            return [(row.invoice_id, row.invoice_version) for row in conn.execute(query)]

    def status_figures(self, now: datetime) -> StatusFigures:
        with mapped_errors("processscheduler"), self.engine.connect() as conn:
            return self._status_figures(conn, now)

    def kpi(self, now: datetime) -> Kpi:
        reasons = select(*_per_code()).where(p.c.http_status >= 400, p.c.status != InvoiceStatus.SUPERSEDED.value)
        with mapped_errors("processscheduler"), self.engine.connect() as conn:
            figures = self._status_figures(conn, now)
            reason_counts = conn.execute(reasons).one()
            ap = self._ap_kpi(conn, now)
        return views.kpi(figures, _counted(REASON_CODES, reason_counts), ap)

    @staticmethod
    def _status_figures(conn: Connection, now: datetime) -> StatusFigures:
        start = views.window_start(now)
        bounds = views.minute_bounds(start)
        is_verdict = h.c.event_id.like(f"{VERDICT_EVENT_PREFIX}%")
        in_minutes = [and_(h.c.occurred_at >= lo, h.c.occurred_at < hi) for lo, hi in bounds]
        # Every event and the verdicts among them, per minute, grouped by the status alone: SQL Server
        # groups by neither a label nor a CASE whose parameters the SELECT list binds again.
        minutes = (select(h.c.status, *(func.sum(case((minute, 1), else_=0)) for minute in in_minutes),
                          *(func.sum(case((and_(minute, is_verdict), 1), else_=0)) for minute in in_minutes))
                   .where(h.c.occurred_at >= start, h.c.occurred_at < bounds[-1][1]).group_by(h.c.status))
        not_a_note = or_(h.c.status != InvoiceStatus.SENT_TO_RPA.value, h.c.reason.is_(None))  # views.is_note_at_bot
        since = (select(func.max(h.c.occurred_at).label("since"))
                 .select_from(p.join(h, and_(h.c.invoice_id == p.c.invoice_id,
                                             h.c.invoice_version == p.c.invoice_version, h.c.status == p.c.status,
                                             not_a_note)))
                 .where(p.c.status.in_([status.value for status in WAITING])).group_by(p.c.id).subquery())
        by_status: dict[str, int] = dict(conn.execute(select(p.c.status, func.count()).group_by(p.c.status)).all())
        oldest = conn.execute(select(func.min(since.c.since))).scalar_one()
        per_minute: list[tuple[str, bool, list[int]]] = []
        for status, *sums in conn.execute(minutes):
            counts = [int(n or 0) for n in sums]
            every, verdicts = counts[:WINDOW_MINUTES], counts[WINDOW_MINUTES:]
            others = [n - v for n, v in zip(every, verdicts, strict=True)]
            per_minute += [(status, False, others), *([(status, True, verdicts)] if any(verdicts) else [])]
        return views.status_figures(now, by_status, oldest, per_minute)

    @staticmethod
    def _ap_kpi(conn: Connection, now: datetime) -> ApKpi:
        start = views.period_start(now)
        end = start + timedelta(days=KPI_DAYS)
        in_period = (start, end)
        per_day, cycle_times = SqlInvoiceReadModel._entries(conn, in_period)
        judged, first_pass_ready = SqlInvoiceReadModel._first_verdicts(conn, in_period)
        by_rejudgement, by_clerk = SqlInvoiceReadModel._holds_cleared(conn, in_period)
        open_by_age, open_by_reason = SqlInvoiceReadModel._open_exceptions(conn, now)
        return views.ap_kpi(now, per_day, judged, first_pass_ready, by_rejudgement, by_clerk, cycle_times,
                            open_by_age, open_by_reason)

    @staticmethod
    def _entries(conn: Connection, period: tuple[datetime, datetime]) -> tuple[dict[bool, list[int]], list[float]]:
        """Invoice versions entered in the period: per day, touched by AP or not; and each one's cycle time."""
        start, end = period

        def entered_in_period(event: Any) -> ColumnElement[bool]:
            return and_(event.c.status == InvoiceStatus.ENTERED.value, event.c.occurred_at >= start,
                        event.c.occurred_at < end)

        # One row per entry, counted per day in Python (the cycle times need every row anyway): when it
        # was entered, whether AP touched it and when it came, in one pass over the histories of the
        # versions entered in the period. As two correlated subqueries per entry, PostgreSQL spent
        # 0.27 s of 0.40 compiling the statement (JIT) at 20,000 entries in the period; as a join of
        # the entries to their histories, grouped by the entry, it sorted 63,000 rows on disk.
        other = h.alias("other")
        was_entered = exists().where(_same_version(other, h), entered_in_period(other))
        touched = func.max(case((or_(h.c.actor.is_not(None), h.c.status == InvoiceStatus.RELEASED.value), 1),
                                else_=0))
        # Each one's first entry, which may be before the period (a note since is an `entered` event
        # too): entries_per_day keeps those of the period.
        entries = conn.execute(select(func.min(case((h.c.status == InvoiceStatus.ENTERED.value, h.c.occurred_at))),
                                      touched, func.min(h.c.occurred_at))
                               .where(was_entered).group_by(h.c.invoice_id, h.c.invoice_version))
        return views.entries_per_day(start, ((at, bool(touched), first) for at, touched, first in entries))

    @staticmethod
    def _first_verdicts(conn: Connection, period: tuple[datetime, datetime]) -> tuple[int, int]:
        """Invoice versions whose first verdict was given in the period, and how many of those were ready."""
        start, end = period
        verdict, earlier = h.alias("verdict"), h.alias("earlier")
        is_verdict = verdict.c.event_id.like(f"{VERDICT_EVENT_PREFIX}%")
        judged_before = exists().where(_same_version(earlier, verdict), earlier.c.id < verdict.c.id,
                                       earlier.c.event_id.like(f"{VERDICT_EVENT_PREFIX}%"))
        ready = case((verdict.c.status == InvoiceStatus.READY_TO_PROCESS.value, 1), else_=0)
        query = select(func.count(), func.sum(ready)).where(
            is_verdict, verdict.c.occurred_at >= start, verdict.c.occurred_at < end, not_(judged_before))
        judged, first_pass_ready = conn.execute(query).one()
        return int(judged or 0), int(first_pass_ready or 0)

    @staticmethod
    def _holds_cleared(conn: Connection, period: tuple[datetime, datetime]) -> tuple[int, int]:
        """Held invoices made ready in the period: by a verdict given again after a Sampro change, by a release."""
        start, end = period
        cleared, earlier, previous = h.alias("cleared"), h.alias("earlier"), h.alias("previous")
        # The event before, its turn on a busy PO aside: cleared while another invoice held the PO, a
        # held invoice waits (waiting_for_po) before its ready verdict.
        previous_id = select(func.max(earlier.c.id)).where(
            _same_version(earlier, cleared), earlier.c.id < cleared.c.id,
            earlier.c.status != InvoiceStatus.WAITING_FOR_PO.value).scalar_subquery()
        released = cleared.c.status == InvoiceStatus.RELEASED.value
        rejudged = and_(cleared.c.status == InvoiceStatus.READY_TO_PROCESS.value,
                        cleared.c.event_id.like(f"{VERDICT_EVENT_PREFIX}%"),
                        cleared.c.event_id.like(f"%{REJUDGED_MARK}%"))
        query = (select(func.sum(case((rejudged, 1), else_=0)), func.sum(case((released, 1), else_=0)))
                 .select_from(cleared.join(previous, previous.c.id == previous_id))
                 .where(cleared.c.occurred_at >= start, cleared.c.occurred_at < end, or_(released, rejudged),
                        previous.c.status.in_(_values(HELD))))
        by_rejudgement, by_clerk = conn.execute(query).one()
        return int(by_rejudgement or 0), int(by_clerk or 0)

    @staticmethod
    def _open_exceptions(conn: Connection, now: datetime) -> tuple[dict[str, int], dict[str, int]]:
        """Invoice versions now in an exception status: by age in that status, and by reason."""
        # Each one's history, and its age worked out in Python by the memory model's rule: a
        # correlated "last event of another status" per row cost PostgreSQL 1.3 s of JIT alone
        # at 20,000 invoices, since each age bucket repeated the subquery.
        events = conn.execute(select(p.c.invoice_id, p.c.invoice_version, p.c.status, h.c.status, h.c.occurred_at)
                              .select_from(p.join(h, _same_version(h, p)))
                              .where(p.c.status.in_(_values(EXCEPTIONS))).order_by(h.c.id)).all()
        histories: dict[tuple[str, int, str], list[tuple[str, datetime]]] = {}
        for invoice_id, version, status, event_status, occurred_at in events:
            histories.setdefault((invoice_id, version, status), []).append((event_status, occurred_at))
        by_age = views.by_age(now, (views.in_status_since(status, statuses)
                                    for (_, _, status), statuses in histories.items()))
        held = p.c.status.in_(_values(HELD))
        reasons = select(*_per_code(held),
                         func.sum(case((p.c.status == InvoiceStatus.RPA_FAILED.value, 1), else_=0)))
        reason_counts = conn.execute(reasons.where(p.c.status.in_(_values(EXCEPTIONS)))).one()
        by_reason = _counted((*REASON_CODES, RPA_FAILED_REASON), reason_counts)
        return by_age, by_reason

    def changes(self, after: int | None, missing: Sequence[IdRange] = ()) -> Changes:
        with mapped_errors("processscheduler"), self.engine.connect() as conn:
            if after is None:
                last = conn.execute(select(func.coalesce(func.max(h.c.id), 0))).scalar_one()
                return Changes(rows=[], last_event=last)
            wanted = or_(h.c.id > after, *(h.c.id.between(first, final) for first, final in missing))
            events = conn.execute(select(h.c.id, h.c.invoice_id, h.c.invoice_version).where(wanted)
                                  .order_by(h.c.id).limit(CHANGES_PER_CALL)).all()
            last, unread_ids = views.unread(after, missing, (e.id for e in events))
            keys = {(e.invoice_id, e.invoice_version) for e in events}
            if not keys:
                return Changes(rows=[], last_event=last, missing=unread_ids)
            rows = conn.execute(select(*_summary_columns()).where(p.c.invoice_id.in_({k[0] for k in keys}))
                                .order_by(p.c.id.desc())).mappings()
            changed = [views.summary(row) for row in rows if (row["invoice_id"], row["invoice_version"]) in keys]
            return Changes(rows=changed, last_event=last, missing=unread_ids)

    def rpa_round_trips(self, since: datetime) -> list[float]:
        outcomes = select(h.c.invoice_id).where(h.c.status.in_([s.value for s in RPA_OUTCOMES]),
                                                h.c.occurred_at >= since)
        # An attempt may have started long before the window: its invoices' whole history is read.
        relevant = (select(h.c.invoice_id, h.c.invoice_version, h.c.status, h.c.occurred_at, h.c.reason)
                    .where(h.c.invoice_id.in_(outcomes),
                           h.c.status.in_([InvoiceStatus.SENT_TO_RPA.value, *(s.value for s in RPA_OUTCOMES)]))
                    .order_by(h.c.id))
        with mapped_errors("processscheduler"), self.engine.connect() as conn:
            return views.round_trips(conn.execute(relevant).mappings(), since)

    def ping(self) -> None:
        """Also fails while the worker has not created processscheduler yet."""
        with mapped_errors("processscheduler"), self.engine.connect() as conn:
            conn.execute(select(p.c.id).limit(1))
