"""Liveness, readiness and the Prometheus figures, computed when scraped."""

from __future__ import annotations

import inspect
import threading
import time
from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.metrics import _quantiles
from api.routes.operations import healthz
from api.status import Cached, ReadinessProbe
from tests.unit.api.conftest import NOW, TOKEN, make_api


def samples(api) -> dict[tuple[str, tuple], float]:
    text = api.client.get("/metrics").text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_healthz_and_readyz(api):
    assert api.client.get("/healthz").json() == {"status": "ok"}
    assert api.client.get("/readyz").json() == {"status": "ready", "checks": {"database": "ok", "kafka": "ok"},
                                                "down_since": {}}


def test_readyz_is_503_naming_what_cannot_be_reached_and_since_when(api):
    api.commands.reachable = False
    answer = api.client.get("/readyz")
    assert answer.status_code == 503 and answer.json()["checks"] == {"database": "ok", "kafka": "down"}
    assert answer.json()["down_since"] == {"kafka": NOW.isoformat().replace("+00:00", "Z")}
    assert "switched off" not in answer.text  # the reason goes to the log, not to whoever asks
    api.read_model.reachable = False
    assert api.client.get("/readyz").json()["checks"]["database"] == "down"
    api.commands.reachable = api.read_model.reachable = True
    assert api.client.get("/readyz").json()["down_since"] == {}


def test_metrics_from_processscheduler(api):
    found = samples(api)
    assert found[("invoice_automation_invoices", (("status", "entered"),))] == 1
    assert found[("invoice_automation_verdicts_last_hour", (("status", "ready_to_process"),))] == 3
    assert found[("invoice_automation_oldest_waiting_seconds", ())] == 30 * 60
    assert found[("invoice_automation_rpa_round_trip_seconds", (("quantile", "0.5"),))] == 3 * 60  # MP-4
    assert found[("invoice_automation_scrape_ok", (("source", "processscheduler"),))] == 1
    assert found[("invoice_automation_rpa_emails_in_doubt", ())] == 0


def test_metrics_count_the_rpa_emails_in_doubt(api):
    api.sent_log.doubtful = [("MP-1", 1, 1), ("MP-4", 1, 2)]
    assert samples(api)[("invoice_automation_rpa_emails_in_doubt", ())] == 2


def test_metrics_from_kafka_lag(api):
    api.lag.append("invoices", 0, [NOW - timedelta(seconds=s) for s in (90, 60, 30)])
    api.lag.append("invoices", 1, [NOW - timedelta(seconds=5)])
    api.lag.commit("invoices", 0, 1)
    api.lag.commit("invoices", 1, 1)
    found = samples(api)
    assert found[("invoice_automation_consumer_lag_messages", (("topic", "invoices"),))] == 2
    assert found[("invoice_automation_processing_latency_seconds", (("topic", "invoices"),))] == 60
    assert found[("invoice_automation_scrape_ok", (("source", "kafka"),))] == 1
    assert found[("invoice_automation_committed_offsets", (("topic", "invoices"),))] == 2  # a gauge: 1 + 1


def test_metrics_count_a_partition_its_group_never_committed_on_from_the_start_of_its_log(api):
    """A `--role mail` worker never started: rpa.requests showed no lag and no latency at all."""
    api.lag.append("rpa.requests", 0, [NOW - timedelta(seconds=s) for s in (120, 60, 30)])
    api.lag.delete_records("rpa.requests", 0, 1)  # retention took the first
    found = samples(api)
    assert found[("invoice_automation_consumer_lag_messages", (("topic", "rpa.requests"),))] == 2
    assert found[("invoice_automation_processing_latency_seconds", (("topic", "rpa.requests"),))] == 60
    assert found[("invoice_automation_committed_offsets", (("topic", "rpa.requests"),))] == 0


def test_a_latency_whose_oldest_message_cannot_be_read_is_left_out_not_said_to_be_0(api):
    """A transaction still open hides the pending message's time: the latency read 0, caught up."""
    from connectors.api_ports import PartitionLag

    api.lag.lag = lambda: [PartitionLag("invoices", 0, 3, 4, None), PartitionLag("invoices", 1, 1, 2, NOW),
                           PartitionLag("verdicts", 0, 5, 5, None)]
    found = samples(api)
    assert found[("invoice_automation_consumer_lag_messages", (("topic", "invoices"),))] == 2
    assert ("invoice_automation_processing_latency_seconds", (("topic", "invoices"),)) not in found
    assert found[("invoice_automation_processing_latency_seconds", (("topic", "verdicts"),))] == 0  # caught up


