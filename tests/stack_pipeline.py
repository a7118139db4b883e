"""The whole pipeline on the real stack, for the e2e and integration tiers: PostgreSQL with
Debezium, Kafka, the worker as a process, an aiosmtpd mailbox and the stand-in RPA bot. Each test
gets its own topics, schemas and slot."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from sqlalchemy import create_engine, select, text

from connectors.consumer_groups import KafkaConsumerGroups
from connectors.debezium import MarketplaceCapture, register_connector
from connectors.debezium.config import remove_capture
from connectors.sampro.standin import SamproStandIn
from connectors.scheduler import SqlProcessScheduler, upgrade
from connectors.scheduler.tables import rpa_sent_log
from connectors.sql import engine_for
from connectors.topic_reader import KafkaTopicReader
from devstack.demo import _settings_env
from devstack.mailbox import SmtpServer
from devstack.process import free_port, tail
from devstack.rpa_bot import RpaBot
from devstack.worker import WorkerProcess
from schemas.codec import SingleObjectCodec
from streams.settings import Settings
from streams.topics import ensure_topics

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def in_schema(url: str, schema: str) -> str:
    return f"{url}?options=-csearch_path%3D{schema}"


@dataclass
class Pipeline:
    settings: Settings
    capture: MarketplaceCapture | None
    marketplace: object
    sampro: SamproStandIn
    scheduler: SqlProcessScheduler
    mailbox: SmtpServer
    log_dir: Path
    worker: WorkerProcess | None = None
    bot: RpaBot | None = None
    workers: list[WorkerProcess] = field(default_factory=list)

    def start_worker(self) -> WorkerProcess:
        """A worker with its /readyz and /metrics on a port of its own (`worker.http_port`)."""
        port = free_port()
        settings = self.settings.model_copy(update={"worker_http_port": port})
        self.worker = WorkerProcess(_settings_env(settings), self.log_dir / "worker.log").start()
        self.worker.http_port = port
        self.workers.append(self.worker)
        return self.worker

    def readiness(self) -> tuple[int, dict]:
        """The running worker's /readyz: its status code and what it says is down."""
        answer = httpx.get(f"http://127.0.0.1:{self.worker.http_port}/readyz", timeout=5)
        return answer.status_code, answer.json()

    def start_bot(self, fail_invoices: frozenset[str] = frozenset()) -> RpaBot:
        self.bot = RpaBot(self.mailbox.mailbox, self.sampro, self.settings.kafka_bootstrap_servers,
                          self.settings.completions_topic, fail_invoices,
                          signing_key=self.settings.rpa_signing_key_bytes).start()
        return self.bot

    def wait_for(self, condition, timeout: float = 90, what: str = "the pipeline") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.worker is not None and not self.worker.running():
                pytest.fail(f"the worker died:\n{self.worker.last_lines()}")
            if condition():
                return
            time.sleep(0.5)
        rows = self.scheduler.rows()
        what = what() if callable(what) else what
        if self.worker is not None:
            self.worker.dump_state()
            time.sleep(1)
        pytest.fail(f"{what} did not get there in {timeout:.0f} s; {len(rows)} rows, e.g. "
                    f"{[(r['invoice_id'], r['status']) for r in rows[:20]]}\n"
                    f"consumer group (partition: committed/end):\n{self.group_positions()}\n"
                    f"processscheduler sessions not idle:\n{self.busy_sessions()}\n"
                    f"worker log, with its threads and tasks at the end:\n"
                    f"{tail(self.worker.log, 400) if self.worker else '-'}")

    def sent_log(self, invoice_ids) -> str:
        """The sent log's word on these invoices: (invoice, version, message id, server reply)."""
        with self.scheduler.engine.connect() as conn:
            found = conn.execute(select(rpa_sent_log.c.invoice_id, rpa_sent_log.c.invoice_version,
                                        rpa_sent_log.c.sent_at, rpa_sent_log.c.server_reply)
                                 .where(rpa_sent_log.c.invoice_id.in_(list(invoice_ids)))).all()
        return "\n".join(f"  {tuple(row)}" for row in found) or "  (no entries)"

    def busy_sessions(self) -> str:
        """What the scheduler database is doing: a lock wait shows here as a blocked query."""
        engine = self.scheduler.engine
        if engine.dialect.name != "postgresql":
            return "  (not PostgreSQL)"
        with engine.connect() as conn:
            found = conn.execute(text(
                "SELECT pid, state, wait_event_type, wait_event, pg_blocking_pids(pid) AS blocked_by, "
                "now() - xact_start AS in_transaction, left(query, 120) AS query FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() AND state <> 'idle'")).all()
        return "\n".join(f"  {tuple(row)}" for row in found) or "  (none)"

    def group_positions(self) -> str:
        """Where the worker's groups stand on each topic they read, to tell a stall from a loss."""
        s = self.settings
        reader, groups = KafkaTopicReader(s.kafka_bootstrap_servers), KafkaConsumerGroups(s.kafka_bootstrap_servers)
        lines = []
        for topic in (s.marketplace_topic, s.invoices_topic, s.completions_topic, s.verdicts_topic,
                      s.rpa_requests_topic):
            ends = {p: end for p, (_, end) in reader.ranges(topic).items()}
            group = s.rpa_mail_group if topic == s.rpa_requests_topic else s.app_id
            committed = groups.committed(group, topic, sorted(ends))
            lines.append(f"  {topic}: " + ", ".join(f"{p}: {committed[p]}/{ends[p]}" for p in sorted(ends)))
        return "\n".join(lines)

    def unread(self) -> dict[str, int]:
        """Data records after the group's committed offset, per input topic: 0 everywhere when no
        partition is stuck (transaction markers after the last record are not records)."""
        from confluent_kafka import TopicPartition

        s = self.settings
        groups = KafkaConsumerGroups(s.kafka_bootstrap_servers)
        reader = KafkaTopicReader(s.kafka_bootstrap_servers)
        unread = {}
        for topic in (s.marketplace_topic, s.invoices_topic, s.completions_topic, s.commands_topic,
                      s.sampro_changes_topic, s.verdicts_topic, s.rpa_requests_topic):
            ends = {p: end for p, (_, end) in reader.ranges(topic).items()}
            group = s.rpa_mail_group if topic == s.rpa_requests_topic else s.app_id
            committed = groups.committed(group, topic, sorted(ends))
            consumer = Consumer({"bootstrap.servers": s.kafka_bootstrap_servers, "group.id": f"unread-{time.time_ns()}",
                                 "enable.partition.eof": True, "enable.auto.commit": False})
            try:
                consumer.assign([TopicPartition(topic, p, committed[p] or 0) for p in ends])
                open_partitions, count, deadline = set(ends), 0, time.monotonic() + 10
                while open_partitions and time.monotonic() < deadline:
                    for message in consumer.consume(500, 0.5):
                        if message.error() is None:
                            count += 1
                        elif message.error().code() == KafkaError._PARTITION_EOF:
                            open_partitions.discard(message.partition())
            finally:
                consumer.close()
            unread[topic] = count
        return unread

    def dead_letters(self) -> list[dict]:
        """The DLQ's records: their headers as text, and `value` the original bytes."""
        return [{**{k: v.decode(errors="replace") for k, v in m.headers() or []}, "value": m.value()}
                for m in read_topic(self.settings.kafka_bootstrap_servers, self.settings.dlq_topic)]

    def submit(self, stream) -> None:
        """Invoice versions straight onto the invoices topic, keyed by PO as the ingest agent does."""
        producer = Producer({"bootstrap.servers": self.settings.kafka_bootstrap_servers,
                             "partitioner": "murmur2_random", "linger.ms": 20})
        codec = SingleObjectCodec()
        for submission in stream:
            producer.produce(self.settings.invoices_topic, key=submission.po_number.encode(),
                             value=codec.encode(submission))
        assert producer.flush(60) == 0

    def statuses(self) -> dict[str, str]:
        return {row["invoice_id"]: row["status"] for row in self.scheduler.rows()}


