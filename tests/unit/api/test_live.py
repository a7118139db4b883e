"""The live feed: one poll for every dashboard, the figures first, then rows as they change."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from api import live
from api.live import LiveFeed
from rules.lifecycle import InvoiceStatus
from tests.unit.api.conftest import NOW, change


def test_the_first_poll_has_the_figures_then_only_changes_are_news(api):
    feed = LiveFeed(api.read_model, lambda: NOW, kpi_every=3600, kpi_at_most_every=0)
    first = feed.poll()
    assert first["kpi"]["total"] == 5 and first["changed"] == []
    assert feed.poll() is None
    api.scheduler.record([change("MP-1", InvoiceStatus.ENTERED, "rpa:MP-1:v1:attempt1")])
    update = feed.poll()
    assert [(r["invoice_id"], r["status"]) for r in update["changed"]] == [("MP-1", "entered")]
    assert update["kpi"]["by_status"]["entered"] == 2


def test_changed_rows_go_out_at_once_with_the_figures_of_the_last_recompute_within_its_interval(api):
    """The figures read the KPI period's history: on a busy day they are not read every second."""
    feed = LiveFeed(api.read_model, lambda: NOW, kpi_every=3600, kpi_at_most_every=3600)
    assert feed.poll()["kpi"]["by_status"]["entered"] == 1
    api.scheduler.record([change("MP-1", InvoiceStatus.ENTERED, "rpa:MP-1:v1:attempt1")])
    update = feed.poll()
    assert [r["invoice_id"] for r in update["changed"]] == ["MP-1"] and update["kpi"]["by_status"]["entered"] == 1
    assert feed.poll() is None  # nothing new, and the interval is not up
    feed.kpi_at_most_every = 0  # it is up: the figures follow, with no rows changed since
    caught_up = feed.poll()
    assert caught_up["changed"] == [] and caught_up["kpi"]["by_status"]["entered"] == 2
    assert feed.poll() is None


class Counting:
    """The read model, counting the figures the feed asks it for."""

    def __init__(self, read_model):
        self.read_model, self.reads = read_model, {"kpi": 0, "status_figures": 0}

    def __getattr__(self, name):
        if name in self.reads:
            self.reads[name] += 1
        return getattr(self.read_model, name)


def test_a_recompute_reads_the_status_figures_and_ap_figures_only_when_they_are_due(api):
    """AP's figures read the KPI period's history: most recomputes keep them, and read the rest."""
    read_model = Counting(api.read_model)
    feed = LiveFeed(read_model, lambda: NOW, kpi_every=3600, kpi_at_most_every=0, ap_every=3600)
    assert feed.poll()["kpi"]["ap"]["entered"] == 1 and read_model.reads == {"kpi": 1, "status_figures": 0}
    api.scheduler.record([change("MP-1", InvoiceStatus.ENTERED, "rpa:MP-1:v1:attempt1")])
    update = feed.poll()
    assert update["kpi"]["by_status"]["entered"] == 2 and update["kpi"]["ap"]["entered"] == 1  # kept
    assert read_model.reads == {"kpi": 1, "status_figures": 1}
    feed.ap_every, feed.kpi_every = 0, 0  # due: read again, with the figures they go with
    assert feed.poll()["kpi"]["ap"]["entered"] == 2 and read_model.reads == {"kpi": 2, "status_figures": 1}


def test_ap_figures_that_could_not_be_read_are_read_on_the_next_recompute_not_a_minute_later(api):
    feed = LiveFeed(api.read_model, lambda: NOW, kpi_every=0, kpi_at_most_every=0, ap_every=0.5)
    assert feed.poll()["kpi"]["ap"]["entered"] == 1
    time.sleep(0.6)  # due
    read = api.read_model.kpi
    api.read_model.kpi = lambda now: (_ for _ in ()).throw(TimeoutError("the KPI period's history"))
    with pytest.raises(TimeoutError):
        feed.poll()
    api.read_model.kpi = read
    api.scheduler.record([change("MP-1", InvoiceStatus.ENTERED, "rpa:MP-1:v1:attempt1")])
    assert feed.poll()["kpi"]["ap"]["entered"] == 2  # still due: the failed read is owed


def _entered_while_the_figures_cannot_be_read(api, feed: LiveFeed) -> None:
    """MP-1 is entered, and the feed's next poll fails reading the status figures."""
    api.scheduler.record([change("MP-1", InvoiceStatus.ENTERED, "rpa:MP-1:v1:attempt1")])
    figures = api.read_model.status_figures
    api.read_model.status_figures = lambda now: (_ for _ in ()).throw(TimeoutError("processscheduler"))
    with pytest.raises(TimeoutError):
        feed.poll()
    api.read_model.status_figures = figures


def test_rows_changed_while_the_figures_could_not_be_read_go_out_with_the_next_figures(api):
    feed = LiveFeed(api.read_model, lambda: NOW, kpi_every=3600, kpi_at_most_every=0, ap_every=3600)
    feed.poll()
    _entered_while_the_figures_cannot_be_read(api, feed)
    update = feed.poll()
    assert [(r["invoice_id"], r["status"]) for r in update["changed"]] == [("MP-1", "entered")]


def test_figures_that_could_not_be_read_are_asked_again_at_the_recompute_interval_not_every_round(api):
    read_model = Counting(api.read_model)
    feed = LiveFeed(read_model, lambda: NOW, kpi_every=3600, kpi_at_most_every=3600, ap_every=3600)
    feed.poll()
    feed._kpi_at = float("-inf")  # a recompute is due
    _entered_while_the_figures_cannot_be_read(api, feed)
    update = feed.poll()  # within the interval: the last figures, with the rows
    assert [r["invoice_id"] for r in update["changed"]] == ["MP-1"] and read_model.reads["status_figures"] == 1


