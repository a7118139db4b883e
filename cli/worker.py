"""`worker`: run the pipeline's agents until SIGINT or SIGTERM."""

from __future__ import annotations

import gc
import logging
import signal
import threading
from enum import StrEnum
from typing import Annotated, cast

import typer


class Level(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


LogLevel = Annotated[Level, typer.Option(case_sensitive=False, help="What the worker logs, this level and above.")]


class WorkerRole(StrEnum):
    ALL = "all"
    DECIDE = "decide"
    MAIL = "mail"


Role = Annotated[WorkerRole, typer.Option(
    help="all: every flow, on one thread. decide: ingest, the PO agent and processscheduler. mail: the "
         "RPA mailbox's flow. Run one 'decide' and one 'mail' worker (or more of each) so that deciding "
         "never waits for the mailbox.")]


def worker(loglevel: LogLevel = Level.WARNING, role: Role = WorkerRole.ALL) -> None:
    """Start the agents: marketplace ingest, the per-PO decisions, processscheduler and the RPA mailbox.

    Every setting comes from INVOICE_AUTOMATION_* environment variables (see streams/settings.py):
    the broker, the databases, the SMTP server, the tolerances file and the dispatch mode.
    Topics that do not exist yet are created first. SIGTERM or Ctrl-C finishes the batch at hand,
    commits it and leaves the consumer group. With WORKER_HTTP_PORT set, /readyz says which
    dependency is down and since when, and /metrics serves Prometheus metrics. `kill -USR1 <pid>`
    writes the stack of every thread to the log, to see where a stalled worker waits.
    """
    from cli.logs import configure_logging
    from streams.bootstrap import Role as RoleName
    from streams.bootstrap import bootstrap
    from streams.diagnostics import dump_state_on_usr1
    from streams.health import serve
    from streams.runtime import run_together
    from streams.settings import Settings
    from streams.topics import check_co_partitioned, check_sizes_taken, ensure_topics

    settings = Settings()
    configure_logging(loglevel.value, settings.log_format)
    ensure_topics(settings)
    check_co_partitioned(settings)
    check_sizes_taken(settings)
    pipeline = bootstrap(settings)
    dump_state_on_usr1()
    if settings.worker_http_port is not None:
        serve(pipeline.health, settings.worker_http_host, settings.worker_http_port)
    stop = threading.Event()
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, lambda *_: stop.set())
    logging.getLogger(__name__).info("worker %s started (%s)", settings.app_id, role.value)
    _collect_garbage_less_often()
    run_together(pipeline.runtimes(cast(RoleName, role.value)), stop.is_set)


def _collect_garbage_less_often() -> None:
    """Each invoice allocates thousands of short-lived objects beside a heap of decoded ledgers
    and client state, and at CPython's default thresholds (700, 10, 10) the cyclic collector's
    full passes took a quarter of the deciding worker's CPU: 15.8 of 60.7 s in the pipeline bench
    (steady, scale 0.5), 3.0 of 55.3 s with these, at the same RSS. Young objects are still
    collected often; what the worker built at start is frozen out of every pass."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 50, 100)


def register(app: typer.Typer) -> None:
    app.command()(worker)
