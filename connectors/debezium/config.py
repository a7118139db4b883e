"""The Debezium PostgreSQL connector for the marketplace invoices table, registered over Connect's REST API.

The record is flattened (ExtractNewRecordState) but deletes stay visible as rewritten records
with `__deleted`, and `__op`/`__lsn` travel along. The Kafka key is the plain PO number, so the
topic is partitioned by PO exactly as the rest of the pipeline is.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from sqlalchemy import Engine, create_engine, text

from connectors.debezium.sampro_config import SamproCapture, postgres_login
from connectors.debezium.wal_heartbeat import HEARTBEAT_MS, wal_heartbeat
from connectors.sql import mapped_errors
from rules.errors import DataError, Unavailable

CONNECTOR_CLASS = "io.debezium.connector.postgresql.PostgresConnector"
CATALOG_CONNECT_SECONDS = 3  # libpq's connect_timeout, whole seconds


@dataclass(frozen=True)
class MarketplaceCapture:
    name: str = "marketplace-invoices"
    database_url: str = ""  # SQLAlchemy URL of the marketplace database
    topic: str = "marketplace.invoices"
    table: str = "public.marketplace_invoices"
    slot: str = "invoice_automation"
    publication: str = "invoice_automation"
    # "when_needed": a first start captures the invoices already waiting, then streams changes; so
    # does a start whose slot is gone (a failover, a slot dropped), where "initial" streamed on from
    # the new slot's position and lost the uploads between. Read again, an invoice changes nothing.
    snapshot_mode: str = "when_needed"
    heartbeat_ms: int = HEARTBEAT_MS

    def connector_config(self) -> dict[str, str]:
        return {
            "connector.class": CONNECTOR_CLASS,
            "tasks.max": "1",
            "plugin.name": "pgoutput",
            **postgres_login(self.database_url),
            "topic.prefix": self.name,
            "table.include.list": self.table,
            "slot.name": self.slot,
            "publication.name": self.publication,
            # Only this table in the publication: the marketplace has other tables we must not read.
            "publication.autocreate.mode": "filtered",
            "snapshot.mode": self.snapshot_mode,
            "decimal.handling.mode": "string",
            "tombstones.on.delete": "false",
            "message.key.columns": f"{self.table}:po_number",
            "key.converter": "org.apache.kafka.connect.storage.StringConverter",
            "value.converter": "org.apache.kafka.connect.json.JsonConverter",
            "value.converter.schemas.enable": "false",
            **wal_heartbeat(self.heartbeat_ms),
            # Kafka's producer refuses a record over 1 MiB before it compresses it (max.request.size):
            # an upload of 4,000 lines (1.09 MB as Connect writes it, which the worker reads) failed the
            # task at every restart, intake stopped for every vendor and the slot kept the WAL. Up to
            # 16 MB as the worker's own producer sends, zstd-compressed under the topic's limit; what
            # is larger still reaches the worker's decoder, which dead-letters it, where it fits.
            "producer.override.max.request.size": str(16_000_000),
            "producer.override.compression.type": "zstd",
            # Each transform on the table's records only: a heartbeat has no PO number to key by,
            # and goes to its own topic as it is.
            "predicates": "table",
            "predicates.table.type": "org.apache.kafka.connect.transforms.predicates.TopicNameMatches",
            "predicates.table.pattern": rf"{re.escape(self.name)}\..+",
            "transforms": "unwrap,po_key,route",
            "transforms.unwrap.predicate": "table",
            "transforms.po_key.predicate": "table",
            "transforms.route.predicate": "table",
            "transforms.unwrap.type": "io.debezium.transforms.ExtractNewRecordState",
            "transforms.unwrap.delete.tombstone.handling.mode": "rewrite",
            "transforms.unwrap.add.fields": "op,lsn,source.ts_ms",
            "transforms.po_key.type": "org.apache.kafka.connect.transforms.ExtractField$Key",
            "transforms.po_key.field": "po_number",
            "transforms.route.type": "org.apache.kafka.connect.transforms.RegexRouter",
            "transforms.route.regex": ".*",
            "transforms.route.replacement": self.topic,
        }


DEFAULT_APP_ID = "invoice-automation"  # streams.settings.Settings.app_id's default


def marketplace_capture(database_url: str, topic: str, app_id: str = DEFAULT_APP_ID) -> MarketplaceCapture:
    """The capture of the marketplace table, named after the pipeline's app id as Sampro's is:
    two pipelines sharing a Connect (a test and production) took over each other's connector, and
    on one PostgreSQL server each other's slot. The default app id keeps the names registered
    before: others, an installation would get a second connector and slot, the first left holding WAL."""
    if app_id == DEFAULT_APP_ID:
        return MarketplaceCapture(database_url=database_url, topic=topic)
    # PostgreSQL: [a-z0-9_], 63 at most. An app id changed on the way (a-b, a.b, A-B) gets a digest of
    # itself, so two ids never share one slot.
    cleaned = re.sub(r"[^a-z0-9_]", "_", app_id.lower())
    if cleaned != app_id or len(cleaned) > 51:
        cleaned = f"{cleaned[:42]}_{hashlib.sha256(app_id.encode()).hexdigest()[:8]}"
    slot = f"{cleaned}_marketplace"
    return MarketplaceCapture(name=f"{app_id}-marketplace", database_url=database_url, topic=topic, slot=slot,
                              publication=slot)


def replica_identity_problem(capture: MarketplaceCapture) -> str | None:
    """Why the captured table would lose withdrawals: with PostgreSQL's default replica identity a
    deletion carries the primary key alone, so it reached the pipeline without its PO number and
    version, was dead-lettered, and the withdrawn invoice went on to be entered and paid."""
    engine = _catalog(capture.database_url)
    try:
        with mapped_errors("marketplace"), engine.connect() as conn:
            identity = conn.execute(text("SELECT relreplident FROM pg_class WHERE oid = to_regclass(:table)"),
                                    {"table": capture.table}).scalar()
    finally:
        engine.dispose()
    if identity is None:
        return f"the table {capture.table} does not exist in the marketplace database"
    if identity != "f":
        return (f"the table {capture.table} must keep whole rows for deletions, or a withdrawn invoice goes on "
                f"to be entered: ALTER TABLE {capture.table} REPLICA IDENTITY FULL")
    return None


def deleted_po_problem(capture: SamproCapture) -> str | None:
    """Why a deleted PO row of Sampro on PostgreSQL would reach the pipeline without its PO number:
    a deletion carries the columns of the table's replica identity alone (its primary key by
    default), and a line keyed by a line id of its own was dead-lettered, its PO never judged again."""
    schema, names = capture.names.schema_name or "public", capture.names
    engine = _catalog(capture.database_url)
    try:
        with mapped_errors("sampro"), engine.connect() as conn:
            for key, table in (("po_header", names.po_header), ("po_line", names.po_line)):
                name = ".".join('"' + part.replace('"', '""') + '"' for part in (schema, table))
                found = conn.execute(_KEPT_FOR_DELETIONS, {"table": name}).one_or_none()
                column = names.column(key, "po_number")
                if found is None:
                    return f"the table {schema}.{table} does not exist in Sampro's database"
                if found.relreplident != "f" and column not in found.kept:
                    return (f"a deleted row of {schema}.{table} would not carry its {column}: ALTER TABLE "
                            f"{name} REPLICA IDENTITY FULL (or make {column} part of its primary key)")
    finally:
        engine.dispose()
    return None


def _catalog(database_url: str) -> Engine:
    """An engine for one look at the catalog, asked on the worker's loop at every status check of
    the capture: a database host that does not answer holds the loop a few seconds, not the minutes
    libpq waits for the system's TCP timeout."""
    return create_engine(database_url, connect_args={"connect_timeout": CATALOG_CONNECT_SECONDS})


