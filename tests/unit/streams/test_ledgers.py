"""The ledgers in the keyed state: a batch writes what changed, not the PO's whole backlog or
history, and reads the ledgers written before as they are."""

from __future__ import annotations

import re

import pytest

from rules.errors import DataError
from rules.po_ledger import PurchaseOrderLedger, complete_rpa, submit_invoice
from streams.ledgers import (
    SEPARATOR,
    LedgerStore,
    entered_as_state_key,
    entered_state_key,
    po_of_state_key,
    record_state_key,
    version_state_key,
)
from streams.settings import Settings
from streams.state import MemoryPartitionStore, RocksPartitionStore, StateWrites, Store
from tests.unit.ledger.test_po_ledger import FakeJudge, completion, submission

JUDGE = FakeJudge()


@pytest.fixture
def store(tmp_path) -> LedgerStore:
    return LedgerStore(Settings(data_dir=tmp_path, _env_file=None))


class Partition:
    """One partition's store, with each batch's writes committed as the runtime commits them."""

    def __init__(self, ledgers: LedgerStore):
        self.ledgers, self.data = ledgers, MemoryPartitionStore()
        self.written: dict[str, bytes | None] = {}

    def batch(self, *work, invoice_ids=()):
        state = StateWrites(self.data)
        loaded = self.ledgers.load(state, "PO-1", invoice_ids)
        ledger = loaded.ledger or PurchaseOrderLedger(po_number="PO-1")
        for step in work:
            ledger = step(ledger).ledger
        self.ledgers.save(state, ledger, loaded)
        self.written = dict(state.changes)
        self.data.write(state.changes, None)
        return ledger


def submit(invoice_id: str, expect: str = "ready_to_process"):
    return lambda ledger: submit_invoice(ledger, submission(invoice_id, expect=expect), JUDGE, "automatic")


def held_backlog(partition: Partition, count: int) -> None:
    for number in range(count):
        partition.batch(submit(f"H-{number}", "manual_review"), invoice_ids=[f"H-{number}"])


def test_a_ledger_reads_back_as_it_was_saved(store):
    partition = Partition(store)
    saved = partition.batch(submit("A"), submit("B"), submit("C", "manual_review"), invoice_ids=["A", "B", "C"])
    assert store.load(StateWrites(partition.data), "PO-1", ["A", "B", "C"]).ledger == saved
    fresh = LedgerStore(Settings(data_dir=store.store.folder, _env_file=None))  # nothing cached
    assert fresh.load(StateWrites(partition.data), "PO-1", ["A", "B", "C"]).ledger == saved


def test_an_invoice_as_received_reads_back_with_its_numbers_as_numbers(store):
    """pydantic's JSON wrote a Decimal in the free-form document as text: a parked invoice judged
    again from the store saw `"description": "2.5"`, which its first judgement (from the topic,
    where it is a number) had refused."""
    from decimal import Decimal

    from rules.lifecycle import InvoiceSubmitted
    from tests.unit.ledger.test_po_ledger import AT

    document = {"expect": "manual_review", "lines": [{"description": Decimal("2.5"), "unit_price": Decimal("0.0125"),
                                                      "quantity": 10**30, "part_number": "P-1"}]}
    received = InvoiceSubmitted(invoice_id="A", version=1, po_number="PO-1", document=document, received_at=AT)
    partition = Partition(store)
    saved = partition.batch(lambda ledger: submit_invoice(ledger, received, JUDGE, "automatic"), invoice_ids=["A"])
    fresh = LedgerStore(Settings(data_dir=store.store.folder, _env_file=None))  # nothing cached
    read = fresh.load(StateWrites(partition.data), "PO-1", ["A"]).ledger
    assert read == saved and read.records[next(iter(read.records))].submission.document == document
    line = read.records[next(iter(read.records))].submission.document["lines"][0]
    assert type(line["description"]) is Decimal and type(line["quantity"]) is int


def test_a_ledger_reads_back_its_invoices_in_arrival_order(store):
    """Saved in key order, MP-10 came back before MP-9 after a restart: a Sampro change that cleared
    both gave the PO's open quantity to the later one, and the earlier waited."""
    partition = Partition(store)
    partition.batch(submit("MP-9", "manual_review"), invoice_ids=["MP-9"])
    partition.batch(submit("MP-10", "manual_review"), invoice_ids=["MP-10"])
    fresh = LedgerStore(Settings(data_dir=store.store.folder, _env_file=None))  # nothing cached
    assert list(fresh.load(StateWrites(partition.data), "PO-1").ledger.records) == ["MP-9@v1", "MP-10@v1"]


