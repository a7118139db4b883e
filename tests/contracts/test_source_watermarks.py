"""One contract for where a polling source keeps its watermark: a file, and processscheduler on
SQLite and PostgreSQL; and the handover it exists for, a worker on another machine polling on
from where the last one committed."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import pytest

from connectors.marketplace_polling import PollingMarketplaceSource
from connectors.marketplace_table import marketplace_invoices
from connectors.marketplace_table import metadata as marketplace_metadata
from connectors.sampro.changes import PollingSamproChanges
from connectors.sampro.standin import SamproStandIn
from connectors.scheduler import upgrade
from connectors.watermarks import FileWatermark, SqlWatermark
from rules.errors import Unavailable
from tests.contracts.test_marketplace_source import row
from tests.contracts.test_sampro_changes import po

STATE = {"watermark": "2026-12-05T09:00:00+00:00", "emitted": ["sampro:PO-1:1764925200000"]}


class WatermarkContract:
    @pytest.fixture
    def store(self):
        raise NotImplementedError

    def test_nothing_written_is_nothing_read(self, store):
        assert store().read() == {}

    def test_what_is_written_is_read_by_the_next_store_whole(self, store):
        store().write(STATE)
        assert store().read() == STATE
        store().write({**STATE, "watermark": None})
        assert store().read() == {**STATE, "watermark": None}


class TestFile(WatermarkContract):
    @pytest.fixture
    def store(self, tmp_path):
        return lambda: FileWatermark(tmp_path / "state.json")

    @pytest.mark.parametrize("text", ["{not json", "[1, 2]"])
    def test_a_state_that_is_no_json_object_is_read_as_none_saying_so(self, store, tmp_path, caplog, text):
        (tmp_path / "state.json").write_text(text)
        with caplog.at_level(logging.WARNING):
            assert store().read() == {}
        assert "a polling state that is no JSON object is read as none, and its source starts afresh" in caplog.text


class SqlContract(WatermarkContract):
    @pytest.fixture
    def engine(self):
        raise NotImplementedError

    @pytest.fixture
    def store(self, engine, tmp_path):
        upgrade(engine)
        return lambda: SqlWatermark(engine, "sampro", FileWatermark(tmp_path / "sampro-watermark.json"))

    def test_an_older_versions_file_is_read_until_the_first_write(self, store, tmp_path):
        FileWatermark(tmp_path / "sampro-watermark.json").write(STATE)
        assert store().read() == STATE
        store().write({**STATE, "emitted": []})
        assert store().read() == {**STATE, "emitted": []}

    def test_sources_keep_their_own(self, engine, store):
        store().write(STATE)
        assert SqlWatermark(engine, "marketplace").read() == {}

    def test_a_worker_that_takes_sampro_polling_over_goes_on_where_the_last_one_committed(
            self, engine, store, tmp_path):
        """With a file each, the second started at Sampro's newest change: a receipt booked between
        the first's last poll and the handover was never a change, and its held invoices stayed held."""
        standin = SamproStandIn(engine)
        standin.create_schema()
        standin.load_purchase_orders([po("PO-0")])
        first = PollingSamproChanges(engine, store(), lookback_seconds=300)
        first.poll()
        first.commit()
        time.sleep(0.002)
        standin.load_purchase_orders([po("PO-1")])  # the first worker stops before it polls again
        elsewhere = PollingSamproChanges(engine, SqlWatermark(engine, "sampro"), lookback_seconds=300)
        assert [change.po_number for change in elsewhere.poll()] == ["PO-1"]

    def test_a_worker_that_takes_marketplace_polling_over_does_not_read_every_invoice_again(self, engine, store):
        """With a file each, the second read the marketplace table from its first row."""
        marketplace_metadata.create_all(engine)
        at = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
        with engine.begin() as conn:
            conn.execute(marketplace_invoices.insert(), [row("MP-1", at)])
        first = PollingMarketplaceSource(engine, SqlWatermark(engine, "marketplace"), lookback_seconds=0)
        assert [event.invoice_id for event in first.poll().events] == ["MP-1"]
        first.commit()
        elsewhere = PollingMarketplaceSource(engine, SqlWatermark(engine, "marketplace"), lookback_seconds=0)
        assert elsewhere.poll().events == []


    def test_a_worker_given_the_polling_back_goes_on_from_where_the_other_one_committed(self, engine, store):
        """It read its state once per process: given partition 0 back, it polled on from its own
        watermark, and sent again all that the other worker had sent meanwhile."""
        marketplace_metadata.create_all(engine)
        standin = SamproStandIn(engine)
        standin.create_schema()
        at = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
        with engine.begin() as conn:
            conn.execute(marketplace_invoices.insert(), [row("MP-1", at)])
        standin.load_purchase_orders([po("PO-0")])
        first = (PollingMarketplaceSource(engine, SqlWatermark(engine, "marketplace"), lookback_seconds=300),
                 PollingSamproChanges(engine, SqlWatermark(engine, "sampro"), lookback_seconds=300))
        for source in first:
            source.poll()
            source.commit()
        time.sleep(0.002)
        with engine.begin() as conn:  # what the other worker polls and sends while it has partition 0
            conn.execute(marketplace_invoices.insert(), [row("MP-2", datetime(2026, 12, 5, 9, 1, tzinfo=UTC))])
        standin.load_purchase_orders([po("PO-1")])
        meanwhile = (PollingMarketplaceSource(engine, SqlWatermark(engine, "marketplace"), lookback_seconds=300),
                     PollingSamproChanges(engine, SqlWatermark(engine, "sampro"), lookback_seconds=300))
        assert [e.invoice_id for e in meanwhile[0].poll().events] == ["MP-2"]
        assert [change.po_number for change in meanwhile[1].poll()] == ["PO-1"]
        for source in meanwhile:
            source.commit()
        for source in first:
            source.forget()  # the runtime's word that this worker has partition 0 again
        assert first[0].poll().events == [] and first[1].poll() == []