# A table's replica identity, and the columns a deletion carries where it is not FULL: those of the
# primary key ('d', the default) or of the index chosen ('i'); none for NOTHING ('n').
_KEPT_FOR_DELETIONS = text("""
    SELECT c.relreplident,
           ARRAY(SELECT a.attname::text FROM pg_index i
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
                 WHERE i.indrelid = c.oid AND CASE c.relreplident WHEN 'd' THEN i.indisprimary
                                                                  WHEN 'i' THEN i.indisreplident ELSE false END)
           AS kept
    FROM pg_class c WHERE c.oid = to_regclass(:table)""")


class Capture(Protocol):
    """A connector this project registers: the marketplace's, or Sampro's (connectors.debezium.sampro_config)."""

    @property
    def name(self) -> str: ...

    def connector_config(self) -> dict[str, str]: ...


class ConnectorError(DataError):
    """The connector did not reach RUNNING; carries the task's trace when Connect gave one."""


def put_connector(client: httpx.Client, capture: Capture) -> None:
    """Creates or updates the connector: PUT is idempotent, so every worker start may do it."""
    try:
        response = client.put(f"/connectors/{capture.name}/config", json=capture.connector_config())
    except httpx.HTTPError as exc:
        raise Unavailable("connect", f"{type(exc).__name__}: {exc}") from None
    # 409: Connect is rebalancing its workers (right after it starts), and answers once it is done.
    if response.status_code >= 500 or response.status_code == 409:
        raise Unavailable("connect", f"{response.status_code} {response.text[:300]}")
    if response.status_code >= 400:
        raise ConnectorError(f"Connect refused {capture.name}: {response.status_code} {response.text[:2000]}")


CHECK_EVERY_SECONDS = 30.0  # how often a worker asks Connect whether its captures run
STATUS_TIMEOUT = 3.0  # seconds Connect has to answer a status check, asked on the worker's loop


