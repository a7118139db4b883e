"""The HTTP API assembled: its adapters from the API's composition root (api/bootstrap.py), then
the routes and the middleware. Settings are read when `create_app` is called, never at import time;
`invoice-automation api` calls it once per process. It refuses settings that would leave the API
open (api/startup.py).

Every request passes, outermost first: the security headers, the trusted proxy (who may name the
user, who the client is), the body limit (counted while read), the cross-site check for changes;
then the routes, whose gates settle who is calling before a body is read (api/auth.py).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry

from api import errors, startup
from api.auth import Authenticator
from api.body_limit import BodyLimit, Limit
from api.bootstrap import adapters
from api.comparison import Matchings
from api.cross_site import CrossSiteRefusal
from api.headers import SecurityHeaders
from api.live import LiveFeed
from api.metrics import registry_for
from api.proxy import TrustedProxy
from api.routes import ap, dashboard, operations, rpa, validate
from api.status import Cached, ReadinessProbe
from connectors.api_ports import InvoiceReadModel, PipelineLag, PurchaseOrderCommands, RpaSentLog, SessionVersions
from connectors.ports import ProcessScheduler, PurchaseOrderReader
from connectors.scheduler.read_model import Kpi
from rules.limits import Limits
from rules.policy import Policy
from streams.settings import PREFIX, Settings


@dataclass
class ApiContext:
    settings: Settings
    read_model: InvoiceReadModel
    commands: PurchaseOrderCommands
    purchase_orders: PurchaseOrderReader
    scheduler: ProcessScheduler  # read for the duplicate check of a dry run; the API never writes it
    lag: PipelineLag
    sent_log: RpaSentLog  # read for the bot's callbacks: which hand-off it reports on
    policy: Policy
    limits: Limits  # what an invoice may hold, as the worker judges it
    matchings: Matchings  # the drill-down's line matching, with `policy` and `limits`, of the invoices shown lately
    auth: Authenticator
    clock: Callable[[], datetime]
    live: LiveFeed
    metrics: CollectorRegistry
    readiness: ReadinessProbe
    kpi: Cached[Kpi]  # /api/kpi: its full figures read 0.5 s of the database; once per cache time at most


def _now() -> datetime:
    return datetime.now(UTC)


def create_app(
    settings: Settings | None = None,
    *,
    read_model: InvoiceReadModel | None = None,
    commands: PurchaseOrderCommands | None = None,
    purchase_orders: PurchaseOrderReader | None = None,
    scheduler: ProcessScheduler | None = None,
    lag: PipelineLag | None = None,
    sent_log: RpaSentLog | None = None,
    sessions: SessionVersions | None = None,
    policy: Policy | None = None,
    clock: Callable[[], datetime] = _now,
    live_interval: float = 1.0,
) -> FastAPI:
    settings = settings or Settings()
    startup.check(settings)
    built = adapters(settings, read_model=read_model, commands=commands, purchase_orders=purchase_orders,
                     scheduler=scheduler, lag=lag, sent_log=sent_log, sessions=sessions, policy=policy)
    metrics = registry_for(built.read_model, built.lag, built.sent_log, clock, settings.api_status_cache_seconds)
    context = ApiContext(
        settings=settings, read_model=built.read_model, commands=built.commands,
        purchase_orders=built.purchase_orders, scheduler=built.scheduler, lag=built.lag, sent_log=built.sent_log,
        policy=built.policy,
        limits=built.limits,
        matchings=Matchings(built.policy, built.limits),
        auth=Authenticator(settings, built.sessions, metrics), clock=clock,
        live=LiveFeed(built.read_model, clock, interval=live_interval), metrics=metrics,
        readiness=ReadinessProbe({"database": built.read_model.ping, "kafka": built.commands.ping}, clock,
                                 settings.api_status_cache_seconds),
        kpi=Cached(lambda: built.read_model.kpi(clock()), settings.api_status_cache_seconds),
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        await context.live.close()

    app = FastAPI(
        title="Invoice Automation",
        version="0.1.0",
        summary="Callbacks for the RPA bot; invoices, verdicts, releases and KPI figures for Accounts Payable.",
        lifespan=lifespan,
        # FastAPI's /docs and /redoc pages load their scripts from a CDN and start them inline; the
        # document itself stays at /openapi.json.
        docs_url=None, redoc_url=None,
        openapi_tags=[
            {"name": "rpa", "description": "The RPA bot reports what it did in Sampro (bearer token)."},
            {"name": "invoices", "description": "AP reads processscheduler and overrides findings (viewer, clerk)."},
            {"name": "dashboard", "description": "The live KPI dashboard and signing in."},
            {"name": "operations", "description": "Health, readiness and Prometheus metrics (no sign-in; "
                                                  "/metrics takes a bearer token when one is set)."},
        ],
    )
    app.state.context = context
    errors.install(app)
    for router in (rpa.router, ap.router, dashboard.router, operations.router, validate.router):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=dashboard.STATIC), name="static")
    # add_middleware wraps what was added before: the last one added sees the request first.
    app.add_middleware(CrossSiteRefusal, allowed_origins=settings.api_allowed_origins)
    # The dry run takes a whole invoice: a larger body than any other route.
    dry_run = {route.path: Limit(settings.api_max_validate_body_bytes, f"{PREFIX}API_MAX_VALIDATE_BODY_BYTES",
                                 route.path) for route in validate.router.routes}
    app.add_middleware(BodyLimit, limit=Limit(settings.api_max_body_bytes, f"{PREFIX}API_MAX_BODY_BYTES"),
                       by_path=dry_run)
    app.add_middleware(TrustedProxy, settings=settings)
    app.add_middleware(SecurityHeaders, served_over_https=settings.api_served_over_https)
    if settings.api_metrics_token is None:
        _metrics_open_in_the_document(app)
    _release_reason_codes_in_the_document(app, settings.release_reason_codes)
    return app


def _release_reason_codes_in_the_document(app: FastAPI, codes: list[str]) -> None:
    """The release reason codes are a setting: the OpenAPI document lists the ones this API takes."""
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = generate()
            release = schema["components"]["schemas"]["ReleaseRequest"]
            release["properties"]["reason_code"]["enum"] = list(codes)
            if "OTHER" not in codes:  # the default is not one the API takes: one must be given
                release["properties"]["reason_code"].pop("default", None)
                release["required"] = [*release.get("required", []), "reason_code"]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _metrics_open_in_the_document(app: FastAPI) -> None:
    """Without a metrics token /metrics answers anyone: the OpenAPI document says so, not Bearer."""
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = generate()
            operation = schema["paths"]["/metrics"]["get"]
            operation.pop("security", None)
            operation["responses"].pop("401", None)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