def test_a_batch_on_a_po_with_hundreds_held_writes_its_own_record_and_the_pos_small_value(store):
    partition = Partition(store)
    held_backlog(partition, 300)
    partition.batch(submit("A"), invoice_ids=["A"])
    assert set(partition.written) == {"PO-1", record_state_key("PO-1", "A@v1"), version_state_key("PO-1", "A")}
    assert len(partition.written["PO-1"] or b"") < 30 * 300  # keys, not documents
    partition.batch(lambda ledger: complete_rpa(ledger, completion("A"), JUDGE, "automatic"), invoice_ids=["A"])
    assert partition.written[record_state_key("PO-1", "A@v1")] is None  # entered: its record leaves
    assert set(partition.written) == {"PO-1", record_state_key("PO-1", "A@v1"), entered_state_key("PO-1", "A"),
                                      entered_as_state_key("PO-1", "A")}


def test_only_the_versions_of_the_invoices_the_batch_names_are_read(store):
    partition = Partition(store)
    partition.batch(submit("A"), invoice_ids=["A"])
    partition.batch(lambda ledger: complete_rpa(ledger, completion("A"), JUDGE, "automatic"), invoice_ids=["A"])
    partition.batch(submit("B", "manual_review"), invoice_ids=["B"])
    assert store.load(StateWrites(partition.data), "PO-1").ledger.latest == {}
    assert store.load(StateWrites(partition.data), "PO-1", ["A", "C"]).ledger.latest == {"A": 1}


def test_which_version_was_entered_is_kept_and_read_only_for_the_invoices_the_batch_names(store):
    partition = Partition(store)
    partition.batch(submit("A"), invoice_ids=["A"])
    partition.batch(lambda ledger: complete_rpa(ledger, completion("A"), JUDGE, "automatic"), invoice_ids=["A"])
    fresh = LedgerStore(Settings(data_dir=store.store.folder, _env_file=None))  # nothing cached
    assert fresh.load(StateWrites(partition.data), "PO-1", ["A"]).ledger.entered == {"A": 1}
    assert fresh.load(StateWrites(partition.data), "PO-1", ["B"]).ledger.entered == {}
    edited = partition.batch(lambda ledger: submit_invoice(ledger, submission("A", version=2), JUDGE, "automatic"),
                             invoice_ids=["A"])
    assert edited.records["A@v2"].status.value == "manual_review"  # not entered a second time
    assert entered_state_key("PO-1", "A") not in partition.written  # unchanged: not written again


def test_the_sampro_invoice_of_an_entry_is_kept_beside_its_version_and_read_as_written_before(store):
    """Without it, a second entry reported before processscheduler showed the first (S-2 after S-1)
    could not be told from the first reported again, and was dropped."""
    partition = Partition(store)
    partition.batch(submit("A"), invoice_ids=["A"])
    partition.batch(lambda ledger: complete_rpa(ledger, completion("A"), JUDGE, "automatic"), invoice_ids=["A"])
    # Beside the version, not in its value, which a release before reads as a whole number.
    assert partition.written[entered_state_key("PO-1", "A")] == b"1"
    assert partition.written[entered_as_state_key("PO-1", "A")] == b"1:S-1"
    fresh = LedgerStore(Settings(data_dir=store.store.folder, _env_file=None))  # nothing cached
    read = fresh.load(StateWrites(partition.data), "PO-1", ["A"]).ledger
    assert (read.entered, read.entered_as) == ({"A": 1}, {"A": "S-1"})
    partition.data.write({entered_as_state_key("PO-1", "A"): None}, None)  # as an older release left it
    read = fresh.load(StateWrites(partition.data), "PO-1", ["A"]).ledger
    assert (read.entered, read.entered_as) == ({"A": 1}, {})
    # An older release entered version 2 and left version 1's Sampro invoice: not version 2's.
    partition.data.write({entered_state_key("PO-1", "A"): b"2", entered_as_state_key("PO-1", "A"): b"1:S-1"}, None)
    read = fresh.load(StateWrites(partition.data), "PO-1", ["A"]).ledger
    assert (read.entered, read.entered_as) == ({"A": 2}, {})


def test_a_newer_version_entered_as_the_same_sampro_invoice_is_read_as_entered_there(store):
    """The bot amended S-1 with version 2 (AP released an edit after the entry): the Sampro
    invoice's key kept "1:S-1", which version 2 reads as no entry, and the bot's report of a second
    entry was dropped where the ledger as written would have told AP."""
    from types import SimpleNamespace

    partition = Partition(store)
    partition.batch(submit("A"), invoice_ids=["A"])
    partition.batch(lambda ledger: complete_rpa(ledger, completion("A"), JUDGE, "automatic"), invoice_ids=["A"])
    partition.batch(lambda ledger: SimpleNamespace(ledger=ledger.model_copy(
        update={"latest": {"A": 2}, "entered": {"A": 2}, "entered_as": {"A": "S-1"}})), invoice_ids=["A"])
    assert partition.written[entered_as_state_key("PO-1", "A")] == b"2:S-1"
    fresh = LedgerStore(Settings(data_dir=store.store.folder, _env_file=None))  # nothing cached
    read = fresh.load(StateWrites(partition.data), "PO-1", ["A"]).ledger
    assert (read.entered, read.entered_as) == ({"A": 2}, {"A": "S-1"})


