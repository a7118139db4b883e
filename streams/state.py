"""Keyed state for a stateful flow, one store per partition, kept in a changelog topic.

A store is only ever changed by a committed batch: a flow's writes wait in a `StateWrites`
overlay while it runs, go to the changelog inside the batch's Kafka transaction, and reach the
store after that transaction committed. So a store never holds what the changelog lacks, and
the changelog never holds what the input offsets do not cover.

Each store remembers its *position*: the changelog offset to read from to catch up. After a
rebalance a store is brought up to date by reading its changelog partition from that position
to the end (from the beginning when it has none), so a partition owned by another worker in
between is caught up, and one that never left is read in an instant. `rocksdb://` stores keep
data and position on disk in one write, so a restart reads only the tail of the changelog.

A position is an offset of one changelog: a store notes which (`Store.changelog_on`: the topic and
its Kafka cluster) beside its position, in the same write. Kept by partition number alone under
`DATA_DIR`, a store went on from another pipeline's ledgers (a new `APP_ID` on the same volume, or
Kafka made anew): an invoice was parked behind a hand-off this pipeline never made, and a pipeline
made with more partitions stopped, saying partitions were added to its topics. A store made from
another changelog, or whose position is past its changelog's end, is cleared and read whole.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from itertools import islice
from pathlib import Path
from typing import Any, Protocol

from rules.errors import Unavailable

POSITION_KEY = "\x00changelog-position"
CHANGELOG_KEY = "\x00changelog"  # which changelog the position is an offset of (`Store.changelog_on`)
# The keys of a partition checked against where their records go now: a record key's state keys
# come together in RocksDB (a PO holding 100 invoices has some 300), so more than a few dozen.
SAMPLED_KEYS = 1_000
log = logging.getLogger(__name__)


class PartitionStore(Protocol):
    """One partition of a store: keys and values as bytes, and where its changelog was read to."""

    position: int | None
    changelog: str | None  # the changelog the position is in, written with it; None: not known
    unreadable: bool  # a read failed: it is read again from its whole changelog

    def get(self, key: str) -> bytes | None: ...

    def keys(self, limit: int) -> list[str]:
        """At most `limit` of its keys (not its position or changelog), in no order to rely on."""

    def write(self, changes: Mapping[str, bytes | None], position: int | None) -> None:
        """Applies committed changes (None deletes) and the new position with its changelog, in one step."""

    def clear(self) -> None:
        """Empties it: no data, no position, no changelog."""

    def close(self) -> None: ...


class MemoryPartitionStore:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.position: int | None = None
        self.changelog: str | None = None
        self.unreadable = False  # never: a dict is read or the process is gone

    def get(self, key: str) -> bytes | None:
        return self.data.get(key)

    def keys(self, limit: int) -> list[str]:
        return list(islice(self.data, limit))

    def write(self, changes: Mapping[str, bytes | None], position: int | None) -> None:
        for key, value in changes.items():
            if value is None:
                self.data.pop(key, None)
            else:
                self.data[key] = value
        if position is not None:
            self.position = position

    def clear(self) -> None:
        self.data.clear()
        self.position = self.changelog = None

    def close(self) -> None:
        pass


# What RocksDB may hold in memory for all the partitions of a store together. Its defaults are
# per partition (64 MiB memtables, up to two of them, and a block cache each): on a burst of
# 100,000 invoices they kept the worker's RSS 150 MiB higher, for no gain in speed.
MEMTABLE_BYTES = 64 << 20
BLOCK_CACHE_BYTES = 32 << 20


def rocks_options() -> Any:
    """Options whose memtables and block cache are shared by every store that is opened with them."""
    from rocksdict import BlockBasedOptions, Cache, Options, WriteBufferManager

    options = Options()
    options.set_write_buffer_manager(WriteBufferManager(MEMTABLE_BYTES, False))
    table = BlockBasedOptions()
    table.set_block_cache(Cache(BLOCK_CACHE_BYTES))
    options.set_block_based_table_factory(table)
    return options


class RocksPartitionStore:
    """RocksDB through rocksdict: data and position written in one WriteBatch.

    rocksdict raises a plain Exception for what RocksDB reports ("IO error: ...", "Corruption:
    ..."). A read that fails is an outage of the state store, not bad data: taken for bad data,
    every invoice of the partition was made bad_invoice and the bot's completions dead-lettered.
    The partition is then `unreadable`, and the runtime reads it again from its whole changelog
    (a bad sector does not heal by waiting). A write that fails leaves RocksDB refusing every
    later write (its background error) and the position where it was on disk: the partition is
    read again from its changelog into a new database, once the disk takes it."""

    def __init__(self, path: Path, options: Any = None):
        from rocksdict import Rdict

        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.options, self.unreadable = path, options, False
        self.db: Any = None
        try:
            self.db = Rdict(str(path), options)
            stored, changelog = self.db.get(POSITION_KEY), self.db.get(CHANGELOG_KEY)
        except Exception as error:
            if self.db is not None:  # left open, its own lock refused the next try ("lock hold by current process")
                self._close_quietly()
            if not _corrupt(error):  # its lock held by another worker, the disk: waited out
                raise self._unavailable("opened", error) from None
            log.error("%s is corrupt (%s): it is made again from its changelog", path, str(error)[:300])
            Rdict.destroy(str(path))
            self.db, stored, changelog = Rdict(str(path), options), None, None
        self.position: int | None = int(stored) if stored is not None else None
        self.changelog: str | None = changelog  # None in a store written before it was noted

    def get(self, key: str) -> bytes | None:
        try:
            value: bytes | None = self.db.get(key)
        except Exception as error:
            self.unreadable = True
            raise self._unavailable("read", error) from None
        return value

    def keys(self, limit: int) -> list[str]:
        try:
            return list(islice((key for key in self.db.keys() if key not in (POSITION_KEY, CHANGELOG_KEY)), limit))
        except Exception as error:
            self.unreadable = True
            raise self._unavailable("read", error) from None

    def write(self, changes: Mapping[str, bytes | None], position: int | None) -> None:
        from rocksdict import WriteBatch

        batch = WriteBatch()
        for key, value in changes.items():
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        if position is not None:
            batch.put(POSITION_KEY, str(position))
            if self.changelog is not None:
                batch.put(CHANGELOG_KEY, self.changelog)
        try:
            self.db.write(batch)
        except Exception as error:
            # Moved on before the write, a restore that failed on a full disk went on from past
            # what it never stored, and the partition's ledgers were the older ones for good.
            self.position = None
            raise self._unavailable("written", error) from None
        if position is not None:
            self.position = position

    def clear(self) -> None:
        from rocksdict import Rdict

        self._close_quietly()
        Rdict.destroy(str(self.path))
        self.db = Rdict(str(self.path), self.options)
        self.position, self.changelog, self.unreadable = None, None, False

    def close(self) -> None:
        self._close_quietly()

    def _close_quietly(self) -> None:
        """A database in RocksDB's error state raises as it closes (once; after it, DbClosedError):
        raised here, every restore stopped before it made the database again, and the partition
        waited for a restart with the disk free again."""
        try:
            self.db.close()
        except Exception as error:
            log.warning("%s closed with an error: %s", self.path, str(error)[:300])

    def _unavailable(self, done: str, error: Exception) -> Unavailable:
        return Unavailable("state store", f"{self.path} could not be {done}: {str(error)[:300]}")


def _corrupt(error: Exception) -> bool:
    return str(error).startswith("Corruption")


class StateWrites:
    """Writes to one partition's store, visible to whoever wrote them before they are committed.
    Nested: a handler writes over the batch's writes, and they join the batch's only if it succeeds."""

    def __init__(self, under: StateWrites | PartitionStore):
        self.under = under
        self.changes: dict[str, bytes | None] = {}

    def get(self, key: str) -> bytes | None:
        if key in self.changes:
            return self.changes[key]
        return self.under.get(key)

    def set(self, key: str, value: bytes | None) -> None:
        self.changes[key] = value

    def merge_into_parent(self) -> None:
        assert isinstance(self.under, StateWrites), "only a nested overlay has a parent"
        self.under.changes.update(self.changes)


class Store:
    """A named store: its partitions, made on demand, and its changelog topic. `source_key` names the
    record key a store key belongs to, whose partition keeps it (None: its keys are not checked)."""

    def __init__(self, name: str, changelog_topic: str, location: str, data_dir: Path,
                 source_key: Callable[[str], str] | None = None):
        if location not in ("memory://", "rocksdb://"):
            raise ValueError(f"store {location!r}: choose memory:// or rocksdb://")
        self.name, self.changelog_topic, self.source_key = name, changelog_topic, source_key
        self.location, self.folder = location, data_dir / "state" / name
        self.partitions: dict[int, PartitionStore] = {}
        self.rocks_options = rocks_options() if location == "rocksdb://" else None  # one budget, every partition

    def partition(self, number: int) -> PartitionStore:
        if number not in self.partitions:
            self.partitions[number] = (MemoryPartitionStore() if self.location == "memory://"
                                       else RocksPartitionStore(self.folder / str(number), self.rocks_options))
        return self.partitions[number]

    def release(self, number: int) -> None:
        """A partition gone to another worker: its RocksDB is closed, so that a worker of the same
        `DATA_DIR` (several on one machine, replicas sharing a volume) can open it. Kept open, the
        worker it went to could not take RocksDB's lock, and its POs were never decided while this
        one ran. Reopened if it comes back, it is read from its position on disk; a partition in
        memory is kept, and read from its position too."""
        if self.location == "rocksdb://" and (store := self.partitions.pop(number, None)) is not None:
            store.close()

    def unreadable(self) -> list[int]:
        """The partitions a read failed on, to be read again from their whole changelog."""
        return [number for number, store in self.partitions.items() if store.unreadable]

    def changelog_on(self, cluster: str) -> str:
        """What names the changelog a position is in: its topic, and the Kafka cluster that holds it
        (a cluster made anew has a new id, and the same topic names)."""
        return f"{self.changelog_topic} on Kafka cluster {cluster}"

    def start(self, number: int, changelog: str) -> int | None:
        """Where the partition's store reads `changelog` (`changelog_on`) from: its position; from the
        beginning, the store cleared, when it has none, a read failed on it, or it was made from
        another changelog. DATA_DIR outlives both a pipeline (another APP_ID on the same volume) and a
        Kafka cluster (docker-compose keeps /data on a volume), and a store is kept by partition number."""
        store = self.partition(number)
        if store.position is not None and not store.unreadable and store.changelog != changelog:
            made_from = (f"was made from {store.changelog}" if store.changelog is not None else
                         "does not say which changelog it was made from (an earlier version wrote it)")
            self._read_whole(number, f"{made_from}, not from {changelog}")
        elif store.position is None or store.unreadable:
            store.clear()
        store.changelog = changelog
        return store.position

    def out_of_range(self, number: int, why: str) -> None:
        """The partition's changelog does not have its store's position (the topic deleted and made
        again, its records deleted): the store holds what the changelog lacks, and is read whole."""
        self._read_whole(number, f"has its position outside its changelog ({why})")

    def _read_whole(self, number: int, why: str) -> None:
        log.warning("partition %d of the %s store %s: it is cleared and read again from the whole of %s",
                    number, self.name, why, self.changelog_topic)
        self.partition(number).clear()

    def restore(self, number: int, records: Iterable[tuple[int, bytes | None, bytes | None]]) -> int:
        """Applies changelog records (offset, key, value) read from the partition's position; returns
        how many. A record no flow could have written (no key, or one that is not UTF-8) is passed
        over with a warning: raised, it stopped every partition of the worker, restore after restore."""
        store = self.partition(number)
        count, changes, last = 0, {}, None
        for offset, key, value in records:
            last = offset
            try:
                text = key.decode() if key is not None else None
            except UnicodeDecodeError:
                text = None
            if text is None:
                log.warning("%s, partition %d, offset %d: a record without a UTF-8 key, passed over",
                            self.changelog_topic, number, offset)
                continue
            changes[text] = value
            count += 1
            if len(changes) >= 10_000:
                store.write(changes, last + 1)
                changes = {}
        if changes or last is not None:
            store.write(changes, last + 1 if last is not None else None)
        return count

    def misplaced(self, number: int, home: Callable[[str], int]) -> tuple[str, int] | None:
        """A record key of the partition's state that `home` puts on another partition, with that
        partition; None when none is, of the first SAMPLED_KEYS keys. Partitions added to the
        topics move many of them (half, when the count doubles): a sample finds one, and costs little
        beside a restore."""
        if self.source_key is None:
            return None
        for key in dict.fromkeys(map(self.source_key, self.partition(number).keys(SAMPLED_KEYS))):
            if (where := home(key)) != number:
                return key, where
        return None

    def close(self) -> None:
        for store in self.partitions.values():
            store.close()
