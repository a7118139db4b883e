"""The per-PO ledgers in the PO agent's keyed state, kept so that what one batch costs does not
grow with the PO's history or its backlog.

A ledger (`rules.po_ledger`) is stored as several keys:

| key | value |
|---|---|
| `<PO>` | the ledger's small part: its queues, the keys of its records, what it has seen, a revision token |
| `<PO>␟r␟<invoice id>@v<version>` | one invoice version's record (JSON) |
| `<PO>␟v␟<invoice id>` | the newest version seen of that invoice (`latest`) |
| `<PO>␟e␟<invoice id>` | its version the RPA bot entered in Sampro (`entered`) |
| `<PO>␟s␟<invoice id>` | that entry's version and Sampro invoice, when the bot named one (`2:S-7`: `entered_as`) |

(␟ is the unit separator, which no PO number or invoice id may hold.) So a batch reads the
records of the PO and the versions of the invoices it touches, and writes back only what
changed: one record, not the PO's hundreds held in review; an invoice's newest version (and
entered one), not one per invoice the PO ever had. Every key is a changelog record of the
store's partition, which is the PO's partition of the work topics: the state moves with the PO.
Ledgers written before (one JSON value per PO) are read as they are and written in keys on
their next change.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from rules.errors import DataError, PutOff
from rules.lifecycle import InvoiceSubmitted
from rules.models import MAX_VERSION, RpaPayload, Verdict
from rules.po_ledger import InvoiceRecord, Judge, PurchaseOrderLedger, record_key
from schemas.exact_json import dump_exact, load_exact
from streams.record_size import too_large
from streams.settings import Settings
from streams.state import StateWrites, Store


def changelog_topic(settings: Settings) -> str:
    return settings.ledgers_changelog_topic


# The ledgers kept decoded: at most so many POs, and so many bytes of them as the store holds them (the
# PO's value and its records' JSON). Decoded, a ledger takes 7 to 12 times its bytes: a record of a
# small PO some 2 kB stored and 14-20 kB decoded, one held against a PO of 1,000 lines 160 kB and 1.8 MB
# (each decodes its own copy of its verdict's PO snapshot). Counted in records (10,000), 200 such held
# invoices were 365 MB of cache, and the bound some 18 GB: a restart decoded the held POs and was killed
# for its memory, restart after restart. 24 MiB is at most some 300 MB decoded, and holds the 10,000
# small records the count held. A PO that weighs more is decoded at every batch.
CACHED_LEDGERS = 1_000
CACHED_BYTES = 24 << 20  # 24 MiB
SEPARATOR = "\x1f"


def po_of_state_key(key: str) -> str:
    """The PO a key of the store belongs to: its records' partition is the one that keeps the key."""
    return key.split(SEPARATOR, 1)[0]


def record_state_key(po_number: str, key: str) -> str:
    return f"{po_number}{SEPARATOR}r{SEPARATOR}{key}"


def version_state_key(po_number: str, invoice_id: str) -> str:
    return f"{po_number}{SEPARATOR}v{SEPARATOR}{invoice_id}"


def entered_state_key(po_number: str, invoice_id: str) -> str:
    return f"{po_number}{SEPARATOR}e{SEPARATOR}{invoice_id}"


def entered_as_state_key(po_number: str, invoice_id: str) -> str:
    """A key of its own, not beside the version in `entered_state_key`'s value: a release before it
    reads that value as a whole number, and rolled back, it dead-lettered the PO's work."""
    return f"{po_number}{SEPARATOR}s{SEPARATOR}{invoice_id}"


class _Stored(BaseModel):
    """The value under the PO's own key. `records` and `latest` are only in a ledger written before
    they had keys of their own."""

    model_config = ConfigDict(extra="ignore")

    po_number: str
    holding: list[str] = Field(default_factory=list)
    parked: list[str] = Field(default_factory=list)
    record_keys: list[str] = Field(default_factory=list)  # in arrival order: held invoices are judged again in it
    completions_seen: list[str] = Field(default_factory=list)
    changes_seen: list[str] = Field(default_factory=list)
    # A new token with every write, so that the PO's value names the state of its records: the
    # decoded cache is keyed by it (two writers of one PO, before and after a rebalance, make two).
    revision: str = ""
    records: dict[str, InvoiceRecord] = Field(default_factory=dict)
    latest: dict[str, int] = Field(default_factory=dict)


