"""The worker's composition root: real adapters from settings in production, anything else in tests.

Nothing here runs at import time; `bootstrap()` reads the settings it is given (or the
environment) when it is called, builds the stream runtime and registers every agent on it.
Unit tests pass the in-memory broker and adapters, and drive the same agents without a server.
What the API's root (api/bootstrap.py) builds as well comes from streams/adapters.py.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from connectors.kafka_clients import max_poll_interval
from connectors.ports import (
    MarketplaceSource,
    ProcessScheduler,
    PurchaseOrderReader,
    RpaMailer,
    SamproChanges,
)
from connectors.sql import engine_for
from connectors.watermarks import FileWatermark, SqlWatermark, WatermarkStore
from rules.context import KnownInvoices
from rules.judge import RulesJudge
from rules.limits import Limits
from rules.models import PurchaseOrder, UnreadablePurchaseOrder
from rules.policy import Policy
from schemas.codec import Codec
from streams.adapters import codec_from, limits_from, policy_from, purchase_order_reader
from streams.back_pressure import BackPressure
from streams.broker import KafkaStreamBroker, StreamBroker
from streams.decisions import DECIDE, DecisionDesk
from streams.health import DEPENDENCIES, WorkerHealth
from streams.ledgers import KeptJudge, LedgerStore
from streams.runtime import Runtime
from streams.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Topics:
    marketplace: str
    invoices: str
    completions: str
    commands: str
    sampro_changes: str
    verdicts: str
    rpa_requests: str
    dlq: str

    @property
    def purchase_order_work(self) -> tuple[str, ...]:
        """Everything that carries work for a PO, keyed by PO: one ordered stream per PO."""
        return self.invoices, self.completions, self.commands, self.sampro_changes

    @classmethod
    def of(cls, settings: Settings) -> Topics:
        return cls(marketplace=settings.marketplace_topic, invoices=settings.invoices_topic,
                   completions=settings.completions_topic, commands=settings.commands_topic,
                   sampro_changes=settings.sampro_changes_topic,
                   verdicts=settings.verdicts_topic, rpa_requests=settings.rpa_requests_topic, dlq=settings.dlq_topic)


Role = Literal["all", "decide", "mail"]
ROLE_DEPENDENCIES: dict[str, tuple[str, ...]] = {
    "all": DEPENDENCIES, "decide": ("kafka", "sampro", "processscheduler", "marketplace"),
    "mail": ("kafka", "smtp", "processscheduler")}  # the mailer's sent log is in processscheduler's database


@dataclass
class Pipeline:
    settings: Settings
    runtime: Runtime  # the deciding flows: ingest, the PO agent, processscheduler
    mail_runtime: Runtime  # the RPA mailbox's flow, in a consumer group of its own; `runtime` in unit tests
    topics: Topics
    ledgers: LedgerStore
    codec: Codec
    desk: DecisionDesk
    scheduler: ProcessScheduler
    mailer: RpaMailer
    source: MarketplaceSource | None
    sampro_changes: SamproChanges | None
    health: WorkerHealth
    limits: Limits
    policy: Policy

    def runtimes(self, role: Role = "all") -> list[Runtime]:
        """What a worker of this role runs: the runtime of each consumer group it takes part in."""
        chosen = {"all": [self.runtime, self.mail_runtime], "decide": [self.runtime], "mail": [self.mail_runtime]}
        self.health.uses(ROLE_DEPENDENCIES[role])
        return list(dict.fromkeys(chosen[role]))  # in unit tests both are one


def process_scheduler(settings: Settings) -> ProcessScheduler:
    """processscheduler in the settings' database, migrated to the newest schema by the worker. Its
    statements wait SCHEDULER_LOCK_WAIT_SECONDS at most for another session's lock, then it is an
    outage; the migrations, on an engine of their own, wait for locks as they always did (their own
    lock a bounded time, `connectors.scheduler.migrate`)."""
    from connectors.scheduler import SqlProcessScheduler, upgrade

    migrations = engine_for(settings.scheduler_db_url)
    try:
        upgrade(migrations)
    finally:
        migrations.dispose()
    return SqlProcessScheduler(engine_for(settings.scheduler_db_url,
                                          lock_wait_seconds=settings.scheduler_lock_wait_seconds))


def _real_mailer(settings: Settings) -> RpaMailer:
    from connectors.rpa_mail import SmtpRpaMailer, SqlSentLog

    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    with_tls = settings.smtp_starttls or settings.smtp_implicit_tls
    tls = ssl.create_default_context(cafile=settings.smtp_ca_file) if with_tls else None
    return SmtpRpaMailer(
        host=settings.smtp_host, port=settings.smtp_port, tls=tls, implicit_tls=settings.smtp_implicit_tls,
        username=settings.smtp_username, password=password, mail_from=settings.rpa_mail_from,
        mail_to=settings.rpa_mail_to, sent_log=SqlSentLog(
            engine_for(settings.scheduler_db_url, lock_wait_seconds=settings.scheduler_lock_wait_seconds)),
        signing_key=settings.rpa_signing_key_bytes,
    )


def _real_source(settings: Settings, limits: Limits, scheduler: ProcessScheduler) -> MarketplaceSource | None:
    if settings.marketplace_source != "polling":
        return None
    from connectors.marketplace_polling import PollingMarketplaceSource

    log.warning("MARKETPLACE_SOURCE=polling reads uploads and new versions but cannot see a deleted row: an "
                "invoice the vendor withdraws in the marketplace goes on (to the RPA bot, if it is ready). "
                "Use MARKETPLACE_SOURCE=debezium where vendors withdraw invoices.")
    return PollingMarketplaceSource(engine_for(settings.marketplace_db_url),
                                    _watermark(settings, scheduler, "marketplace"),
                                    lookback_seconds=settings.poll_lookback_seconds, limits=limits)


def _real_sampro_changes(settings: Settings, scheduler: ProcessScheduler) -> SamproChanges | None:
    # "debezium": Connect writes the changes and a flow decodes them (agents/sampro_changes.py);
    # nothing polls Sampro. "none": nothing feeds sampro.changes.
    if settings.sampro_changes != "polling":
        return None
    from connectors.sampro.changes import PollingSamproChanges

    engine = engine_for(settings.sampro_db_url, lock_wait_seconds=settings.sampro_lock_wait_seconds)
    return PollingSamproChanges(engine, _watermark(settings, scheduler, "sampro"), settings.sampro_names,
                                lookback_seconds=settings.poll_lookback_seconds, stamped_in=settings.sampro_clock)


def _watermark(settings: Settings, scheduler: ProcessScheduler, source: str) -> WatermarkStore:
    """In processscheduler (migrated by the worker at start), shared by every worker; read from the
    file an older version kept in this worker's data folder until the first commit. Beside a
    processscheduler that is no database (in tests), the file alone."""
    from connectors.scheduler import SqlProcessScheduler

    file = FileWatermark(settings.data_dir / f"{source}-watermark.json")
    return SqlWatermark(scheduler.engine, source, file) if isinstance(scheduler, SqlProcessScheduler) else file


def _real_broker(settings: Settings, health: WorkerHealth, group: str) -> StreamBroker:
    return KafkaStreamBroker(settings.kafka, group,
                             session_timeout_seconds=settings.session_timeout_seconds, health=health,
                             linger=settings.batch_linger_seconds)


def bootstrap(
    settings: Settings | None = None,
    *,
    broker: StreamBroker | None = None,
    purchase_orders: PurchaseOrderReader | None = None,
    scheduler: ProcessScheduler | None = None,
    mailer: RpaMailer | None = None,
    source: MarketplaceSource | None = None,
    sampro_changes: SamproChanges | None = None,
    policy: Policy | None = None,
    health: WorkerHealth | None = None,
) -> Pipeline:
    settings = settings or Settings()
    policy = policy or policy_from(settings)
    scheduler = scheduler or process_scheduler(settings)
    codec = codec_from(settings)
    health = health or WorkerHealth(stalled_after=max_poll_interval(settings.session_timeout_seconds))
    limits = limits_from(settings)

    ledgers = LedgerStore(settings)

    def judge_for(po: PurchaseOrder | UnreadablePurchaseOrder | None, known: KnownInvoices,
                  now: datetime) -> KeptJudge:
        return KeptJudge(RulesJudge(po, known, policy, now, limits), ledgers.too_large)

    def runtime_on(group_broker: StreamBroker, name: str, back_pressure: BackPressure | None = None) -> Runtime:
        return Runtime(group_broker, dlq_topic=settings.dlq_topic, encode=codec.encode, health=health,
                       batch_size=settings.batch_size, batch_seconds=settings.batch_seconds, name=name,
                       back_pressure=back_pressure)

    # New invoices wait while more than two batches of verdicts wait for processscheduler.
    runtime = runtime_on(broker or _real_broker(settings, health, settings.app_id), "pipeline",
                         BackPressure(settings.invoices_topic, settings.verdicts_topic, 2 * settings.batch_size))
    # An email waits for the RPA mailbox's server (a sent-log commit and a reply each): its flow has
    # a consumer group of its own, so that a worker may run it in a process of its own and deciding
    # never waits for the mailbox (`worker --role`). Unit tests give one broker for every flow.
    mail_runtime = (runtime if broker is not None
                    else runtime_on(_real_broker(settings, health, settings.rpa_mail_group), "rpa-mail"))
    pipeline = Pipeline(
        settings=settings,
        runtime=runtime,
        mail_runtime=mail_runtime,
        topics=Topics.of(settings),
        ledgers=ledgers,
        codec=codec,
        desk=DecisionDesk(purchase_orders or purchase_order_reader(settings), scheduler, judge_for,
                          settings.dispatch_mode, timed=lambda stage: health.timed(DECIDE, stage), policy=policy),
        scheduler=scheduler,
        mailer=mailer or _real_mailer(settings),
        source=source if source is not None else _real_source(settings, limits, scheduler),
        sampro_changes=sampro_changes if sampro_changes is not None else _real_sampro_changes(settings, scheduler),
        health=health,
        limits=limits,
        policy=policy,
    )
    from agents import register_all

    register_all(pipeline)
    return pipeline
