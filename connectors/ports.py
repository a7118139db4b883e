"""The small interfaces through which the pipeline touches the outside world.

Each port has at least two implementations run by the same contract suite in tests/contracts/.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from rules.context import KnownInvoice
from rules.duplicates import Lookup, invoice_key
from rules.lifecycle import (
    InvoiceSubmitted,
    InvoiceWithdrawn,
    PurchaseOrderChanged,
    RpaRequest,
    StatusChanged,
)
from rules.models import PurchaseOrder, UnreadablePurchaseOrder, Verdict


class PurchaseOrderReader(Protocol):
    """Sampro, read side: PO snapshots and the invoices already entered against them."""

    def fetch(self, po_numbers: Collection[str]) -> dict[str, PurchaseOrder | UnreadablePurchaseOrder]:
        """One round trip per batch; POs that do not exist are absent from the result, and a PO
        whose rows make no snapshot is an UnreadablePurchaseOrder naming why, beside the others."""

    def entered_invoices(self, lookups: Collection[Lookup]) -> list[KnownInvoice]:
        """Invoices entered in Sampro that may be duplicates of the looked-up ones (rules.duplicates)."""


@dataclass(frozen=True)
class SchedulerEntry:
    """What one verdict or status change writes to processscheduler: the columns of its invoice
    version's row that it sets, and its history event (made by `connectors.scheduler.rows`)."""

    key: tuple[str, int]  # invoice id, version
    fields: dict[str, Any]
    event: dict[str, Any]


@dataclass(frozen=True)
class InvoiceVersionAt:
    """Where processscheduler has an invoice version: its PO and status."""

    invoice_id: str
    invoice_version: int
    po_number: str | None
    status: str


@dataclass(frozen=True)
class NumberClaim:
    """An invoice version about to be handed to the RPA bot, and what it takes first: the vendor's
    invoice number (`rules.duplicates.hand_off_key`) and its invoice id (`invoice_key`)."""

    key: str
    invoice_id: str
    invoice_version: int
    replaces: int | None = None  # `RpaRequest.replaces`: a version of its invoice superseded for it

    @property
    def keys(self) -> tuple[str, str]:
        return self.key, invoice_key(self.invoice_id)


class ProcessScheduler(Protocol):
    """The processscheduler table: one row per invoice version plus its status history."""

    def record(self, decisions: Sequence[Verdict | StatusChanged | SchedulerEntry]) -> None:
        """Applies a batch in one transaction; replaying a batch changes nothing. A message of no
        invoice version writes nothing."""

    def decided_invoices(self, lookups: Collection[Lookup]) -> list[KnownInvoice]:
        """Invoices the pipeline decided that may be duplicates of the looked-up ones (rules.duplicates)."""

    def versions_of(self, invoice_ids: Collection[str]) -> list[InvoiceVersionAt]:
        """Every version of these invoices that processscheduler has, on whatever PO."""

    def recorded(self, event_ids: Collection[str]) -> set[str]:
        """Those of these events that processscheduler's history has."""

    def claim_numbers(self, claims: Sequence[NumberClaim]) -> list[tuple[str, int] | None]:
        """In order, each invoice version takes its keys (`NumberClaim.keys`), both or neither,
        committed before this returns; for each, None when it has them (taken now, held by
        itself, or given up by an invoice version that no longer keeps them:
        `rules.duplicates.hand_off_refused_by`), else the invoice version that holds one. Another
        worker's hand-off of the same key meanwhile is seen, never overwritten."""


class RpaMailer(Protocol):
    """Delivers RPA requests to the bot's mailbox, at most once per hand-off of an invoice version
    (`RpaRequest.attempt`)."""

    def send(self, requests: Sequence[RpaRequest]) -> list[RpaRequest]:
        """Sends, in order, each request the sent log does not know; returns those sent now."""

    def unsent(self, requests: Sequence[RpaRequest]) -> Unsent:
        """What the sent log knows of these requests, in one read of it."""

    def keep_failed(self, failures: Sequence[tuple[RpaRequest, str]]) -> None:
        """Logs these hand-offs, each with why, as failed before their email: never emailed."""


class Unsent(NamedTuple):
    """The sent log's answer for a batch of RPA requests."""

    # Those whose hand-off the sent log does not know, in order: in a replay of rpa.requests, the
    # others were emailed already. One kept failed is among them, until a later hand-off passes it.
    requests: list[RpaRequest]
    # Of those, the hand-offs (invoice id, version, attempt) kept failed (`RpaMailer.keep_failed`) and
    # not passed by a later hand-off of their version, with why: read again, they are failed again.
    kept_failed: dict[tuple[str, int, int], str]


@dataclass(frozen=True)
class UnreadableRow:
    """A marketplace row the source could not read: for the dead-letter topic."""

    invoice_id: str
    updated_at: datetime | None
    raw: bytes  # its columns as text, JSON
    error: str
    version: int | None = None  # when it could be read: a higher one is the vendor's fix


@dataclass
class Polled:
    events: list[InvoiceSubmitted | InvoiceWithdrawn] = field(default_factory=list)
    unreadable: list[UnreadableRow] = field(default_factory=list)


class MarketplaceSource(Protocol):
    """Pulls what vendors uploaded since the last call, as canonical invoice events."""

    def poll(self) -> Polled:
        """New invoices and versions, and the rows that could not be read; nothing is final
        until `commit`."""

    def commit(self) -> None:
        """Makes the last poll durable: the next poll starts after it."""

    def forget(self) -> None:
        """The next poll reads the state from its store again, unless this worker's last write of
        it failed: this worker was given the polling (again, at each rebalance), and another
        worker may have polled and committed meanwhile."""

    def backlog(self) -> bool:
        """Whether the last poll committed stopped at a full page: the next is due at once."""


class SamproChanges(Protocol):
    """What changed in Sampro that may clear a held invoice: one event per PO and change."""

    def poll(self) -> list[PurchaseOrderChanged]:
        """Changes since the last `commit`; nothing is final until it."""

    def commit(self) -> None:
        """Makes the last poll durable: the next poll starts after it."""

    def forget(self) -> None:
        """The next poll reads the state from its store again (see `MarketplaceSource.forget`)."""

    def backlog(self) -> bool:
        """See `MarketplaceSource.backlog`."""