def test_rpa_round_trip_quantiles_are_nearest_rank():
    """int(q * n) gave the median of [10, 20] as 20, and the 0.95 of 20 values or fewer as their maximum."""
    family = _quantiles("t", "t", [20.0, 10.0])
    assert [(sample.labels["quantile"], sample.value) for sample in family.samples] == [
        ("0.5", 10.0), ("0.95", 20.0), ("1.0", 20.0)]
    twenty = [(s.labels["quantile"], s.value) for s in _quantiles("t", "t", [float(n) for n in range(1, 21)]).samples]
    assert twenty == [("0.5", 10.0), ("0.95", 19.0), ("1.0", 20.0)]


def test_a_source_that_cannot_be_read_is_reported_and_the_other_still_is(api):
    api.read_model.reachable = True

    def broken():
        raise ConnectionError("broker down")

    api.lag.lag = broken
    found = samples(api)
    assert found[("invoice_automation_scrape_ok", (("source", "kafka"),))] == 0
    assert found[("invoice_automation_invoices", (("status", "entered"),))] == 1


METRICS_TOKEN = "metrics-token-7d3f9a1c5e8b2d6f0a4c7e1b9d3f5a8c"


def test_metrics_behind_a_token_when_one_is_set():
    api = make_api(api_metrics_token=METRICS_TOKEN)
    assert api.client.get("/metrics").status_code == 401
    assert api.client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert api.client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 401  # the bot's
    scraped = api.client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert scraped.status_code == 200 and "invoice_automation_invoices" in scraped.text


def test_a_flood_of_scrapes_and_probes_reads_kafka_and_the_database_once_per_cache_period():
    api = make_api(api_status_cache_seconds=60)
    reads = {"lag": 0, "figures": 0, "kpi": 0, "ping": 0}

    def counting(name, call):
        def counted(*args):
            reads[name] += 1
            return call(*args)
        return counted

    api.lag.lag = counting("lag", api.lag.lag)
    api.read_model.status_figures = counting("figures", api.read_model.status_figures)
    api.read_model.kpi = counting("kpi", api.read_model.kpi)
    api.commands.ping = counting("ping", api.commands.ping)
    api = make_api(api_status_cache_seconds=60, lag=api.lag, read_model=api.read_model, commands=api.commands)
    for _ in range(50):
        assert api.client.get("/metrics").status_code == 200 and api.client.get("/readyz").status_code == 200
    # /metrics never computes the dashboard's KPI: its AP figures read the whole KPI period
    assert reads == {"lag": 1, "figures": 1, "kpi": 0, "ping": 1}


def test_readyz_never_shows_the_database_address_user_or_driver(caplog):
    from connectors.scheduler.read_model_sql import SqlInvoiceReadModel
    from connectors.sql import engine_for

    unreachable = SqlInvoiceReadModel(engine_for("postgresql+psycopg://invoice:pg-secret@127.0.0.1:9/scheduler"))
    api = make_api(read_model=unreachable)
    answer = api.client.get("/readyz")
    assert answer.status_code == 503 and answer.json()["checks"]["database"] == "down"
    for leaked in ("127.0.0.1", "9", "invoice", "pg-secret", "psycopg", "Operational", "scheduler"):
        assert leaked not in answer.text.replace(answer.json()["down_since"]["database"], ""), leaked
    assert "127.0.0.1" in caplog.text  # the operator reads why in the log


def test_a_slow_look_again_keeps_no_one_waiting_who_can_have_the_last_answer():
    """Waiting behind the lock, each probe held one of the threads every sync route runs in: a flood
    of /readyz while the database was slow stalled the API, and its liveness probe with it."""
    clock, looks, slow = [0.0], [], threading.Event()

    def look() -> int:
        looks.append(len(looks) + 1)
        if len(looks) > 1:
            slow.wait(5)
        return len(looks)

    cached = Cached(look, ttl=10, clock=lambda: clock[0])
    assert cached.get() == 1
    clock[0] = 11
    looking = threading.Thread(target=cached.get)
    looking.start()
    while len(looks) < 2:
        time.sleep(0.001)
    assert cached.get() == 1 and looking.is_alive()  # the last answer, while the look goes on
    slow.set()
    looking.join()
    assert cached.get() == 2 and looks == [1, 2]


def test_the_first_look_is_waited_for_by_everyone_who_asks():
    started, go, answers = threading.Event(), threading.Event(), []

    def look() -> str:
        started.set()
        go.wait(5)
        return "answer"

    cached = Cached(look, ttl=10)
    first = threading.Thread(target=lambda: answers.append(cached.get()))
    first.start()
    started.wait(5)
    second = threading.Thread(target=lambda: answers.append(cached.get()))
    second.start()
    go.set()
    first.join()
    second.join()
    assert answers == ["answer", "answer"]


