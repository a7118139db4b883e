"""AP's own KPIs on /api/kpi, over the seeded in-memory processscheduler (conftest.seed)."""

from __future__ import annotations

from api.live import LiveFeed
from rules.lifecycle import InvoiceStatus
from tests.unit.api.conftest import NOW, change


def test_ap_figures_of_the_seeded_invoices(api):
    ap = api.client.get("/api/kpi", **api.as_viewer()).json()["ap"]
    assert ap["period_start"] == "2026-10-27T00:00:00Z" and len(ap["entered_touchless_per_day"]) == 30
    assert (ap["entered"], ap["entered_touchless"], ap["touchless_rate"]) == (1, 1, 1.0)  # MP-4, untouched
    assert ap["entered_touchless_per_day"][-1] == 1 and sum(ap["entered_touched_per_day"]) == 0
    # First verdicts: MP-1, MP-4 and MP-5 ready; MP-2 bad, MP-3 held for its price.
    assert (ap["judged"], ap["first_pass_ready"], ap["first_pass_match_rate"]) == (5, 3, 0.6)
    assert ap["cycle_time_median_seconds"] == ap["cycle_time_p90_seconds"] == 180.0  # judged 5 min, entered 2 min ago
    assert (ap["holds_cleared_by_rejudgement"], ap["holds_cleared_by_clerk"]) == (0, 0)
    assert ap["open_exceptions"] == 2
    assert ap["open_exceptions_by_age"] == {"0-1d": 2, "1-3d": 0, "3-7d": 0, "7d+": 0}
    assert ap["open_exceptions_by_reason"] == {"TOTAL_MISMATCH": 1, "PRICE_MISMATCH": 1}


def test_a_release_is_a_hold_cleared_by_a_clerk_and_a_touched_entry(api):
    api.scheduler.record([
        change("MP-3", InvoiceStatus.RELEASED, "r1", minutes=1, actor="ana", reason="buyer agreed"),
        change("MP-3", InvoiceStatus.SENT_TO_RPA, "r1", minutes=1),
        change("MP-3", InvoiceStatus.ENTERED, "rpa:MP-3:v1:attempt1", minutes=0, sampro_invoice_id="S-3"),
    ])
    ap = api.client.get("/api/kpi", **api.as_viewer()).json()["ap"]
    assert (ap["entered"], ap["entered_touchless"], ap["touchless_rate"]) == (2, 1, 0.5)
    assert ap["entered_touched_per_day"][-1] == 1 and ap["holds_cleared_by_clerk"] == 1
    assert ap["open_exceptions"] == 1 and ap["open_exceptions_by_reason"] == {"TOTAL_MISMATCH": 1}


def test_the_openapi_document_explains_each_figure(api):
    schemas = api.client.get("/openapi.json").json()["components"]["schemas"]
    assert schemas["Kpi"]["properties"]["ap"] == {"$ref": "#/components/schemas/ApKpi"}
    figures = schemas["ApKpi"]["properties"]
    for name in ("touchless_rate", "first_pass_match_rate", "holds_cleared_by_rejudgement", "holds_cleared_by_clerk",
                 "cycle_time_median_seconds", "cycle_time_p90_seconds", "open_exceptions_by_age",
                 "open_exceptions_by_reason", "entered_touchless_per_day"):
        assert figures[name]["description"], name


def test_the_live_feed_carries_them(api):
    feed = LiveFeed(api.read_model, lambda: NOW, kpi_every=3600)
    assert feed.poll()["kpi"]["ap"]["entered"] == 1


def test_the_figures_are_read_once_per_cache_time_however_often_they_are_asked():
    """Each call read the whole KPI period (half a second of the database at 50,000 invoices)."""
    from tests.unit.api.conftest import make_api

    api = make_api(api_status_cache_seconds=60)
    reads = []
    kpi = api.context.read_model.kpi
    api.context.read_model.kpi = lambda now: reads.append(now) or kpi(now)
    for _ in range(3):
        assert api.client.get("/api/kpi", **api.as_viewer()).status_code == 200
    assert len(reads) == 1
