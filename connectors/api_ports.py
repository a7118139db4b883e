"""The small interfaces through which the API and the operator's audit tools reach the outside
world, beside the pipeline rather than in it: what they read (processscheduler, the consumer lag,
the RPA sent log, the topics, the consumer group) and the one thing they send (commands on a PO's
stream). The worker's ports are in connectors/ports.py.

Every implementation, the in-memory ones included, subclasses its port, so mypy checks each
method against it; each port has one contract suite in tests/contracts/ run on every
implementation. The values that cross a port, and the errors it raises (all of the one family in
rules.errors), are defined here with it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from connectors.scheduler.read_model import (
    Changes,
    IdRange,
    InvoiceDetail,
    InvoicePage,
    InvoiceQuery,
    Kpi,
    StatusFigures,
)
from rules.errors import Conflict, NotFound, Unavailable
from rules.lifecycle import DispatchApproved, ReleaseRequested
from rules.models import RpaCompletion

# processscheduler, read ----------------------------------------------------------------------


class InvoiceReadModel(Protocol):
    """processscheduler as AP reads it: invoice lists, one invoice with its history, the KPI figures.
    Its value types and the pure helpers its implementations share are in connectors.scheduler.read_model."""

    def invoices(self, query: InvoiceQuery) -> InvoicePage:
        """Newest invoice versions first."""

    def invoice(self, invoice_id: str, version: int | None = None) -> InvoiceDetail | None:
        """The given version, or the newest one; None when processscheduler has no such row."""

    def entered_as(self, sampro_invoice_id: str) -> list[tuple[str, int]]:
        """The invoice versions (invoice id, version) processscheduler records entered as this Sampro
        invoice, in the order their rows were made; the id compared exactly, as Sampro keeps it."""

    def kpi(self, now: datetime) -> Kpi:
        """The figures of the dashboard as of `now`, AP's own (touchless, first pass, holds cleared, cycle
        time, open exceptions) among them, worked out from processscheduler's history."""

    def status_figures(self, now: datetime) -> StatusFigures:
        """The part of `kpi` /metrics exports on every scrape: counts by status, the last hour's history
        and the oldest wait, without the findings over all rows and AP's figures over the KPI period."""

    def changes(self, after: int | None, missing: Sequence[IdRange] = ()) -> Changes:
        """Rows changed by history events after `after`, and by those of `missing` (ids a call
        before found unread, `Changes.missing`) now there; None starts from now, with no rows."""

    def rpa_round_trips(self, since: datetime) -> list[float]:
        """Seconds from sent_to_rpa to entered or rpa_failed, for outcomes recorded since `since`."""

    def ping(self) -> None:
        """Raises Unavailable when the database cannot be reached."""


class RpaSentLog(Protocol):
    """The RPA sent log as the API reads it (for /metrics and the bot's callbacks); the mailer writes it."""

    def in_doubt(self) -> list[tuple[str, int, int]]:
        """Hand-offs (invoice id, version, attempt) whose email was cut off between the log and the
        server's answer, and that nothing has resolved since."""

    def last_hand_off(self, invoice_id: str, version: int) -> int:
        """The last hand-off (`RpaRequest.attempt`) of this version the mailer emailed, or may have
        (cut off); 0: none. Ahead of processscheduler while its sink is behind the mailer."""


# Kafka, read and written beside the pipeline ----------------------------------------------------


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int | None  # the next offset the group will process; None: it has committed none here
    end: int  # the offset the next message will get
    oldest_pending_at: datetime | None  # timestamp of the message at `position`, when one is pending and readable
    log_start: int = 0  # the partition's first offset still kept (its low watermark), read where committed is None

    @property
    def position(self) -> int:
        """Where the group reads from: a group that has committed nothing here (never started, never
        given the partition, its offsets expired) starts at the log's start (the workers'
        auto.offset.reset is earliest), so all the log keeps is still to be processed."""
        return self.log_start if self.committed is None else self.committed

    @property
    def pending(self) -> int:
        return max(self.end - self.position, 0)


class PipelineLag(Protocol):
    """How far the pipeline's consumer groups are behind their topics."""

    def lag(self) -> list[PartitionLag]:
        """Every partition of the topics the groups read, committed on or not; raises when Kafka
        cannot be reached."""


PurchaseOrderCommand = RpaCompletion | ReleaseRequested | DispatchApproved


class CommandNotDelivered(Unavailable):
    """Kafka did not acknowledge the command; nothing may be assumed about it being applied."""

    def __init__(self, detail: str):
        super().__init__("kafka", detail)


class PurchaseOrderCommands(Protocol):
    """Commands for a purchase order's stream: RPA completions, AP releases and dispatch approvals."""

    def publish(self, command: PurchaseOrderCommand) -> None:
        """Returns once the broker has acknowledged the command; raises CommandNotDelivered otherwise."""

    def ping(self) -> None:
        """Raises CommandNotDelivered when the broker cannot be reached."""


@dataclass(frozen=True, slots=True)
class TopicRecord:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()  # where a dead letter came from, where a record was forwarded from

    @property
    def recorded_at(self) -> datetime:
        """The record's timestamp in UTC. A producer may set any 64-bit one: a time Python cannot
        hold is the first or last it can, rather than an error in the middle of an audit."""
        try:
            return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)
        except (ValueError, OverflowError, OSError):
            return datetime.min.replace(tzinfo=UTC) if self.timestamp_ms < 0 else datetime.max.replace(tzinfo=UTC)


# partition -> [start, end): the offsets to read
OffsetRanges = Mapping[int, tuple[int, int]]


class TopicNotFound(NotFound):
    """No topic of that name."""


class TopicReader(Protocol):
    """The pipeline's topics read for audit: no consumer group, no commits."""

    def ranges(self, topic: str, since_ms: int | None = None,
               until_ms: int | None = None) -> dict[int, tuple[int, int]]:
        """Per partition, the offsets of the records with since_ms <= timestamp < until_ms
        (the whole partition when a bound is None). An unknown topic is a TopicNotFound."""

    def log_starts(self, topic: str) -> dict[int, int]:
        """Per partition, the first offset it still holds: past 0 once retention has deleted the
        records before it (offsets are never reused). An unknown topic is a TopicNotFound."""

    def read(self, topic: str, ranges: OffsetRanges) -> Iterator[TopicRecord]:
        """The records in the ranges, partition by partition in offset order."""


class GroupIsActive(Conflict):
    """Workers of the group are running: its offsets cannot be moved under them."""


class ConsumerGroups(Protocol):
    """The pipeline's consumer group as an operator sees it: who is in it, where it stands, moving it."""

    def members(self, group: str) -> list[str]:
        """The running consumers of the group (client id @ host); empty when none runs."""

    def committed(self, group: str, topic: str, partitions: list[int]) -> dict[int, int | None]:
        """The committed offset per partition; None where the group never committed."""

    def move(self, group: str, topic: str, offsets: dict[int, int]) -> None:
        """Sets the committed offsets; GroupIsActive while the group has members."""


# The API's own database -----------------------------------------------------------------------


class SessionVersions(Protocol):
    """Server-side session versions: signing out moves a user's version on, which ends every session
    signed before (connectors/session_versions.py says why they are kept in a database)."""

    def current(self, user: str) -> int:
        """The version a session of `user` must carry to be valid (0 before any sign-out)."""

    def end_sessions(self, user: str) -> None:
        """Every session of `user` signed so far is no longer valid."""