def test_readiness_while_its_first_look_hangs_is_not_ready_at_once_for_every_other_probe():
    """A database that did not answer at the API's start held every probe's thread behind the
    first look, until the pool the API's routes run in was used up."""
    hung, calls = threading.Event(), []

    def database() -> None:
        calls.append(1)
        hung.wait(5)

    probe = ReadinessProbe({"database": database, "kafka": lambda: None}, clock=lambda: NOW, ttl=10)
    looking = threading.Thread(target=probe.states)
    looking.start()
    while not calls:
        time.sleep(0.001)
    meanwhile = probe.states()
    assert looking.is_alive() and meanwhile == {"database": NOW, "kafka": NOW}  # not known: not ready
    hung.set()
    looking.join()
    assert probe.states() == {"database": None, "kafka": None}


def test_a_postgresql_engine_gives_up_a_connection_the_server_does_not_accept_in_time():
    """libpq waits for the TCP timeout, two minutes and more, for a host that does not answer."""
    from sqlalchemy import event

    from connectors.sql import CONNECT_SECONDS, engine_for

    def asked(url: str) -> dict:
        engine, seen = engine_for(url), {}

        @event.listens_for(engine, "do_connect")
        def connect(dialect, record, cargs, cparams):
            seen.update(cparams)
            raise RuntimeError("not connecting")

        with pytest.raises(Exception, match="not connecting"):
            engine.connect()
        return seen

    assert asked("postgresql+psycopg://u:p@db.invalid/scheduler")["connect_timeout"] == CONNECT_SECONDS
    assert asked("postgresql+psycopg://u:p@db.invalid/scheduler?connect_timeout=30")["connect_timeout"] == "30"


def test_a_scrape_while_the_first_read_hangs_is_answered_at_once_with_nothing_read():
    from api.metrics import PipelineCollector

    hung, asked = threading.Event(), threading.Event()

    class Hanging:
        def status_figures(self, now):
            asked.set()
            hung.wait(5)
            raise ConnectionError("no answer")

    collector = PipelineCollector(Hanging(), None, None, lambda: NOW, cache_seconds=10)  # type: ignore[arg-type]
    first = threading.Thread(target=lambda: list(collector.collect()))
    first.start()
    asked.wait(5)
    meanwhile = [(s.labels["source"], s.value) for family in collector.collect() for s in family.samples]
    still_reading = first.is_alive()
    hung.set()
    first.join()
    assert still_reading and meanwhile == [("processscheduler", 0), ("kafka", 0)]


def test_liveness_runs_on_the_event_loop_where_no_full_thread_pool_can_stall_it():
    assert inspect.iscoroutinefunction(healthz)


def test_a_ping_that_hangs_past_the_cache_time_is_down_since_it_started():
    """Given the last answer while a look went on, /readyz said ready for as long as a hung
    database kept the look waiting (psycopg has no connect timeout of its own)."""
    start, moved, hung, calls = NOW, [0.0], threading.Event(), []

    def database() -> None:
        calls.append(1)
        if len(calls) > 1:
            hung.wait(5)

    probe = ReadinessProbe({"database": database, "kafka": lambda: None},
                           clock=lambda: start + timedelta(seconds=moved[0]), ttl=10, ticks=lambda: moved[0])
    assert probe.states() == {"database": None, "kafka": None}
    moved[0] = 11
    looking = threading.Thread(target=probe.states)
    looking.start()
    while len(calls) < 2:
        time.sleep(0.001)
    assert probe.states()["database"] is None  # not yet past the cache time: the last answer
    moved[0] = 21
    assert probe.states() == {"database": start + timedelta(seconds=11), "kafka": None}
    hung.set()
    looking.join()
    assert probe.states() == {"database": None, "kafka": None}


def test_a_ping_under_way_is_not_down_before_it_has_hung_even_without_a_cache():
    """With API_STATUS_CACHE_SECONDS=0 every probe looks again: one asked during another's healthy
    0.3 s ping said the database was down."""
    moved, slow, calls = [0.0], threading.Event(), []

    def database() -> None:
        calls.append(1)
        if len(calls) > 1:
            slow.wait(5)

    probe = ReadinessProbe({"database": database}, clock=lambda: NOW, ttl=0, ticks=lambda: moved[0])
    assert probe.states() == {"database": None}
    looking = threading.Thread(target=probe.states)
    looking.start()
    while len(calls) < 2:
        time.sleep(0.001)
    moved[0] = 1.0
    threading.Timer(0.2, slow.set).start()  # the ping answers while the probe below waits for it
    healthy_meanwhile = probe.states()
    looking.join()
    assert healthy_meanwhile == {"database": None}


class StatusFiguresThatHang:
    """processscheduler's read model whose reads, from the second on, wait until let go: a table a
    migration holds locked, a connection that no longer answers."""

    def __init__(self, read_model):
        self.read_model, self.reads, self.let_go = read_model, 0, threading.Event()

    def status_figures(self, now):
        self.reads += 1
        if self.reads > 1:
            self.let_go.wait(5)
        return self.read_model.status_figures(now)

    def rpa_round_trips(self, since):
        return self.read_model.rpa_round_trips(since)


