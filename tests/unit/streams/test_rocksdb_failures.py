"""The PO agent's ledgers in a real RocksDB (rocksdict) whose disk fills up or goes bad under it.

A full disk is a file size limit (RLIMIT_FSIZE, its signal ignored): RocksDB's appends fail as
they do on ENOSPC, and the database then refuses every later write, as it does on a full disk.
A bad sector is bytes overwritten in an SST file under the open database."""

from __future__ import annotations

import resource
import signal
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from streams.broker_memory import InMemoryBroker
from streams.state import StateWrites
from tests.unit.streams.conftest import make_worker, ready_invoice


@contextmanager
def full_disk(room: int = 16 * 1024) -> Iterator[None]:
    """No file grows past `room` bytes."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (room, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)


def test_a_partition_whose_disk_filled_as_it_wrote_a_batch_goes_on_once_the_disk_has_room(tmp_path):
    """RocksDB refuses every write after one failed, and refused to close: each catching up from the
    changelog stopped before it made the database again, and the PO's work waited for a restart
    with the disk free again (MP-1's entry never decided, the PO held for good)."""
    worker = make_worker(tmp_path, store="rocksdb://")
    worker.submit(ready_invoice("MP-1"))
    worker.run()
    with full_disk(room=4 * 1024):
        worker.submit(ready_invoice("MP-2"))
        worker.run(steps=3)
    assert "state store" in worker.pipeline.health.outages()
    worker.run(steps=10, seconds_between=10)
    assert "state store" not in worker.pipeline.health.outages()
    worker.complete("MP-1")
    worker.run()
    assert worker.statuses() == {"MP-1": "entered", "MP-2": "sent_to_rpa"}


def test_a_restore_the_full_disk_stopped_reads_what_it_missed_once_the_disk_has_room(tmp_path):
    """The store moved its position past a write that failed: the restore after it read nothing,
    and the PO went on from its ledger before the other worker's 20 invoices, which stayed at
    waiting_for_po for good (a restart too: the stale ledger was in the changelog by then)."""
    broker = InMemoryBroker(partitions=3)
    first = make_worker(tmp_path / "a", store="rocksdb://", broker=broker)
    first.submit(ready_invoice("MP-1"))
    first.run()
    first.pipeline.ledgers.store.close()  # a deploy: another worker takes the PO meanwhile
    other = make_worker(tmp_path / "b", store="rocksdb://", broker=broker, scheduler=first.scheduler,
                        mailer=first.mailer)
    for n in range(2, 22):
        other.submit(ready_invoice(f"MP-{n}"))
    other.run()
    other.pipeline.ledgers.store.close()
    with full_disk():  # the first comes back on a full disk
        again = make_worker(tmp_path / "a", store="rocksdb://", broker=broker, scheduler=first.scheduler,
                            mailer=first.mailer)
        again.run(steps=3)
    assert "state store" in again.pipeline.health.outages()
    again.complete("MP-1")
    again.run(steps=10, seconds_between=10)
    number = broker.partition_of(b"PO-5001")
    ledger = again.pipeline.ledgers.load(StateWrites(again.pipeline.ledgers.store.partition(number)), "PO-5001")
    assert ledger.ledger is not None and len(ledger.ledger.parked) == 19
    statuses = again.statuses()
    assert (statuses["MP-1"], statuses["MP-2"], statuses["MP-3"]) == ("entered", "sent_to_rpa", "waiting_for_po")
    assert len(first.mailer.sent) == 2


def test_a_bad_sector_under_a_partition_is_read_again_from_its_changelog_not_judged_bad_invoices(tmp_path):
    """RocksDB's "Corruption: block checksum mismatch" was taken for bad data: each invoice of the
    partition was made bad_invoice (which no clerk may release), the bot's completion of MP-1
    dead-lettered and its PO held for good, readiness green."""
    worker = make_worker(tmp_path, store="rocksdb://")
    worker.submit(ready_invoice("MP-1"))
    worker.run()
    number = worker.broker.partition_of(b"PO-5001")
    worker.pipeline.ledgers.store.partition(number).db.flush(True)  # the ledger in an SST file
    (sst,) = (tmp_path / "state" / "po-ledgers" / str(number)).glob("*.sst")
    with sst.open("r+b") as file:
        file.seek(20)
        file.write(b"\xff" * 40)
    worker.submit(ready_invoice("MP-2"))
    worker.complete("MP-1")
    worker.run()
    assert worker.statuses() == {"MP-1": "entered", "MP-2": "sent_to_rpa"}
    assert worker.dead_letters() == []
    assert "state store" not in worker.pipeline.health.outages()


class _BadBlock:
    """A RocksDB whose keys cannot be listed: a block RocksDB cannot read ("Corruption: ...")."""

    def __init__(self, db):
        self.db = db

    def keys(self):
        raise Exception("Corruption: block checksum mismatch")

    def __getattr__(self, name):
        return getattr(self.db, name)


def test_a_partition_whose_keys_cannot_be_read_as_a_restore_checks_them_is_made_again_from_its_changelog(tmp_path):
    """The check of where each ledger's PO goes now (partitions added to the topics stop the worker)
    must not hold a partition on a bad block for good: each restore read its changelog from its
    position, nothing, and failed on the same block again."""
    worker = make_worker(tmp_path, store="rocksdb://")
    worker.submit(ready_invoice("MP-1"))
    worker.run()
    number = worker.broker.partition_of(b"PO-5001")
    store = worker.pipeline.ledgers.store

    def bad_block() -> None:
        partition = store.partition(number)  # opened again, as the restore opens it
        partition.db = _BadBlock(partition.db)

    worker.broker.rebalance(meanwhile=bad_block)
    worker.complete("MP-1")
    worker.run(steps=10, seconds_between=10)
    assert worker.statuses() == {"MP-1": "entered"}
    assert "state store" not in worker.pipeline.health.outages()


@pytest.mark.parametrize("broken", ["CURRENT", "MANIFEST"])
def test_a_partition_corrupt_on_disk_is_made_again_from_its_changelog(tmp_path, broken):
    """Its files no longer read as RocksDB's (a bad sector, a copy cut short): every restore failed
    opening it, and the PO's work waited for an operator to find and delete the folder."""
    worker = make_worker(tmp_path / "w", store="rocksdb://")
    worker.submit(ready_invoice("MP-1"))
    worker.run()
    worker.pipeline.ledgers.store.close()
    number = worker.broker.partition_of(b"PO-5001")
    folder = tmp_path / "w" / "state" / "po-ledgers" / str(number)
    target = folder / "CURRENT" if broken == "CURRENT" else next(folder.glob("MANIFEST-*"))
    target.write_bytes(b"\xff" * 64)
    again = make_worker(tmp_path / "w", store="rocksdb://", broker=worker.broker, scheduler=worker.scheduler,
                        mailer=worker.mailer)
    again.complete("MP-1")
    again.run(steps=10, seconds_between=10)
    assert again.statuses() == {"MP-1": "entered"}
    assert "state store" not in again.pipeline.health.outages()
