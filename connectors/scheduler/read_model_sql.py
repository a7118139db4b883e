"""The read model on SQLAlchemy Core: the same statements on PostgreSQL and SQLite.

JSON columns are searched as text (`"code": "PRICE_MISMATCH"` as the sink's json.dumps wrote
it), and per-minute figures are one statement of SUM(CASE ...) columns, so nothing depends on a
dialect's JSON or date functions. A database that cannot be reached, or lacks the tables, is
`Unavailable` (connectors.sql), which the API answers with 503.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Engine, String, and_, case, cast, func, select

from connectors.api_ports import InvoiceReadModel
from connectors.scheduler import read_model as views
from connectors.scheduler.read_model import (
    REASON_CODES,
    RPA_OUTCOMES,
    VERDICT_EVENT_PREFIX,
    WAITING,
    Changes,
    InvoiceDetail,
    InvoicePage,
    InvoiceQuery,
    Kpi,
)
from connectors.scheduler.tables import history, processscheduler
from connectors.sql import mapped_errors
from rules.lifecycle import InvoiceStatus

CHANGES_PER_CALL = 500
p, h = processscheduler, history


def _reason_pattern(code: str) -> ColumnElement[bool]:
    escaped = code.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return cast(p.c.reasons, String).like(f'%"code": "{escaped}"%', escape="\\")


def _summary_columns() -> tuple[ColumnElement[Any], ...]:
    return (p.c.invoice_id, p.c.invoice_version, p.c.po_number, p.c.vendor_id, p.c.invoice_number, p.c.status,
            p.c.http_status, p.c.reasons, p.c.decided_at, p.c.sampro_invoice_id)


class SqlInvoiceReadModel(InvoiceReadModel):
    def __init__(self, engine: Engine):
        self.engine = engine

    def invoices(self, query: InvoiceQuery) -> InvoicePage:
        conditions = []
        for column, value in ((p.c.status, query.status), (p.c.po_number, query.po_number),
                              (p.c.vendor_id, query.vendor_id)):
            if value is not None:
                conditions.append(column == value)
        start, end = query.decided_between()
        if start is not None:
            conditions.append(p.c.decided_at >= start)
        if end is not None:
            conditions.append(p.c.decided_at < end)
        if query.reason_code is not None:
            conditions.append(_reason_pattern(query.reason_code))
        page = (select(*_summary_columns()).where(*conditions).order_by(p.c.id.desc())
                .limit(query.limit).offset(query.offset))
        with mapped_errors("processscheduler"), self.engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(p).where(*conditions)).scalar_one()
            rows = [views.summary(row) for row in conn.execute(page).mappings()]
        return InvoicePage(items=rows, total=total, limit=query.limit, offset=query.offset)

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

    def kpi(self, now: datetime) -> Kpi:
        start = views.window_start(now)
        bounds = views.minute_bounds(start)
        is_verdict = h.c.event_id.like(f"{VERDICT_EVENT_PREFIX}%")
        minutes = select(h.c.status, case((is_verdict, 1), else_=0).label("verdict"),
                         *(func.sum(case((and_(h.c.occurred_at >= lo, h.c.occurred_at < hi), 1), else_=0))
                           for lo, hi in bounds))
        minutes = (minutes.where(h.c.occurred_at >= start, h.c.occurred_at < bounds[-1][1])
                   .group_by(h.c.status, "verdict"))
        reasons = select(*(func.sum(case((_reason_pattern(code), 1), else_=0)) for code in REASON_CODES)).where(
            p.c.http_status >= 400, p.c.status != InvoiceStatus.SUPERSEDED.value)
        since = (select(func.max(h.c.occurred_at).label("since"))
                 .select_from(p.join(h, and_(h.c.invoice_id == p.c.invoice_id,
                                             h.c.invoice_version == p.c.invoice_version, h.c.status == p.c.status)))
                 .where(p.c.status.in_([status.value for status in WAITING])).group_by(p.c.id).subquery())
        with mapped_errors("processscheduler"), self.engine.connect() as conn:
            by_status: dict[str, int] = dict(conn.execute(select(p.c.status, func.count()).group_by(p.c.status)).all())
            reason_counts = conn.execute(reasons).one()
            oldest = conn.execute(select(func.min(since.c.since))).scalar_one()
            per_minute = [(row[0], bool(row[1]), [int(n or 0) for n in row[2:]]) for row in conn.execute(minutes)]
        by_reason = dict(zip(REASON_CODES, (int(n or 0) for n in reason_counts), strict=True))
        return views.kpi(now, by_status, by_reason, oldest, per_minute)

    def changes(self, after: int | None) -> Changes:
        with mapped_errors("processscheduler"), self.engine.connect() as conn:
            if after is None:
                last = conn.execute(select(func.coalesce(func.max(h.c.id), 0))).scalar_one()
                return Changes(rows=[], last_event=last)
            events = conn.execute(select(h.c.id, h.c.invoice_id, h.c.invoice_version).where(h.c.id > after)
                                  .order_by(h.c.id).limit(CHANGES_PER_CALL)).all()
            if not events:
                return Changes(rows=[], last_event=after)
            keys = {(e.invoice_id, e.invoice_version) for e in events}
            rows = conn.execute(select(*_summary_columns()).where(p.c.invoice_id.in_({k[0] for k in keys}))
                                .order_by(p.c.id.desc())).mappings()
            changed = [views.summary(row) for row in rows if (row["invoice_id"], row["invoice_version"]) in keys]
            return Changes(rows=changed, last_event=events[-1].id)

    def rpa_round_trips(self, since: datetime) -> list[float]:
        outcomes = select(h.c.invoice_id).where(h.c.status.in_([s.value for s in RPA_OUTCOMES]),
                                                h.c.occurred_at >= since)
        # An attempt may have started long before the window: its invoices' whole history is read.
        relevant = (select(h.c.invoice_id, h.c.invoice_version, h.c.status, h.c.occurred_at)
                    .where(h.c.invoice_id.in_(outcomes),
                           h.c.status.in_([InvoiceStatus.SENT_TO_RPA.value, *(s.value for s in RPA_OUTCOMES)]))
                    .order_by(h.c.id))
        with mapped_errors("processscheduler"), self.engine.connect() as conn:
            return views.round_trips(conn.execute(relevant).mappings(), since)

    def ping(self) -> None:
        """Also fails while the worker has not created processscheduler yet."""
        with mapped_errors("processscheduler"), self.engine.connect() as conn:
            conn.execute(select(p.c.id).limit(1))
