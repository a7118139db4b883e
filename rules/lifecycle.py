"""What happens to an invoice after its verdict: the messages on a purchase order's stream
and the status changes that processscheduler records as history.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from rules.models import EventId, RpaPayload, StreamKey, VersionNumber

MAX_HOLDS_NAMED = 200  # in one release: the API's bound, and a command record's
MAX_SEEN_MESSAGE = 2_000  # a hold's message as the clerk saw it, in a release


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class InvoiceStatus(StrEnum):
    """Lifecycle in processscheduler (DESIGN §5); the first four are also verdict statuses."""

    READY_TO_PROCESS = "ready_to_process"
    MANUAL_REVIEW = "manual_review"
    BAD_INVOICE = "bad_invoice"
    PO_NOT_FOUND = "po_not_found"
    WAITING_FOR_PO = "waiting_for_po"
    AWAITING_RECEIPT = "awaiting_receipt"  # manual_review whose only findings are goods not yet received
    SENT_TO_RPA = "sent_to_rpa"
    ENTERED = "entered"
    RPA_FAILED = "rpa_failed"
    RELEASED = "released"
    WITHDRAWN = "withdrawn"
    SUPERSEDED = "superseded"


class InvoiceSubmitted(_Event):
    """A vendor's invoice (or a new version of it) as the marketplace holds it.

    `document` is the canonical JSON (DESIGN §3) exactly as received, valid or not: the rules,
    not the transport, decide whether it breaks the contract.
    """

    invoice_id: StreamKey
    version: VersionNumber
    po_number: StreamKey
    document: dict[str, Any]
    received_at: datetime


class InvoiceWithdrawn(_Event):
    """The vendor deleted the invoice in the marketplace."""

    invoice_id: StreamKey
    version: VersionNumber
    po_number: StreamKey
    withdrawn_at: datetime


class InvoiceReplaced(_Event):
    """A newer version of the invoice names another PO: it replaces the versions on this one, whose
    PO agent never sees it (the PO agent of the newer version's PO sends this)."""

    invoice_id: StreamKey
    version: VersionNumber  # the newer version
    po_number: StreamKey  # the PO of the versions it replaces
    replaced_on: StreamKey  # the PO the newer version names
    replaced_at: datetime


class ReleaseRequested(_Event):
    """An AP release of holds (`rules.holds`): the invoice goes on once none is left."""

    command_id: EventId
    invoice_id: StreamKey
    invoice_version: VersionNumber
    po_number: StreamKey
    user: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    reason: str = Field(min_length=1)  # the clerk's comment
    issued_at: datetime
    # The holds released; none named (commands from before holds): every hold a clerk may release.
    holds: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] = Field(
        default_factory=list, max_length=MAX_HOLDS_NAMED, fail_fast=True)
    reason_code: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    # The holds as the clerk saw them, by name: their messages. One that reads otherwise when the
    # command comes (judged again after a change in Sampro, the PO's price cut) is not released.
    seen: dict[Annotated[str, StringConstraints(min_length=1, max_length=200)],
               Annotated[str, StringConstraints(min_length=1, max_length=MAX_SEEN_MESSAGE)]] = Field(
        default_factory=dict, max_length=MAX_HOLDS_NAMED)


class DispatchApproved(_Event):
    """An AP clerk approves sending a ready invoice to the RPA bot (manual dispatch mode)."""

    command_id: EventId
    invoice_id: StreamKey
    invoice_version: VersionNumber
    po_number: StreamKey
    user: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    issued_at: datetime


class PurchaseOrderChanged(_Event):
    """Sampro changed what the rules read of a PO: its header or lines (price, quantities ordered,
    received or invoiced, status), or an invoice entered against it. `event_id` names the change
    (the source derives it from the PO and the change's time), so a replayed change is a no-op."""

    event_id: EventId
    po_number: StreamKey
    changed_at: datetime


class RpaRequest(_Event):
    """One invoice version handed to the RPA bot."""

    invoice_id: StreamKey
    invoice_version: VersionNumber
    po_number: StreamKey
    payload: RpaPayload
    requested_at: datetime
    # Which hand-off of this version: 2 and on after AP released an RPA failure to the bot again.
    # Each is an email of its own; a replay of one is the same email (the sent log knows it).
    attempt: VersionNumber = 1
    # The version of this invoice the PO agent superseded in the step that handed this one over (the
    # bot failed it, or the vendor sent this one while it waited): it gives up its invoice number
    # to this one before processscheduler shows it superseded.
    replaces: VersionNumber | None = None

    @model_validator(mode="after")
    def _payload_is_this_invoice_versions(self) -> RpaRequest:
        # The email goes under this version's Message-ID and sent-log entry, with the payload's
        # lines: another invoice's payload would be entered in its name, and never its own.
        payload = self.payload
        if not payload.is_for(self.invoice_id, self.invoice_version, self.po_number):
            raise ValueError(f"its payload is {payload.invoice_id[:80]!r} version {payload.invoice_version} on "
                             f"{payload.po_number[:80]!r}, not the invoice version it hands over")
        return self


class StatusChanged(_Event):
    """One transition in an invoice's lifecycle; `event_id` makes a replayed change a no-op."""

    event_id: EventId
    invoice_id: StreamKey
    invoice_version: VersionNumber
    po_number: StreamKey
    status: InvoiceStatus
    occurred_at: datetime
    actor: str | None = None
    reason: str | None = None
    sampro_invoice_id: str | None = None
    rpa_payload: RpaPayload | None = None  # on sent_to_rpa: what the bot was given
    holds: list[str] = Field(default_factory=list, fail_fast=True)  # the holds an AP release released with this change