@dataclass
class LoadedLedger:
    """A ledger as read, to tell on saving what changed."""

    ledger: PurchaseOrderLedger | None
    raw: bytes | None = None
    revision: str = ""
    sizes: dict[str, int] = field(default_factory=dict)  # each record's bytes in the store (none in a legacy one)
    versions: dict[str, int] = field(default_factory=dict)  # the `latest` entries read
    entered: dict[str, int] = field(default_factory=dict)  # the `entered` entries read
    entered_as: dict[str, str] = field(default_factory=dict)  # the `entered_as` entries read
    legacy: bool = False  # one JSON value, as written before: every part is written on its next change


class LedgerStore:
    """Reads and writes ledgers in the store. The ledgers of the POs at work are kept decoded too,
    by the bytes of their PO's value (its revision names its records): a busy PO is not parsed
    again on every batch, and the rules never change a ledger they were given (they copy on
    write, and an unchanged record stays the same object, which is how `save` finds what changed)."""

    def __init__(self, settings: Settings):
        self.store = Store("po-ledgers", changelog_topic(settings), settings.store, settings.data_dir,
                           source_key=po_of_state_key)
        self._decoded: OrderedDict[str, _Decoded] = OrderedDict()
        self._cached_bytes = 0
        # Invoice versions (record keys) whose record was more than Kafka takes as another message
        # judged them: judged again, they are refused (`KeptJudge`). A few, if any, for good.
        self.too_large: dict[str, str] = {}

    def load(self, state: StateWrites, po_number: str, invoice_ids: Collection[str] = ()) -> LoadedLedger:
        """The PO's ledger with the newest versions of `invoice_ids`, the invoices the batch names:
        the rules read `latest` for no other (rules.po_ledger), and a PO's history may be long."""
        raw = state.get(po_number)
        if not raw:
            return LoadedLedger(None)
        try:
            return self._decode(state, po_number, raw, invoice_ids)
        except (ValidationError, ValueError, LookupError) as error:
            # The changelog holds what no flow wrote: the PO's work is dead-lettered naming it, and
            # waits for an operator, rather than going on from a ledger that is not this PO's.
            raise DataError(f"the ledger of PO {po_number} in {self.store.changelog_topic} cannot be read: "
                            f"{str(error)[:300]}") from None

    def _decode(self, state: StateWrites, po_number: str, raw: bytes, invoice_ids: Collection[str]) -> LoadedLedger:
        cached = self._decoded.get(po_number)
        if cached is not None and cached.raw == raw:
            self._decoded.move_to_end(po_number)
            stored, records, sizes = cached.stored, cached.records, cached.sizes
        else:
            stored = _Stored.model_validate_json(raw)
            if stored.po_number != po_number:
                raise ValueError(f"the value under its key is the ledger of PO {stored.po_number[:80]!r}")
            records, sizes = dict(stored.records), {}
            if not records:
                for key in stored.record_keys:
                    written = _required(state, record_state_key(po_number, key))
                    records[key], sizes[key] = InvoiceRecord.model_validate(load_exact(written)), len(written)
            self._keep(po_number, raw, stored, records, sizes)
        legacy = not stored.record_keys and bool(stored.records or stored.latest)
        if legacy:
            versions = dict(stored.latest)
        else:
            versions = {invoice_id: _version(found) for invoice_id in invoice_ids
                        if (found := state.get(version_state_key(po_number, invoice_id))) is not None}
        # Only an invoice with a version seen can have one entered: most batches ask for no more keys.
        entered = {invoice_id: _version(found) for invoice_id in versions
                   if (found := state.get(entered_state_key(po_number, invoice_id))) is not None}
        entered_as = {invoice_id: sampro for invoice_id in entered
                      if (found := state.get(entered_as_state_key(po_number, invoice_id))) is not None
                      and (sampro := _entered_as(found, entered[invoice_id])) is not None}
        ledger = PurchaseOrderLedger(
            po_number=stored.po_number, holding=list(stored.holding), parked=list(stored.parked),
            records=dict(records), latest=dict(versions), entered=dict(entered), entered_as=dict(entered_as),
            completions_seen=list(stored.completions_seen), changes_seen=list(stored.changes_seen))
        return LoadedLedger(ledger, raw, stored.revision, sizes, versions, entered, entered_as, legacy)

    def save_all(self, saves: Iterable[tuple[StateWrites, PurchaseOrderLedger, LoadedLedger]],
                 work: Iterable[object]) -> None:
        """Saves a batch's ledgers. Another invoice's record grown past what Kafka takes as the
        batch judged it (parked behind the invoice a completion frees, held and judged again) is
        learned (`too_large`, which `KeptJudge` refuses) and the batch put off, to be tried again
        and go on; the record of an invoice the batch's `work` submitted, or one
        learned already (a release or a note grew it, which judges nothing: put off again, it held
        the partition for good, readiness green), is the message's to be dead-lettered for."""
        try:
            for state, ledger, before in saves:
                self.save(state, ledger, before)
        except RecordTooLarge as error:
            if error.record_key in self.too_large or error.record_key in {
                    record_key(each.invoice_id, each.version) for each in work if isinstance(each, InvoiceSubmitted)}:
                raise
            self.too_large[error.record_key] = str(error)
            raise PutOff("po-ledgers", f"{error}; it is judged again as bad_invoice") from None

    def save(self, state: StateWrites, ledger: PurchaseOrderLedger, before: LoadedLedger) -> None:
        po = ledger.po_number
        if before.raw is None and ledger == PurchaseOrderLedger(po_number=po):
            return  # work that left no trace (a Sampro change of a PO with nothing held) keeps no ledger
        earlier = before.ledger.records if before.ledger is not None and not before.legacy else {}
        changed = [(key, record) for key, record in ledger.records.items() if earlier.get(key) is not record]
        sizes = {key: size for key, size in before.sizes.items() if key in ledger.records}
        for key, record in changed:
            written = _bounded(po, _record_json(record), record=key)
            state.set(record_state_key(po, key), written)
            sizes[key] = len(written)
        for key in earlier.keys() - ledger.records.keys():
            state.set(record_state_key(po, key), None)
        for invoice_id, version in ledger.latest.items():
            if before.legacy or before.versions.get(invoice_id) != version:
                state.set(version_state_key(po, invoice_id), str(version).encode())
        for invoice_id, version in ledger.entered.items():
            if before.entered.get(invoice_id) != version:
                state.set(entered_state_key(po, invoice_id), str(version).encode())
            # Its version's as much as its Sampro invoice's: version 2 entered as S-1 again (the bot
            # amended it) left "1:S-1", which reads as no entry, and a second entry went unseen.
            sampro = ledger.entered_as.get(invoice_id)
            if before.entered.get(invoice_id) != version or before.entered_as.get(invoice_id) != sampro:
                state.set(entered_as_state_key(po, invoice_id),
                          f"{version}:{sampro}".encode() if sampro is not None else None)
        if before.ledger is not None and not before.legacy and not changed \
                and _skeleton(ledger) == _skeleton(before.ledger):
            return  # a replayed message leaves the ledger as it was: nothing to write
        stored = _Stored(po_number=po, holding=ledger.holding, parked=ledger.parked,
                         record_keys=list(ledger.records), completions_seen=ledger.completions_seen,
                         changes_seen=ledger.changes_seen, revision=uuid.uuid4().hex)
        raw = _bounded(po, _dumped(stored), len(ledger.records))
        state.set(po, raw)
        self._keep(po, raw, stored, dict(ledger.records), sizes)

    def _keep(self, po_number: str, raw: bytes, stored: _Stored, records: dict[str, InvoiceRecord],
              sizes: dict[str, int]) -> None:
        if (old := self._decoded.pop(po_number, None)) is not None:
            self._cached_bytes -= old.weight
        weight = len(raw) + sum(sizes.values())  # a legacy ledger's records are in `raw`
        if weight > CACHED_BYTES:
            return
        self._decoded[po_number] = _Decoded(raw, stored, records, sizes, weight)
        self._cached_bytes += weight
        while len(self._decoded) > CACHED_LEDGERS or self._cached_bytes > CACHED_BYTES:
            self._cached_bytes -= self._decoded.popitem(last=False)[1].weight


