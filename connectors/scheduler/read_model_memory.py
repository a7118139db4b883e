"""The read model over the in-memory processscheduler, for unit tests of the API."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from connectors.api_ports import InvoiceReadModel
from connectors.scheduler import read_model as views
from connectors.scheduler.memory import InMemoryProcessScheduler
from connectors.scheduler.read_model import (
    CHANGES_PER_CALL,
    EXCEPTIONS,
    HELD,
    KPI_DAYS,
    REJUDGED_MARK,
    RPA_FAILED_REASON,
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
from rules.errors import Unavailable
from rules.lifecycle import InvoiceStatus


def _of_vendor(row: dict[str, Any], vendor_id: str) -> bool:
    """As the SQL model's `_of_vendor`: by the vendor as the rules tell vendors apart, or by the
    vendor id as sent where the row has no key."""
    key = row.get("vendor_key")
    return key == vendor_key_of(vendor_id) if key is not None else row.get("vendor_id") == vendor_id


class InMemoryInvoiceReadModel(InvoiceReadModel):
    def __init__(self, scheduler: InMemoryProcessScheduler):
        self.scheduler = scheduler
        self.reachable = True

    def _rows(self) -> list[dict[str, Any]]:
        return list(self.scheduler.table.values())  # in the order rows were created

    def _events(self) -> list[dict[str, Any]]:
        return list(self.scheduler.events.values())  # in the order they were recorded

    def invoices(self, query: InvoiceQuery) -> InvoicePage:
        start, end = query.decided_between()

        def wanted(row: dict[str, Any]) -> bool:
            decided = views.as_utc(row.get("decided_at"))
            return ((query.status is None or row["status"] == query.status)
                    and (query.po_number is None or row.get("po_number") == query.po_number)
                    and (query.vendor_id is None or _of_vendor(row, query.vendor_id))
                    and (start is None or (decided is not None and decided >= start))
                    and (end is None or (decided is not None and decided < end))
                    and (query.reason_code is None or query.reason_code in views.reason_codes(row.get("reasons"))))

        # A row's place is its position in the order rows were created, from 1, as the SQL row's id.
        found = [(place, row) for place, row in reversed(list(enumerate(self._rows(), 1))) if wanted(row)]
        after = [(place, row) for place, row in found if query.before is None or place < query.before]
        page = after[query.offset: query.offset + query.limit + 1]
        shown = page[:query.limit]
        return InvoicePage(items=[views.summary(row) for _, row in shown], total=len(found), limit=query.limit,
                           offset=query.offset, next_before=shown[-1][0] if len(page) > query.limit else None)

    def invoice(self, invoice_id: str, version: int | None = None) -> InvoiceDetail | None:
        versions = [v for (i, v) in self.scheduler.table if i == invoice_id]
        wanted = max(versions, default=None) if version is None else version
        if wanted not in versions:
            return None
        events = [e for e in self._events() if (e["invoice_id"], e["invoice_version"]) == (invoice_id, wanted)]
        return views.detail(self.scheduler.table[(invoice_id, wanted)], events, versions)

    def entered_as(self, sampro_invoice_id: str) -> list[tuple[str, int]]:
        return [(row["invoice_id"], row["invoice_version"]) for row in self._rows()
                if row.get("sampro_invoice_id") == sampro_invoice_id]

    def status_figures(self, now: datetime) -> StatusFigures:
        rows = self._rows()
        by_status: dict[str, int] = {}
        for row in rows:
            by_status[row["status"]] = by_status.get(row["status"], 0) + 1
        entered_status: dict[tuple[str, int], datetime] = {}
        start = views.window_start(now)
        groups: dict[tuple[str, bool], list[int]] = {}
        for event in self._events():
            key, at = (event["invoice_id"], event["invoice_version"]), views.as_utc(event["occurred_at"])
            if (event["status"] == self.scheduler.table[key]["status"]
                    and not views.is_note_at_bot(event["status"], event["reason"])):
                entered_status[key] = max(at, entered_status.get(key, at))
            minute = int((at - start).total_seconds() // 60)
            if 0 <= minute < WINDOW_MINUTES:
                counts = groups.setdefault((event["status"], event["event_id"].startswith(VERDICT_EVENT_PREFIX)),
                                           [0] * WINDOW_MINUTES)
                counts[minute] += 1
        waiting = [entered_status[(r["invoice_id"], r["invoice_version"])] for r in rows if r["status"] in WAITING]
        per_minute = [(status, verdict, counts) for (status, verdict), counts in groups.items()]
        return views.status_figures(now, by_status, min(waiting, default=None), per_minute)

    def kpi(self, now: datetime) -> Kpi:
        rows = self._rows()
        by_reason: dict[str, int] = {}
        for row in rows:
            if (row.get("http_status") or 0) >= 400 and row["status"] != InvoiceStatus.SUPERSEDED:
                for code in views.reason_codes(row.get("reasons")):
                    by_reason[code] = by_reason.get(code, 0) + 1
        return views.kpi(self.status_figures(now), by_reason, self._ap_kpi(now, rows))

    def _ap_kpi(self, now: datetime, rows: list[dict[str, Any]]) -> ApKpi:
        start = views.period_start(now)
        end = start + timedelta(days=KPI_DAYS)
        histories: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for event in self._events():
            histories.setdefault((event["invoice_id"], event["invoice_version"]), []).append(event)
        entries: list[tuple[datetime, bool, datetime]] = []
        judged = first_pass_ready = by_rejudgement = by_clerk = 0
        for events in histories.values():
            times = [views.as_utc(event["occurred_at"]) for event in events]
            entered = [at for event, at in zip(events, times, strict=True) if event["status"] == InvoiceStatus.ENTERED]
            if entered:  # the first: the others are notes (entries_per_day keeps those of the period)
                touched = any(e["actor"] is not None or e["status"] == InvoiceStatus.RELEASED for e in events)
                entries.append((min(entered), touched, min(times)))
            verdicts = [(event, at) for event, at in zip(events, times, strict=True)
                        if event["event_id"].startswith(VERDICT_EVENT_PREFIX)]
            if verdicts and start <= verdicts[0][1] < end:
                judged += 1
                first_pass_ready += verdicts[0][0]["status"] == InvoiceStatus.READY_TO_PROCESS
            previous: dict[str, Any] | None = None  # the event before, its turn on a busy PO aside
            for event, at in zip(events, times, strict=True):
                if previous is not None and start <= at < end and previous["status"] in HELD:
                    if event["status"] == InvoiceStatus.RELEASED:
                        by_clerk += 1
                    elif (event["status"] == InvoiceStatus.READY_TO_PROCESS and REJUDGED_MARK in event["event_id"]
                          and event["event_id"].startswith(VERDICT_EVENT_PREFIX)):
                        by_rejudgement += 1
                if event["status"] != InvoiceStatus.WAITING_FOR_PO:
                    previous = event
        open_since: list[datetime | None] = []
        open_by_reason: dict[str, int] = {}
        for row in rows:
            status = row["status"]
            if status not in EXCEPTIONS:
                continue
            history = histories.get((row["invoice_id"], row["invoice_version"]), [])
            open_since.append(views.in_status_since(status, ((e["status"], e["occurred_at"]) for e in history)))
            failed = status == InvoiceStatus.RPA_FAILED
            for code in [RPA_FAILED_REASON] if failed else views.reason_codes(row.get("reasons")):
                open_by_reason[code] = open_by_reason.get(code, 0) + 1
        per_day, cycle_times = views.entries_per_day(start, entries)
        return views.ap_kpi(now, per_day, judged, first_pass_ready, by_rejudgement, by_clerk, cycle_times,
                            views.by_age(now, open_since), open_by_reason)

    def changes(self, after: int | None, missing: Sequence[IdRange] = ()) -> Changes:
        events = self._events()  # the event of id n is events[n - 1]: one writer, no gaps
        if after is None:
            return Changes(rows=[], last_event=len(events))
        asked = {n for first, final in missing for n in range(first, min(final, len(events)) + 1)}
        ids = sorted(asked | set(range(after + 1, len(events) + 1)))[:CHANGES_PER_CALL]  # as the SQL model reads
        last, unread_ids = views.unread(after, missing, ids)
        keys = {(events[n - 1]["invoice_id"], events[n - 1]["invoice_version"]) for n in ids}
        rows = [views.summary(row) for row in reversed(self._rows())
                if (row["invoice_id"], row["invoice_version"]) in keys]
        return Changes(rows=rows, last_event=last, missing=unread_ids)

    def rpa_round_trips(self, since: datetime) -> list[float]:
        return views.round_trips(self._events(), since)

    def ping(self) -> None:
        if not self.reachable:
            raise Unavailable("processscheduler", "the in-memory processscheduler is switched off")
