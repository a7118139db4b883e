"""The composition root: real adapters from settings in production, anything else in tests.

Nothing here runs at import time; `bootstrap()` reads the settings it is given (or the
environment) when it is called, builds the Faust app and registers every agent on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import faust
from sqlalchemy import Engine, create_engine

from connectors.ports import MarketplaceSource, ProcessScheduler, PurchaseOrderReader, RpaMailer
from rules.context import KnownInvoice
from rules.judge import RulesJudge
from rules.models import PurchaseOrder
from rules.policy import Policy, load_policy
from schemas.codec import Codec, codec_for
from streams.app import create_app
from streams.handlers import DecisionDesk
from streams.settings import Settings
from streams.tables import LedgerStore


@dataclass
class Topics:
    marketplace: Any
    work: Any  # invoices + completions + commands: one ordered stream per PO
    invoices: Any
    completions: Any
    commands: Any
    verdicts: Any
    rpa_requests: Any
    dlq: Any


@dataclass
class Pipeline:
    settings: Settings
    app: faust.App
    topics: Topics
    ledgers: LedgerStore
    codec: Codec
    desk: DecisionDesk
    scheduler: ProcessScheduler
    mailer: RpaMailer
    source: MarketplaceSource | None
    extras: dict[str, Any] = field(default_factory=dict)


def engine_for(url: str) -> Engine:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        return create_engine(url, connect_args={"timeout": 30})
    return create_engine(url, pool_pre_ping=True)


def _topics(app: faust.App, settings: Settings) -> Topics:
    def topic(*names: str):
        return app.topic(*names, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

    return Topics(
        marketplace=topic(settings.marketplace_topic),
        work=topic(settings.invoices_topic, settings.completions_topic, settings.commands_topic),
        invoices=topic(settings.invoices_topic),
        completions=topic(settings.completions_topic),
        commands=topic(settings.commands_topic),
        verdicts=topic(settings.verdicts_topic),
        rpa_requests=topic(settings.rpa_requests_topic),
        dlq=topic(settings.dlq_topic),
    )


def process_scheduler(settings: Settings) -> ProcessScheduler:
    """processscheduler in the settings' database, migrated to the newest schema by the worker."""
    from connectors.scheduler import SqlProcessScheduler, upgrade

    engine = engine_for(settings.scheduler_db_url)
    upgrade(engine)
    return SqlProcessScheduler(engine)


def purchase_order_reader(settings: Settings) -> PurchaseOrderReader:
    from connectors.sampro import SqlPurchaseOrderReader

    return SqlPurchaseOrderReader(engine_for(settings.sampro_db_url), settings.sampro_names)


def _real_mailer(settings: Settings) -> RpaMailer:
    from connectors.rpa_mail import SmtpRpaMailer, SqlSentLog

    password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
    return SmtpRpaMailer(
        host=settings.smtp_host, port=settings.smtp_port, starttls=settings.smtp_starttls,
        username=settings.smtp_username, password=password, mail_from=settings.rpa_mail_from,
        mail_to=settings.rpa_mail_to, sent_log=SqlSentLog(engine_for(settings.scheduler_db_url)),
    )


def _real_source(settings: Settings) -> MarketplaceSource | None:
    if settings.marketplace_source != "polling":
        return None
    from connectors.marketplace_polling import PollingMarketplaceSource

    return PollingMarketplaceSource(engine_for(settings.marketplace_db_url),
                                    settings.data_dir / "marketplace-watermark.json",
                                    lookback_seconds=settings.poll_lookback_seconds)


def policy_from(settings: Settings) -> Policy:
    return load_policy(settings.tolerances_file) if settings.tolerances_file else Policy()


def bootstrap(
    settings: Settings | None = None,
    *,
    purchase_orders: PurchaseOrderReader | None = None,
    scheduler: ProcessScheduler | None = None,
    mailer: RpaMailer | None = None,
    source: MarketplaceSource | None = None,
    policy: Policy | None = None,
) -> Pipeline:
    settings = settings or Settings()
    policy = policy or policy_from(settings)
    scheduler = scheduler or process_scheduler(settings)

    def judge_for(po: PurchaseOrder | None, known: list[KnownInvoice], now: datetime) -> RulesJudge:
        return RulesJudge(po, known, policy, now)

    app = create_app(settings)
    pipeline = Pipeline(
        settings=settings,
        app=app,
        topics=_topics(app, settings),
        ledgers=LedgerStore(app, settings),
        codec=codec_for(settings.schema_registry_url),
        desk=DecisionDesk(purchase_orders or purchase_order_reader(settings), scheduler, judge_for, settings.dispatch_mode),
        scheduler=scheduler,
        mailer=mailer or _real_mailer(settings),
        source=source if source is not None else _real_source(settings),
    )
    from agents import register_all

    register_all(pipeline)
    return pipeline
