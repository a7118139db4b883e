"""The demo on embedded defaults: local Kafka, SQLite for the marketplace, the Sampro stand-in and
processscheduler, the polling source, a local SMTP mailbox with a stand-in RPA bot, the worker,
and the API with the dashboard (the bot reports through its callbacks).
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import time
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from sqlalchemy import insert

from api.app import create_app
from api.auth import hash_password
from api.server import ThreadedServer
from connectors.marketplace_table import marketplace_invoices
from connectors.marketplace_table import metadata as marketplace_metadata
from connectors.sampro.standin import SamproStandIn
from connectors.scheduler import SqlProcessScheduler, upgrade
from connectors.sql import engine_for
from devstack.mailbox import SmtpServer
from devstack.process import free_port
from devstack.rpa_bot import RpaBot
from devstack.stack import LocalStack
from devstack.worker import WorkerProcess
from rules.models import PurchaseOrder
from streams.settings import Settings

SETTLED = {"manual_review", "bad_invoice", "po_not_found", "entered", "rpa_failed"}
DEMO_USERS = {"ap-clerk": ("demo", "clerk"), "ap-viewer": ("demo", "viewer")}  # name: (password, role)
# the worker needs none of them
API_SECRETS = {"api_token", "api_users", "api_session_secret", "api_metrics_token", "api_trusted_proxy_secret"}


def _json(path: Path):
    return json.loads(path.read_text(), parse_float=Decimal)


@dataclass
class DemoRun:
    settings: Settings
    env: dict[str, str]
    scheduler: SqlProcessScheduler
    mailbox: SmtpServer
    bot: RpaBot
    worker: WorkerProcess
    invoices: list[dict]
    api: ThreadedServer
    started_kafka: bool  # stopped at the end only if the demo started it


def _settings_env(settings: Settings) -> dict[str, str]:
    values = settings.model_dump(mode="json", exclude={"sampro_names", "smtp_password", *API_SECRETS})
    # The worker signs in to Kafka and signs the RPA emails with these: dumped, they read "**********".
    values |= {name: secret.get_secret_value()
               for name in ("kafka_sasl_password", "kafka_ssl_key_password", "rpa_signing_key")
               if (secret := getattr(settings, name)) is not None}
    # Lists and maps as JSON, as pydantic-settings reads them from the environment.
    return {f"INVOICE_AUTOMATION_{k.upper()}": v if isinstance(v, str) else json.dumps(v)
            for k, v in values.items() if v is not None}


def prepare(root: Path, samples: Path, kafka_bootstrap: str) -> tuple[Settings, list[dict], list[PurchaseOrder]]:
    run = uuid.uuid4().hex[:6]
    data = root / ".stack" / "demo"
    shutil.rmtree(data, ignore_errors=True)
    prefix = f"demo-{run}"
    settings = Settings(
        kafka_bootstrap_servers=kafka_bootstrap, app_id=prefix, data_dir=data,
        marketplace_topic=f"{prefix}.marketplace.invoices", invoices_topic=f"{prefix}.invoices",
        completions_topic=f"{prefix}.rpa.completions", commands_topic=f"{prefix}.po.commands",
        sampro_changes_topic=f"{prefix}.sampro.changes",
        verdicts_topic=f"{prefix}.verdicts", rpa_requests_topic=f"{prefix}.rpa.requests", dlq_topic=f"{prefix}.dlq",
        marketplace_db_url=f"sqlite:///{data}/marketplace.db", sampro_db_url=f"sqlite:///{data}/sampro.db",
        scheduler_db_url=f"sqlite:///{data}/scheduler.db", poll_interval_seconds=0.5, batch_seconds=0.1,
        tolerances_file=samples / "tolerances.toml" if (samples / "tolerances.toml").exists() else None,
        # drawn for this run: the API starts with no default secret (api/startup.py), and the stand-in
        # bot enters only the emails the worker signed
        api_token=secrets.token_hex(32), api_session_secret=secrets.token_hex(32),
        rpa_signing_key=secrets.token_hex(32),
        api_sessions_db_url=f"sqlite:///{data}/api-sessions.db",
        api_users=[{"name": name, "password_hash": hash_password(password), "role": role}
                   for name, (password, role) in DEMO_USERS.items()],
    )
    cases = sorted(p for p in samples.iterdir() if (p / "invoice.json").exists())
    invoices = [_json(case / "invoice.json") for case in cases]
    pos = {po.po_number: po for po in (PurchaseOrder.model_validate(_json(c / "po.json"))
                                       for c in cases if (c / "po.json").exists())}
    sampro = SamproStandIn(engine_for(settings.sampro_db_url))
    sampro.create_schema()
    sampro.load_purchase_orders(pos.values())
    for case in cases:  # invoices entered before the demo, for the duplicate check
        for earlier in _json(case / "history.json") if (case / "history.json").exists() else []:
            if earlier["status"] == "entered":
                sampro.enter_invoice(sampro_invoice_id=f"S-{earlier['invoice_id']}", vendor_id=earlier["vendor_id"],
                                     invoice_number=earlier["invoice_number"], po_number="(earlier)",
                                     invoice_date=None, total_amount=None, lines=[])
    marketplace_metadata.create_all(engine_for(settings.marketplace_db_url))
    upgrade(engine_for(settings.scheduler_db_url))
    return settings, invoices, list(pos.values())


def upload(settings: Settings, invoices: list[dict]) -> None:
    """What vendors do: rows land in the marketplace table, a moment apart."""
    engine = engine_for(settings.marketplace_db_url)
    for invoice in invoices:
        row = {key: invoice.get(key) for key in ("invoice_id", "vendor_id", "invoice_number", "po_number", "currency")}
        row |= {"version": invoice.get("version", 1),
                "invoice_date": datetime.fromisoformat(invoice["invoice_date"]).date(),
                "lines": json.loads(json.dumps(invoice.get("lines", []), default=str)),
                "extra_charges": json.loads(json.dumps(invoice.get("extra_charges", []), default=str)),
                "tax_amount": Decimal(invoice.get("tax_amount", 0)), "total_amount": Decimal(invoice["total_amount"]),
                "updated_at": datetime.now(UTC)}
        with engine.begin() as conn:
            conn.execute(insert(marketplace_invoices).values(**row))


def _port(wanted: int) -> int:
    """`wanted` when it is free, else any free port."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", wanted))
            return wanted
        except OSError:
            return free_port()