def test_subscribers_get_the_latest_figures_then_each_change():
    async def scenario(api):
        feed = LiveFeed(api.read_model, lambda: NOW, interval=0.01, kpi_every=3600, kpi_at_most_every=0)
        updates = feed.subscribe()
        first = await asyncio.wait_for(anext(updates), 5)
        api.scheduler.record([change("MP-1", InvoiceStatus.ENTERED, "rpa:MP-1:v1:attempt1")])
        second = await asyncio.wait_for(anext(updates), 5)
        await updates.aclose()
        await feed.close()
        return json.loads(first), json.loads(second)

    from tests.unit.api.conftest import make_api

    first, second = asyncio.run(scenario(make_api()))
    assert first["kpi"]["waiting_for_rpa"] == 1 and second["kpi"]["waiting_for_rpa"] == 0
    assert second["changed"][0]["invoice_id"] == "MP-1"


def test_the_event_stream_needs_a_signed_in_user(api):
    assert api.client.get("/api/events").status_code == 401


def test_a_user_has_at_most_so_many_streams_and_the_api_so_many_in_all():
    """One viewer's cookie opened 200 streams, each a connection, a queue and a session check."""
    async def scenario(api):
        feed = LiveFeed(api.read_model, lambda: NOW, interval=0.01, streams_per_user=2, streams_at_most=3)
        streams = [feed.subscribe(user="ana"), feed.subscribe(user="ana")]
        for stream in streams:
            await asyncio.wait_for(anext(stream), 5)
        said = feed.refused("ana")
        past_the_look = [update async for update in feed.subscribe(user="ana")]  # a burst's: ends at once
        other = feed.subscribe(user="victor")
        await asyncio.wait_for(anext(other), 5)
        in_all = feed.refused("olga")
        await streams[0].aclose()
        after = feed.refused("ana"), feed.refused("olga")
        for stream in (streams[1], other):
            await stream.aclose()
        await feed.close()
        return said, past_the_look, in_all, after, dict(feed.streams_of)

    from tests.unit.api.conftest import make_api

    said, past_the_look, in_all, after, left = asyncio.run(scenario(make_api()))
    assert "ana has 2 live streams open" in said and past_the_look == []
    assert "serves 3 live streams" in in_all and after == (None, None) and left == {}


def test_a_stream_past_the_users_bound_is_429(api):
    api.context.live.streams_per_user = 0
    answer = api.client.get("/api/events", **api.as_clerk())
    assert answer.status_code == 429 and "live streams" in answer.json()["detail"]
    assert answer.headers["Retry-After"] == "30"


def test_a_browser_that_stops_reading_is_told_to_read_its_list_again_when_updates_are_dropped():
    """Its queue dropped the oldest update, and the rows changed in it never reached the page."""
    feed = LiveFeed(None, lambda: NOW)  # type: ignore[arg-type]  # nothing read: updates given by hand
    stalled, reading = asyncio.Queue(maxsize=2), asyncio.Queue(maxsize=2)
    feed.subscribers |= {stalled, reading}
    for n in range(3):
        feed.deliver({"kpi": {}, "changed": [{"invoice_id": f"MP-{n}"}]})
        if n < 2:
            reading.get_nowait()
    assert [json.loads(stalled.get_nowait()).get("resync") for _ in range(2)] == [None, True]
    assert json.loads(reading.get_nowait()) == {"kpi": {}, "changed": [{"invoice_id": "MP-2"}]}  # told nothing


def test_an_update_is_encoded_once_whatever_the_number_of_streams(monkeypatch):
    """Encoded per stream on the event loop, 500 open dashboards took 0.5 s of it per poll of a
    busy minute's update, and every request to the API waited."""
    encoded = []
    monkeypatch.setattr(live, "_encoded", lambda update: encoded.append(update) or json.dumps(update))
    feed = LiveFeed(None, lambda: NOW)  # type: ignore[arg-type]  # nothing read: updates given by hand
    streams = [asyncio.Queue(maxsize=1) for _ in range(500)]
    feed.subscribers |= set(streams)
    update = {"kpi": {"total": 5}, "changed": [{"invoice_id": "MP-1"}]}
    feed.deliver(update)
    assert len(encoded) == 1 and {json.loads(stream.get_nowait()) == update for stream in streams} == {True}
    for stream in streams[:250]:  # these stopped reading: each is told to read its list again
        stream.put_nowait("an update it did not read")
    feed.deliver(update)
    sent = [json.loads(stream.get_nowait()) for stream in streams]
    assert len(encoded) == 3 and sent == [{**update, "resync": True}] * 250 + [update] * 250


def test_a_new_stream_does_not_make_the_figures_read_again_before_their_interval():
    """Each stream opened set the recompute due: twenty tabs opened in two seconds read the
    figures twenty times where the interval allows one."""
    async def scenario(api):
        feed = LiveFeed(api.read_model, lambda: NOW, interval=0.01, kpi_every=3600, kpi_at_most_every=3600)
        first = feed.subscribe()
        await asyncio.wait_for(anext(first), 5)
        recomputed_at = feed._kpi_at
        later = [feed.subscribe() for _ in range(5)]
        for stream in later:
            await asyncio.wait_for(anext(stream), 5)
        await asyncio.sleep(0.05)
        for stream in (first, *later):
            await stream.aclose()
        await feed.close()
        return recomputed_at, feed._kpi_at

    from tests.unit.api.conftest import make_api

    recomputed_at, last = asyncio.run(scenario(make_api()))
    assert last == recomputed_at