@dataclass(frozen=True)
class _Decoded:
    """A ledger kept decoded, by the bytes of its PO's value; `weight`: its bytes in the store."""

    raw: bytes
    stored: _Stored
    records: dict[str, InvoiceRecord]
    sizes: dict[str, int]
    weight: int


class RecordTooLarge(DataError):
    """An invoice's record more than Kafka takes: the one of `record_key` (`rules.po_ledger.record_key`)."""

    def __init__(self, message: str, record_key: str):
        super().__init__(message)
        self.record_key = record_key


@dataclass(frozen=True)
class KeptJudge:
    """The rules, but for an invoice version whose record the PO's ledger could not keep (Kafka
    would refuse it: `LedgerStore.too_large`, learned as a save fails), for which judging fails (a
    DataError). Judged for another message (parked behind the invoice a completion frees, held and
    judged again), it is then the ledger's way with rules that fail on it: bad_invoice, or held as
    it was, and that message goes on, where the completion that freed a PO of very many lines was
    dead-lettered for the next invoice's record, and the PO stayed held by an invoice the bot had
    entered. Learned on saving, not weighed at each verdict: weighing made each decision 20-40 %
    slower (the record written as JSON once more) for what a PO of thousands of lines does."""

    rules: Judge
    refused: Mapping[str, str]  # record key -> why

    @property
    def rules_version(self) -> str:
        return self.rules.rules_version

    def decide(self, submission: InvoiceSubmitted, in_flight: dict[str, Decimal]) -> Verdict:
        if (why := self.refused.get(record_key(submission.invoice_id, submission.version))) is not None:
            raise DataError(why)
        return self.rules.decide(submission, in_flight)

    def payload_for(self, submission: InvoiceSubmitted) -> RpaPayload | None:
        return self.rules.payload_for(submission)

    def could_not_judge(self, submission: InvoiceSubmitted, reason: str, dead_lettered: bool = True) -> Verdict:
        return self.rules.could_not_judge(submission, reason, dead_lettered)