def scraped(collector) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in collector.collect() for s in family.samples}


def test_a_database_read_that_hangs_is_not_scraped_as_read_and_kafka_lag_goes_on_meanwhile(api):
    """While a read of processscheduler hung, every scrape got the figures from before it, scrape_ok 1
    for both sources, and Kafka's lag with them: 5,000 messages came and /metrics said none."""
    from api.metrics import PipelineCollector

    ticks, hanging = [0.0], StatusFiguresThatHang(api.read_model)
    api.lag.append("invoices", 0, [NOW] * 10)
    api.lag.commit("invoices", 0, 10)
    collector = PipelineCollector(hanging, api.lag, api.sent_log, lambda: NOW, cache_seconds=10,  # type: ignore[arg-type]
                                  ticks=lambda: ticks[0])
    lag = ("invoice_automation_consumer_lag_messages", (("topic", "invoices"),))
    ok = {source: ("invoice_automation_scrape_ok", (("source", source),)) for source in ("processscheduler", "kafka")}
    entered = ("invoice_automation_invoices", (("status", "entered"),))
    assert scraped(collector)[lag] == 0
    ticks[0] = 11
    looking = threading.Thread(target=lambda: scraped(collector))
    looking.start()
    while hanging.reads < 2:
        time.sleep(0.001)
    api.lag.append("invoices", 0, [NOW] * 5000)
    ticks[0] = 12  # under way, not hung: the last answer, and Kafka read on its own
    meanwhile = scraped(collector)
    ticks[0] = 21  # 10 s, the cache time (longer than HUNG_AFTER): hung
    hung = scraped(collector)
    hanging.let_go.set()
    looking.join()
    assert meanwhile[ok["processscheduler"]] == 1 and meanwhile[entered] == 1
    assert meanwhile[ok["kafka"]] == 1 and meanwhile[lag] == 5000
    assert hung[ok["processscheduler"]] == 0 and entered not in hung  # not served as if it were read
    assert hung[ok["kafka"]] == 1 and hung[lag] == 5000
    ticks[0] = 32
    assert scraped(collector)[ok["processscheduler"]] == 1


def test_without_a_cache_a_scrape_waits_for_a_hung_database_read_no_longer_than_it_takes_to_call_it_hung(
        api, monkeypatch):
    """API_STATUS_CACHE_SECONDS=0: each scrape waited behind the read under way, and behind one that
    hung it waited for as long, Kafka's figures with it."""
    from api import status
    from api.metrics import PipelineCollector

    monkeypatch.setattr(status, "HUNG_AFTER", 0.2)
    hanging = StatusFiguresThatHang(api.read_model)
    collector = PipelineCollector(hanging, api.lag, api.sent_log, lambda: NOW, cache_seconds=0)  # type: ignore[arg-type]
    scraped(collector)
    looking = threading.Thread(target=lambda: scraped(collector))
    looking.start()
    while hanging.reads < 2:
        time.sleep(0.001)
    answer: list[dict] = []
    waiting = threading.Thread(target=lambda: answer.append(scraped(collector)))
    waiting.start()
    waiting.join(3)
    hanging.let_go.set()
    looking.join()
    assert answer and answer[0][("invoice_automation_scrape_ok", (("source", "processscheduler"),))] == 0
    assert answer[0][("invoice_automation_scrape_ok", (("source", "kafka"),))] == 1


def test_the_apis_reads_of_processscheduler_wait_for_a_lock_no_longer_than_it_takes_to_call_them_hung(monkeypatch):
    """A migration's ALTER TABLE held every read of the dashboard and /metrics, each request's thread
    with it, for as long as it lasted. The wait is bounded as Sampro's is (connectors/sql.py)."""
    from api import bootstrap
    from api.status import HUNG_AFTER
    from connectors.pipeline_lag import InMemoryPipelineLag
    from connectors.po_commands import InMemoryPurchaseOrderCommands
    from connectors.sampro import InMemoryPurchaseOrderReader
    from connectors.session_versions import InMemorySessionVersions
    from connectors.sql import engine_for
    from tests.unit.api.conftest import api_settings

    asked: dict[str, dict] = {}

    def recorded(url: str, **bounds):
        asked[url] = bounds
        return engine_for(url, **bounds)

    monkeypatch.setattr(bootstrap, "engine_for", recorded)
    url = "postgresql+psycopg://u:p@db.invalid/scheduler"
    bootstrap.adapters(api_settings(scheduler_db_url=url), commands=InMemoryPurchaseOrderCommands(),
                       purchase_orders=InMemoryPurchaseOrderReader([]), lag=InMemoryPipelineLag(),
                       sessions=InMemorySessionVersions())
    assert asked[url] == {"lock_wait_seconds": HUNG_AFTER}