def start(root: Path, samples: Path, api_port: int = 8000) -> DemoRun:
    """Everything the demo runs; what started is stopped again when a later step fails or is
    interrupted (a wrong --samples folder, Ctrl-C): Kafka and the worker were left running."""
    stack = LocalStack(root)
    started_kafka = not stack.status()["kafka"]["running"]
    with ExitStack() as undo:
        if started_kafka:
            undo.callback(stack.down, ("kafka",))  # a PostgreSQL another run started stays
        endpoints = stack.up(("kafka",))
        settings, invoices, _ = prepare(root, samples, endpoints.kafka_bootstrap)
        mailbox = undo.enter_context(SmtpServer())
        settings = settings.model_copy(update={"smtp_port": mailbox.port})
        env = _settings_env(settings)
        worker = WorkerProcess(env, settings.data_dir / "worker.log").start()
        undo.callback(worker.stop)
        api = ThreadedServer(create_app(settings), port=_port(api_port)).start()
        undo.callback(api.stop)
        sampro = SamproStandIn(engine_for(settings.sampro_db_url))
        bot = RpaBot(mailbox.mailbox, sampro, settings.kafka_bootstrap_servers, settings.completions_topic,
                     api_url=api.url, api_token=settings.api_token.get_secret_value(),
                     signing_key=settings.rpa_signing_key_bytes).start()
        scheduler = SqlProcessScheduler(engine_for(settings.scheduler_db_url))
        undo.pop_all()  # running: `stop` takes it down
    return DemoRun(settings, env, scheduler, mailbox, bot, worker, invoices, api, started_kafka)


def wait_until_settled(run: DemoRun, timeout: float, progress: Callable[[int, int], None]) -> bool:
    """True when every sample invoice reached a status no later event will change without AP."""
    ids = {invoice.get("invoice_id") for invoice in run.invoices}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not run.worker.running():
            raise RuntimeError(f"the worker stopped. Last lines of its log:\n{run.worker.last_lines()}")
        settled = sum(1 for row in run.scheduler.rows() if row["invoice_id"] in ids and row["status"] in SETTLED)
        progress(settled, len(ids))
        if settled == len(ids):
            return True
        time.sleep(0.5)
    return False


def correct_a_price(run: DemoRun, timeout: float) -> str | None:
    """What a buyer does when AP asks: corrects, in Sampro, the PO prices of an invoice held for
    PRICE_MISMATCH alone. Returns that invoice once the pipeline has cleared it by itself and the
    bot has entered it; None when no invoice is held so, or it was not entered in time."""
    for row in run.scheduler.rows(status="manual_review"):
        findings = row["reasons"] or []
        if not findings or {f["code"] for f in findings} != {"PRICE_MISMATCH"} or not row["po_snapshot"]:
            continue
        po = PurchaseOrder.model_validate(row["po_snapshot"])
        document_lines = (row["invoice_document"] or {}).get("lines", [])
        parts = {line.get("line_no"): line.get("part_number") for line in document_lines}
        agreed = {(parts.get(f["line_no"]), Decimal(f["expected"])): Decimal(f["actual"]) for f in findings}
        lines = [line.model_copy(update={"unit_price": agreed.get((line.part_number, line.unit_price),
                                                                  line.unit_price)}) for line in po.lines]
        corrected = po.model_copy(update={"lines": lines})
        SamproStandIn(engine_for(run.settings.sampro_db_url)).load_purchase_orders([corrected])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(r["status"] == "entered" for r in run.scheduler.rows(row["po_number"])
                   if r["invoice_id"] == row["invoice_id"]):
                return str(row["invoice_id"])
            time.sleep(0.5)
        return None
    return None


def stop(run: DemoRun, root: Path) -> None:
    run.bot.stop()
    run.api.stop()
    run.worker.stop()
    run.mailbox.__exit__(None, None, None)
    if run.started_kafka:
        LocalStack(root).down(("kafka",))
