"""The API's composition root: the adapters the API reads and sends through, real ones from
settings in production, whatever a test passes in instead.

Nothing is built at import time; `adapters()` reads the settings it is given when it is called.
The API shares processscheduler's database with the worker but never migrates nor writes it (the
worker does): the read model, the dry run's duplicate check and the RPA sent log share one
connection pool. What the worker's root (streams/bootstrap.py) builds as well comes from
streams/adapters.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from api.status import HUNG_AFTER
from connectors.api_ports import (
    InvoiceReadModel,
    PipelineLag,
    PurchaseOrderCommands,
    RpaSentLog,
    SessionVersions,
)
from connectors.ports import ProcessScheduler, PurchaseOrderReader
from connectors.sql import engine_for
from rules.limits import Limits
from rules.policy import Policy
from streams.adapters import codec_from, limits_from, policy_from, purchase_order_reader
from streams.settings import Settings


@dataclass(frozen=True)
class ApiAdapters:
    read_model: InvoiceReadModel
    commands: PurchaseOrderCommands
    purchase_orders: PurchaseOrderReader
    scheduler: ProcessScheduler  # read for the duplicate check of a dry run; the API never writes it
    lag: PipelineLag
    sent_log: RpaSentLog
    sessions: SessionVersions
    policy: Policy
    limits: Limits  # what an invoice may hold: the dry run judges as the worker does


def _processscheduler(settings: Settings) -> tuple[InvoiceReadModel, ProcessScheduler, RpaSentLog]:
    from connectors.rpa_mail import SqlSentLog
    from connectors.scheduler import SqlProcessScheduler
    from connectors.scheduler.read_model_sql import SqlInvoiceReadModel

    # The API only reads, and a read waits only behind another session's DDL or LOCK TABLE (a
    # migration, a VACUUM FULL): as long as that lasted it held a thread of the pool the API's routes
    # run in, each request one more. It waits as long as /readyz and /metrics take to call a read
    # hung, then fails as any outage (a 503), and the next request asks again.
    engine = engine_for(settings.scheduler_db_url, lock_wait_seconds=HUNG_AFTER)
    return SqlInvoiceReadModel(engine), SqlProcessScheduler(engine), SqlSentLog(engine)


def _commands(settings: Settings) -> PurchaseOrderCommands:
    from connectors.po_commands import KafkaPurchaseOrderCommands

    return KafkaPurchaseOrderCommands(settings.kafka, codec_from(settings),
                                      settings.completions_topic, settings.commands_topic)


def _lag(settings: Settings) -> PipelineLag:
    from connectors.pipeline_lag import KafkaPipelineLag
    from streams.topics import consumed_topics

    return KafkaPipelineLag(settings.kafka, settings.app_id,
                            read_elsewhere={settings.rpa_requests_topic: settings.rpa_mail_group},
                            reads=consumed_topics(settings))


def _sessions(settings: Settings) -> SessionVersions:
    from connectors.session_versions import SqlSessionVersions

    return SqlSessionVersions(engine_for(settings.api_sessions_db_url))


def adapters(
    settings: Settings,
    *,
    read_model: InvoiceReadModel | None = None,
    commands: PurchaseOrderCommands | None = None,
    purchase_orders: PurchaseOrderReader | None = None,
    scheduler: ProcessScheduler | None = None,
    lag: PipelineLag | None = None,
    sent_log: RpaSentLog | None = None,
    sessions: SessionVersions | None = None,
    policy: Policy | None = None,
) -> ApiAdapters:
    if read_model is None or scheduler is None or sent_log is None:
        real_read_model, real_scheduler, real_sent_log = _processscheduler(settings)
        read_model, scheduler = read_model or real_read_model, scheduler or real_scheduler
        sent_log = sent_log or real_sent_log
    return ApiAdapters(
        read_model=read_model, commands=commands or _commands(settings),
        purchase_orders=purchase_orders or purchase_order_reader(settings), scheduler=scheduler,
        lag=lag or _lag(settings), sent_log=sent_log, sessions=sessions or _sessions(settings),
        policy=policy or policy_from(settings), limits=limits_from(settings),
    )