class Counted:
    """A store that counts its writes, and fails the ones it is told to."""

    def __init__(self, store, failing: int = 0):
        self.store, self.failing, self.writes = store, failing, 0

    def read(self):
        return self.store.read()

    def write(self, state):
        self.writes += 1
        if self.failing:
            self.failing -= 1
            raise Unavailable("processscheduler", "connection refused")
        self.store.write(state)


def _marketplace(engine, store, *invoice_ids: str) -> PollingMarketplaceSource:
    marketplace_metadata.create_all(engine)
    at = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(marketplace_invoices.insert(), [row(invoice_id, at) for invoice_id in invoice_ids])
    return PollingMarketplaceSource(engine, store, lookback_seconds=300)


class TestWrites:
    """On SQLite: what each source writes, and when (the state may be a megabyte: the window's ids)."""

    @pytest.fixture
    def engine(self, sqlite_engine):
        upgrade(sqlite_engine)
        return sqlite_engine

    def test_a_quiet_marketplace_writes_nothing(self, engine):
        """Every poll wrote the whole state, every 2 s: 1.1 MB of JSON with 20,000 invoices in the window."""
        store = Counted(SqlWatermark(engine, "marketplace"))
        source = _marketplace(engine, store, "MP-1")
        for _ in range(5):
            source.poll()
            source.commit()
        assert store.writes == 1

    @pytest.mark.parametrize("source_name", ["marketplace", "sampro"])
    def test_a_state_that_could_not_be_written_is_written_by_the_next_commit_quiet_or_not(self, engine, source_name):
        """The in-memory state had moved on: a quiet Sampro never wrote it, and a restart sent again."""
        store = Counted(SqlWatermark(engine, source_name), failing=1)
        if source_name == "marketplace":
            source = _marketplace(engine, store, "MP-1")
        else:
            SamproStandIn(engine).create_schema()
            SamproStandIn(engine).load_purchase_orders([po("PO-0")])
            source = PollingSamproChanges(engine, store, lookback_seconds=300)
        source.poll()
        with pytest.raises(Unavailable):
            source.commit()
        source.poll()  # nothing new
        source.commit()
        assert store.writes == 2 and store.store.read() != {}


    def test_a_rebalance_keeps_a_marketplace_state_that_could_not_be_written(self, engine):
        """Forgotten at the rebalance, the state came back from the store without the last commit,
        and every invoice of that commit was sent again (found by review)."""
        store = Counted(SqlWatermark(engine, "marketplace"), failing=1)
        source = _marketplace(engine, store, "MP-1")
        assert [e.invoice_id for e in source.poll().events] == ["MP-1"]
        with pytest.raises(Unavailable):
            source.commit()
        source.forget()
        assert source.poll().events == []
        source.commit()
        assert store.store.read()["emitted"].keys() == {"MP-1"}

    def test_a_rebalance_keeps_a_sampro_state_that_could_not_be_written(self, engine):
        """Forgotten with nothing in the store, the next poll was a first poll again: it only
        remembered the changes it read, and the change of PO-1 was never sent (found by review)."""
        standin = SamproStandIn(engine)
        standin.create_schema()
        standin.load_purchase_orders([po("PO-0")])
        store = Counted(SqlWatermark(engine, "sampro"), failing=1)
        source = PollingSamproChanges(engine, store, lookback_seconds=300)
        source.poll()
        with pytest.raises(Unavailable):
            source.commit()
        time.sleep(0.002)
        standin.load_purchase_orders([po("PO-1")])
        source.forget()
        assert [change.po_number for change in source.poll()] == ["PO-1"]


class TestSqlite(SqlContract):
    @pytest.fixture
    def engine(self, sqlite_engine):
        return sqlite_engine


class TestPostgres(SqlContract):
    @pytest.fixture
    def engine(self, scheduler_pg_engine):
        return scheduler_pg_engine
