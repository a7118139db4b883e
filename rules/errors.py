"""The one error family, told apart by what the caller should do about it.

The rules raise none of these for an invoice (a broken invoice is a verdict, never an exception).
Adapters map their drivers' errors into them where they call the driver, so the stream runtime
and the API decide by type alone:

- `DataError`: this record or request is bad, and trying again will never help. The runtime
  dead-letters the one record; the API answers 400.
- `Unavailable`: a dependency is down; the same call will work once it is back. The runtime
  pauses the partition and tries again with back-off; the API answers 503. `PutOff`, one of
  them, is a dependency that will take one message only later: only that message's partition
  waits.
- `Conflict`: the request does not fit where things stand now (409).
- `NotFound`: there is no such thing (404).
- `Misconfigured`: the deployment breaks a guarantee the service keeps (a topic set up otherwise
  than it needs); a command refuses to start, naming what to change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class InvoiceAutomationError(Exception):
    """The root of every error this service raises on purpose."""


class DataError(InvoiceAutomationError, ValueError):
    """Bad data: the message names the field and the value."""


class RefusedEdit(DataError):
    """A vendor's change to an invoice version already judged, refused: its record is dead-lettered,
    and the refusal is told in that version's history (`note`, a status change to the status it
    has), never as a verdict of its own over the one it has."""

    def __init__(self, message: str, note: Any):
        super().__init__(message)
        self.note = note


class Unavailable(InvoiceAutomationError):
    """A dependency (Kafka, Sampro, processscheduler, the RPA mailbox, the marketplace) is down."""

    def __init__(self, dependency: str, detail: str):
        self.dependency, self.detail = dependency, detail
        super().__init__(f"{dependency} is unavailable: {detail}")

    def __reduce__(self) -> tuple[Callable[..., Unavailable], tuple[Any, ...]]:
        # Raised in a replay's worker process, it is pickled back to the caller: made again from
        # its one message, as pickle does by default, it failed, and the pool broke instead of
        # naming the outage. Made again from its state, a subclass with other arguments is too.
        return _made_again, (type(self), self.args, self.__dict__)


def _made_again(kind: type[Unavailable], args: tuple[Any, ...], state: dict[str, Any]) -> Unavailable:
    error = kind.__new__(kind)
    error.args = args
    error.__dict__.update(state)
    return error


class PutOff(Unavailable):
    """The dependency answers, but takes this one message only later (a mail server's 451 to one
    email): the message's partition waits, and the rest of its batch goes on. The dependency is
    not down: one email a content filter put off held every partition's emails for an hour, and
    readiness said the mailbox was down."""


class NextBatch(PutOff):
    """The batch's work goes on in the next one, after the shortest pause: a step that took as
    long as it may (a mailbox slower than Kafka's poll interval allows a batch of emails). No
    message is at fault, nor is the dependency down: tried one by one as a PutOff is, every email
    of the batch went in the same step all the same."""


class Conflict(InvoiceAutomationError):
    """The request does not fit the current state of the invoice or the stream."""


class NotFound(InvoiceAutomationError, LookupError):
    """No such invoice, topic or record."""


class Misconfigured(InvoiceAutomationError):
    """The service cannot run as deployed without breaking one of its guarantees; the message says
    what to change."""