def read_topic(bootstrap: str, topic: str, timeout: float = 30) -> list:
    """The topic's committed records, to each partition's end as the broker has it now; none for a
    topic not made yet. Its partitions are assigned, not joined: a read of a fixed 5 s through a
    consumer group returned nothing when the group's join took longer."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{time.time_ns()}",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    found: list = []
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return found
        unread = set(metadata.partitions)
        consumer.assign([TopicPartition(topic, partition, OFFSET_BEGINNING) for partition in unread])
        deadline = time.monotonic() + timeout
        while unread and time.monotonic() < deadline:
            for message in consumer.consume(500, timeout=0.5):
                if message.error() is None:
                    found.append(message)
                elif message.error().code() == KafkaError._PARTITION_EOF:
                    unread.discard(message.partition())
        assert not unread, f"partitions {sorted(unread)} of {topic} not read to their end within {timeout} s"
    finally:
        consumer.close()
    return found


@pytest.fixture
def pipeline(kafka_bootstrap, connect_url, marketplace_db_url, sampro_db_url, scheduler_db_url, unique_name, tmp_path):
    schemas = []
    for url in (sampro_db_url, scheduler_db_url):
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{unique_name}"'))
        engine.dispose()
        schemas.append(url)
    prefix = unique_name
    with SmtpServer() as mailbox:
        settings = Settings(
            kafka_bootstrap_servers=kafka_bootstrap, app_id=prefix, data_dir=tmp_path / "data",
            marketplace_source="debezium", marketplace_topic=f"{prefix}.marketplace.invoices",
            invoices_topic=f"{prefix}.invoices", completions_topic=f"{prefix}.rpa.completions",
            commands_topic=f"{prefix}.po.commands", sampro_changes_topic=f"{prefix}.sampro.changes",
            verdicts_topic=f"{prefix}.verdicts",
            rpa_requests_topic=f"{prefix}.rpa.requests", dlq_topic=f"{prefix}.dlq",
            marketplace_db_url=marketplace_db_url, sampro_db_url=in_schema(sampro_db_url, unique_name),
            scheduler_db_url=in_schema(scheduler_db_url, unique_name), smtp_port=mailbox.port, batch_seconds=0.1,
            session_timeout_seconds=10,
            tolerances_file=SAMPLES / "tolerances.toml",
            rpa_signing_key=secrets.token_hex(32),  # the stand-in bot enters only the emails the worker signed
        )
        ensure_topics(settings)
        capture = MarketplaceCapture(name=f"mp-{prefix}", database_url=marketplace_db_url,
                                     topic=settings.marketplace_topic, slot=prefix, publication=prefix,
                                     snapshot_mode="no_data")
        register_connector(connect_url, capture)
        sampro = SamproStandIn(engine_for(settings.sampro_db_url))
        sampro.create_schema()
        scheduler_engine = engine_for(settings.scheduler_db_url)
        upgrade(scheduler_engine)
        run = Pipeline(settings, capture, engine_for(marketplace_db_url), sampro,
                       SqlProcessScheduler(scheduler_engine), mailbox, tmp_path)
        try:
            yield run
        finally:
            if run.bot:
                run.bot.stop()
            for worker in run.workers:
                worker.stop()
            remove_capture(connect_url, capture)
            for url in schemas:
                engine = create_engine(url)
                with engine.begin() as conn:
                    conn.execute(text(f'DROP SCHEMA "{unique_name}" CASCADE'))
                engine.dispose()
        log = tmp_path / "worker.log"
        broken = [line for line in (log.read_text(errors="replace") if log.exists() else "").splitlines()
                  if "failed outside any flow" in line]
        assert not broken, "the runtime itself failed (see streams/runtime.py):\n" + "\n".join(broken[:10])