def _record_json(record: InvoiceRecord) -> bytes:
    """The record as pydantic writes it, the invoice as received with its numbers as numbers
    (`schemas.exact_json`), as the topic has them: pydantic wrote a Decimal there as text, and a
    parked invoice judged again from the store was not the invoice judged from the topic. The
    typed fields stay text, which the release before reads exactly."""
    written = record.model_dump(mode="json", exclude={"submission": {"document"}})
    written["submission"]["document"] = record.submission.document
    return dump_exact(written)


def _skeleton(ledger: PurchaseOrderLedger) -> tuple[object, ...]:
    """What the PO's own value holds of a ledger (the rules copy a ledger on write: `before` is as read)."""
    return (ledger.holding, ledger.parked, ledger.records.keys(), ledger.completions_seen, ledger.changes_seen)


def _dumped(stored: _Stored) -> bytes:
    return stored.model_dump_json(exclude={"records", "latest"}).encode()


def _entered_as(raw: bytes, entered: int) -> str | None:
    """The Sampro invoice of the entry of version `entered`; None for another version's (a release
    before this one entered a newer version and left the older one's here)."""
    version, _, sampro = raw.partition(b":")
    return sampro.decode() if _version(version) == entered else None


def _version(raw: bytes) -> int:
    version = int(raw)  # ValueError for what is not a whole number
    if not 1 <= version <= MAX_VERSION:
        raise ValueError(f"{version} is not an invoice version")
    return version


def _required(state: StateWrites, key: str) -> bytes:
    value = state.get(key)
    if value is None:  # the PO's value names it, and both were written in one transaction
        raise LookupError(f"the ledger's record {key!r} is missing from the store")
    return value


def _bounded(po_number: str, raw: bytes, records: int | None = None, record: str = "") -> bytes:
    """The message that would make a value too large is dead-lettered, the rest goes on."""
    # Each key is one changelog record: one Kafka refuses would fail the whole batch, batch after batch.
    if (problem := too_large(raw)) is None:
        return raw
    if records is None:  # one invoice's record: what makes it large is the PO snapshot its verdict carries
        raise RecordTooLarge(f"PO {po_number}'s ledger cannot keep this invoice's record, which holds the PO as "
                             f"judged (a PO of very many lines) and the invoice as received ({problem})", record)
    raise DataError(f"PO {po_number} would hold {records:,} invoice versions, more than its ledger can keep "
                    f"({problem}); send it again once the PO's waiting invoices are entered")