@dataclass
class KeptRunning:
    """A capture the worker registers, then watches. Connect leaves a task that failed (a password
    rotated, CDC switched off on a table, a slot dropped) failed until someone restarts it: its
    topic went quiet, held invoices stayed held, and /readyz said ready. Each call after the
    registration asks for the connector's status: a failed connector or task is restarted and
    named as Connect down, with the first line of its trace, until it runs; one Connect no longer
    has (deleted, its config topic lost) is registered again. `can_capture` raises `Unavailable`
    while the capture must not start or run on, and is asked at every call: asked only before the
    registration, a table set back to REPLICA IDENTITY DEFAULT while the capture ran sent every
    deletion without its PO number, the withdrawn invoice was entered and paid, and /readyz said ready."""

    connect_url: str
    capture: Capture
    can_capture: Callable[[], None] = lambda: None
    transport: httpx.BaseTransport | None = None  # httpx's own, unless a test answers as Connect
    clock: Callable[[], float] = time.monotonic
    registered: bool = False
    restarted_at: float | None = None

    def __call__(self) -> None:
        # Asked on the worker's own loop: a Connect that hangs holds its partitions that long. A
        # registration, rare, may take longer: Connect validates the config against the database.
        self.can_capture()
        if self.registered:
            with self._client(STATUS_TIMEOUT) as client:
                if self._still_registered(client):
                    return
        with self._client(10) as client:
            put_connector(client, self.capture)
        self.registered = True

    def _client(self, timeout: float) -> httpx.Client:
        return httpx.Client(base_url=self.connect_url, timeout=timeout, transport=self.transport)

    def _still_registered(self, client: httpx.Client) -> bool:
        name = self.capture.name
        try:
            response = client.get(f"/connectors/{name}/status")
            if response.status_code == 404:
                return False
            if response.status_code >= 400:
                raise Unavailable("connect", f"{response.status_code} {response.text[:300]}")
            status = response.json()
            parts = [status.get("connector"), *status.get("tasks", [])] if isinstance(status, dict) else []
            failed = [part for part in parts if isinstance(part, dict) and part.get("state") == "FAILED"]
            # Connect restarts only what failed, and the task reads on from its last offset; once per
            # CHECK_EVERY_SECONDS, however often the runtime tries a source that failed.
            if failed and (self.restarted_at is None or self.clock() - self.restarted_at >= CHECK_EVERY_SECONDS):
                restart = client.post(f"/connectors/{name}/restart",
                                      params={"includeTasks": "true", "onlyFailed": "true"})
                if restart.status_code != 409:  # Connect rebalancing: asked again at the runtime's next try
                    self.restarted_at = self.clock()
        except httpx.HTTPError as exc:
            raise Unavailable("connect", f"{type(exc).__name__}: {exc}") from None
        except ValueError:  # no JSON: a proxy's page, or a Connect that is starting
            raise Unavailable("connect", f"the status of {name} is no JSON: {response.text[:200]}") from None
        if failed:
            trace = str(failed[0].get("trace") or "no trace given").strip().splitlines()[0][:300]
            raise Unavailable("connect", f"{name} failed ({trace}); Connect was asked to restart it")
        return True


def register_connector(connect_url: str, capture: Capture, timeout: float = 60) -> dict[str, Any]:
    """Creates or updates the connector and waits until it and its task run."""
    with httpx.Client(base_url=connect_url, timeout=10) as client:
        put_connector(client, capture)
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = client.get(f"/connectors/{capture.name}/status").json()
            states = [status.get("connector", {}).get("state")] + [t.get("state") for t in status.get("tasks", [])]
            if "FAILED" in states:
                traces = [t.get("trace", "") for t in status.get("tasks", [])] + [status["connector"].get("trace", "")]
                raise ConnectorError(f"{capture.name} failed:\n" + "\n".join(t for t in traces if t)[-3000:])
            if status.get("tasks") and all(state == "RUNNING" for state in states):
                return status
            time.sleep(0.5)
        raise ConnectorError(f"{capture.name} not running after {timeout:.0f} s: {status}")


def remove_capture(connect_url: str, capture: MarketplaceCapture | SamproCapture, timeout: float = 10) -> None:
    """Deletes the connector, then its replication slot and publication, so PostgreSQL keeps no WAL for it."""
    httpx.delete(f"{connect_url}/connectors/{capture.name}", timeout=10)
    engine = create_engine(capture.database_url)
    slot = {"slot": capture.slot}
    try:
        with engine.begin() as conn:
            deadline = time.monotonic() + timeout
            active = text("SELECT count(*) FROM pg_replication_slots WHERE slot_name = :slot AND active")
            while conn.execute(active, slot).scalar() and time.monotonic() < deadline:
                time.sleep(0.25)  # the worker releases the slot a moment after the connector stops
            conn.execute(text("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                              "WHERE slot_name = :slot"), slot)
            conn.execute(text(f'DROP PUBLICATION IF EXISTS "{capture.publication}"'))
    finally:
        engine.dispose()