def test_the_same_invoice_again_is_refused_by_its_version_and_writes_nothing(store):
    partition = Partition(store)
    partition.batch(submit("A"), invoice_ids=["A"])
    partition.batch(lambda ledger: complete_rpa(ledger, completion("A"), JUDGE, "automatic"), invoice_ids=["A"])
    ledger = partition.batch(submit("A"), invoice_ids=["A"])  # a replay of the entered invoice
    assert partition.written == {} and ledger.records == {} and ledger.latest == {"A": 1}


def test_a_ledger_written_as_one_value_before_is_read_and_then_written_in_keys(store):
    partition = Partition(store)
    old = submit_invoice(submit_invoice(PurchaseOrderLedger(po_number="PO-1"), submission("A"), JUDGE,
                                        "automatic").ledger, submission("B"), JUDGE, "automatic").ledger
    partition.data.write({"PO-1": old.model_dump_json().encode()}, None)
    assert store.load(StateWrites(partition.data), "PO-1").ledger == old
    partition.batch(lambda ledger: complete_rpa(ledger, completion("A"), JUDGE, "automatic"), invoice_ids=["A"])
    assert set(partition.written) == {"PO-1", record_state_key("PO-1", "B@v1"), version_state_key("PO-1", "A"),
                                      version_state_key("PO-1", "B"), entered_state_key("PO-1", "A"),
                                      entered_as_state_key("PO-1", "A")}
    reread = store.load(StateWrites(partition.data), "PO-1", ["A", "B"]).ledger
    assert reread is not None and list(reread.records) == ["B@v1"] and reread.latest == {"A": 1, "B": 1}
    assert reread.entered == {"A": 1}


def test_an_invoice_record_past_what_kafka_takes_is_refused_naming_the_po_and_why(store, monkeypatch):
    """Said "send it again once the PO's waiting invoices are entered", which can never help: what
    makes one invoice's record large is the PO snapshot its verdict carries."""
    import streams.record_size

    monkeypatch.setattr(streams.record_size, "KAFKA_TAKES", 400)
    monkeypatch.setattr(streams.record_size, "MAX_RECORD_BYTES", 400)
    partition = Partition(store)
    with pytest.raises(DataError, match="^PO PO-1's ledger cannot keep this invoice's record, which holds the PO"):
        held_backlog(partition, 50)


@pytest.mark.parametrize(("key", "value", "named"), [
    ("PO-1", b'{"po_number": "PO-OTHER"}', "the ledger of PO 'PO-OTHER'"),
    ("PO-1", b"\x00garbage", "Invalid JSON"),
    (version_state_key("PO-1", "A"), b"not-a-number", "invalid literal"),
    (version_state_key("PO-1", "A"), b"0", "0 is not an invoice version"),
])
def test_a_value_no_batch_wrote_is_a_data_error_naming_the_po_and_the_changelog(store, key, value, named):
    """Taken as it was, another PO's ledger was worked on and saved under that PO's keys, and
    this PO's work started from it on every batch."""
    partition = Partition(store)
    partition.batch(submit("A"), invoice_ids=["A"])
    partition.data.write({key: value}, None)
    with pytest.raises(DataError, match=r"(?s)the ledger of PO PO-1 in \S+-po-ledgers-changelog cannot be read: .*"
                                        + re.escape(named)):
        store.load(StateWrites(partition.data), "PO-1", ["A"])


def test_a_write_that_was_never_committed_is_not_served_from_the_cache_after_another_worker_wrote(store, tmp_path):
    from rules.lifecycle import InvoiceStatus

    partition = Partition(store)
    partition.batch(submit("A", "manual_review"), invoice_ids=["A"])

    def with_status(ledgers: LedgerStore, status: InvoiceStatus, commit: bool) -> None:
        state = StateWrites(partition.data)
        loaded = ledgers.load(state, "PO-1", ["A"])
        assert loaded.ledger is not None
        record = loaded.ledger.records["A@v1"].model_copy(update={"status": status})
        ledgers.save(state, loaded.ledger.model_copy(update={"records": {"A@v1": record}}), loaded)
        if commit:
            partition.data.write(state.changes, None)

    with_status(store, InvoiceStatus.BAD_INVOICE, commit=False)  # this worker's batch is lost
    other = LedgerStore(Settings(data_dir=tmp_path / "other", _env_file=None))
    with_status(other, InvoiceStatus.AWAITING_RECEIPT, commit=True)  # the PO's next owner writes
    ledger = store.load(StateWrites(partition.data), "PO-1", ["A"]).ledger
    assert ledger is not None and ledger.records["A@v1"].status is InvoiceStatus.AWAITING_RECEIPT


def test_rocksdb_partitions_share_one_memory_budget_and_read_what_the_default_options_wrote(tmp_path):
    folder = tmp_path / "state" / "po-ledgers"
    before = RocksPartitionStore(folder / "0")  # as the stores were opened before the shared budget
    before.write({"a": b"1"}, 7)
    before.close()
    store = Store("po-ledgers", "changelog", "rocksdb://", tmp_path)
    first, second = store.partition(0), store.partition(1)
    assert (first.get("a"), first.position) == (b"1", 7)
    assert first.options is second.options is store.rocks_options is not None
    second.write({"b": b"2"}, 3)
    second.clear()  # a partition read again from its changelog keeps the budget
    assert second.get("b") is None and second.options is store.rocks_options
    store.close()


@pytest.mark.parametrize("location", ["memory://", "rocksdb://"])
def test_a_store_partition_lists_as_many_of_its_keys_as_asked_without_its_position(tmp_path, location):
    store = Store("po-ledgers", "changelog", location, tmp_path)
    partition = store.partition(0)
    partition.write({"PO-1": b"1", record_state_key("PO-1", "MP-1@v1"): b"2", "PO-2": b"3", "PO-3": b"4"}, 7)
    partition.write({"PO-3": None}, 8)
    assert sorted(partition.keys(10)) == ["PO-1", f"PO-1{SEPARATOR}r{SEPARATOR}MP-1@v1", "PO-2"]
    assert len(partition.keys(2)) == 2 and set(partition.keys(2)) <= set(partition.keys(10))
    empty = Store("empty", "changelog", location, tmp_path)
    assert empty.partition(0).keys(10) == []
    store.close()
    empty.close()


def test_each_key_of_a_ledger_belongs_to_its_po():
    """The PO whose partition keeps the key: a worker checks its ledgers against it after a restore."""
    assert {po_of_state_key(key) for key in ("PO-1", record_state_key("PO-1", "MP-1@v1"),
                                              version_state_key("PO-1", "MP-1"), entered_state_key("PO-1", "MP-1"),
                                              entered_as_state_key("PO-1", "MP-1"))} == {"PO-1"}


def stored_bytes(partition: Partition, po_number: str = "PO-1") -> int:
    """What the PO's ledger weighs in the store: its value and its records."""
    return sum(len(value) for key, value in partition.data.data.items()
               if key == po_number or key.startswith(f"{po_number}{SEPARATOR}r{SEPARATOR}"))


def test_the_ledgers_kept_decoded_are_bounded_by_their_bytes_in_the_store_too(store, monkeypatch):
    """Bounded by POs alone, 1,000 busy POs of 100 held invoices each kept 1.4 GB decoded."""
    partition = Partition(store)
    held_backlog(partition, 5)
    assert list(store._decoded) == ["PO-1"] and store._cached_bytes == stored_bytes(partition)
    fresh = LedgerStore(Settings(data_dir=store.store.folder, _env_file=None))  # weighed as read, not as written
    fresh.load(StateWrites(partition.data), "PO-1")
    assert fresh._cached_bytes == stored_bytes(partition)
    monkeypatch.setattr("streams.ledgers.CACHED_BYTES", stored_bytes(partition))
    saved = partition.batch(submit("A", "manual_review"), invoice_ids=["A"])  # past the bound, not kept
    assert list(store._decoded) == [] and store._cached_bytes == 0
    assert store.load(StateWrites(partition.data), "PO-1", ["A"]).ledger == saved  # read from the store


def test_a_po_whose_held_invoices_are_large_is_not_kept_decoded(store):
    """Each held invoice's record holds its verdict's PO snapshot: 160 kB stored and 1.8 MB decoded
    against a PO of 1,000 lines. Counted in records, 200 of them were 365 MB of cache, and the bound
    (10,000 records) some 18 GB: a restart decoded the held POs and was killed for its memory.
    (Here the invoices are large instead, which weighs the same and costs no rules.)"""
    from rules.lifecycle import InvoiceSubmitted
    from tests.unit.ledger.test_po_ledger import AT

    partition = Partition(store)
    for number in range(25):
        document = {"expect": "manual_review", "notes": "n" * (1 << 20)}
        held = InvoiceSubmitted(invoice_id=f"H-{number}", version=1, po_number="PO-1", document=document,
                                received_at=AT)
        partition.batch(lambda ledger, held=held: submit_invoice(ledger, held, JUDGE, "automatic"),
                        invoice_ids=[held.invoice_id])
    assert stored_bytes(partition) > 24 << 20 and list(store._decoded) == [] and store._cached_bytes == 0
