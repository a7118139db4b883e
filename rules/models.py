"""The AP vocabulary as pydantic models: what an invoice, a purchase order and a verdict are.

Money and quantities are `Decimal` end to end; nothing here imports infrastructure.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticCustomError

# What the keys of the pipeline's records hold: a stream key, a table key, a mail header. An invoice
# as the vendor sent it may break these (the rules then say so); a record on a topic may not.
StreamKey = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f\u2028\u2029]+$")]
MAX_VERSION = 2_147_483_647  # an Avro int, and the processscheduler column's
VersionNumber = Annotated[int, Field(ge=1, le=MAX_VERSION)]
# An invoice's line number, in Sampro's INT and the topics' Avro int: 2**31 passed as a ready
# invoice that Java consumers and Sampro refuse, and 2**63 left the invoice unjudged, naming no
# field. Bound where an invoice is read, not in what the pipeline wrote from it (findings, payloads,
# the ledger), which an older release may have written past it, and must still read.
LineNumber = Annotated[int, Field(ge=-MAX_VERSION - 1, le=MAX_VERSION)]
MAX_EVENT_ID = 200
EventId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_EVENT_ID)]


class _Model(BaseModel):
    # Frozen so a verdict's PO snapshot cannot drift after evaluation.
    model_config = ConfigDict(frozen=True, extra="ignore")


ModelT = TypeVar("ModelT", bound=BaseModel)
_new, _set = object.__new__, object.__setattr__
# BaseModel's own slots, set through their descriptors: a third cheaper than `object.__setattr__`.
_set_fields_set, _set_extra, _set_private = (BaseModel.__dict__[slot].__set__ for slot in (
    "__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__"))


def trusted(model: type[ModelT], values: dict[str, Any]) -> ModelT:
    """The model of values the rules made from validated models, without validating them again.

    Each value must already be of its field's type: then the model is the one validation would
    give (tests/unit/rules/test_fast_paths.py compares them). This is what pydantic's
    `model_construct` does, without its per-field loop in Python, which costs more than
    validation itself (3.5 against 1.7 µs for a payload line, pydantic 2.14). A field `values`
    does not name (one added to the model since the caller was written) gets its default."""
    fields, fields_set = model.__pydantic_fields__, set(values)  # __pydantic_fields__: model_fields, uncharged
    if len(values) != len(fields):
        values = {name: values[name] if name in values else field.get_default(call_default_factory=True)
                  for name, field in fields.items()}
    instance = _new(model)
    _set(instance, "__dict__", values)
    _set_fields_set(instance, fields_set)
    _set_extra(instance, None)
    _set_private(instance, None)
    return instance


def _in_plain_digits(value: Any) -> Any:
    """Number text as the contract writes it: Python's Decimal also reads `1_5.50`, `１５.５０` and
    `١٥.٥٠` as 15.50, and an invoice whose text said otherwise went to the bot."""
    if type(value) is str and (not value.isascii() or "_" in value):
        raise PydanticCustomError("number_text", "must be written in the digits 0-9, without separators")
    return value


def _iso_date(value: Any) -> Any:
    """A date as the contract writes it: pydantic also reads a number, or its text, as a Unix time
    (`1795132800` was 2026-11-20 to the bot)."""
    if not isinstance(value, date | str) or (type(value) is str and not _ISO_DATE.fullmatch(value)):
        raise PydanticCustomError("date_text", "must be a date written YYYY-MM-DD")
    return value


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
def _plain_zero(value: Decimal) -> Decimal:
    """A zero as str() writes it plainly: `-0.00` (a rounded discount, as Python and JavaScript
    format one) is 0.00, `0E-8` (a system writing 8 decimals) and `0E+20` are 0; each went to the
    bot as written. A zero like `0.00` stays as it is."""
    if value or value.is_nan():
        return value
    exponent = value.as_tuple().exponent
    return value.copy_abs() if isinstance(exponent, int) and -6 <= exponent <= 0 else _ZERO


_ZERO = Decimal(0)
# A quantity or an amount, and a date, as the marketplace sends them.
InvoiceNumber = Annotated[Decimal, BeforeValidator(_in_plain_digits), AfterValidator(_plain_zero)]
InvoiceDate = Annotated[date, BeforeValidator(_iso_date)]


class InvoiceLine(_Model):
    line_no: LineNumber
    part_number: str = Field(min_length=1)
    description: str | None = None
    quantity: InvoiceNumber
    unit_price: InvoiceNumber
    amount: InvoiceNumber | None = None


class ExtraCharge(_Model):
    kind: str = Field(min_length=1)
    amount: InvoiceNumber


class Invoice(_Model):
    invoice_id: str = Field(min_length=1)
    version: VersionNumber = 1
    vendor_id: str = Field(min_length=1)
    invoice_number: str = Field(min_length=1)
    po_number: str = Field(min_length=1)
    invoice_date: InvoiceDate
    currency: str = Field(min_length=3, max_length=3)
    lines: list[InvoiceLine] = Field(min_length=1)
    tax_amount: InvoiceNumber = Decimal(0)
    extra_charges: list[ExtraCharge] = Field(default_factory=list)
    total_amount: InvoiceNumber


class POStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    ON_HOLD = "on_hold"
    CANCELLED = "cancelled"


class PurchaseOrderLine(_Model):
    line_no: int
    part_number: str = Field(min_length=1)
    unit_price: Decimal
    quantity_ordered: Decimal
    quantity_received: Decimal | None = None
    quantity_invoiced: Decimal = Decimal(0)


class PurchaseOrder(_Model):
    # Lists read from a topic or Sampro (here and below: fail_fast) stop at their first bad item: a
    # 1 MB record of a million bad items made a million errors, and their list took the worker past
    # 1 GB. An invoice's own lines are read whole, each problem named to the vendor.
    po_number: str = Field(min_length=1)
    vendor_id: str = Field(min_length=1)
    status: POStatus
    currency: str = Field(min_length=3, max_length=3)
    order_date: date
    tax_rate: Decimal | None = None
    allowed_charges: list[str] = Field(default_factory=list, fail_fast=True)
    lines: list[PurchaseOrderLine] = Field(default_factory=list, fail_fast=True)


class UnreadablePurchaseOrder(_Model):
    """A PO Sampro has, whose rows make no snapshot (a status this service does not know, a line
    number twice, a quantity below zero): its invoices wait as po_not_found, saying why, and are
    judged again when the PO changes in Sampro."""

    po_number: str
    problem: str  # names the column and the value


class VerdictStatus(StrEnum):
    """Ordered from strongest to weakest: the strongest finding decides the verdict."""

    PO_NOT_FOUND = "po_not_found"
    BAD_INVOICE = "bad_invoice"
    MANUAL_REVIEW = "manual_review"
    READY_TO_PROCESS = "ready_to_process"

    @property
    def http_status(self) -> int:
        return _HTTP_STATUS[self]

    @property
    def rank(self) -> int:
        """Lower is stronger (po_not_found=0 ... ready_to_process=3)."""
        return _RANK[self]


_HTTP_STATUS = {
    VerdictStatus.PO_NOT_FOUND: 404,
    VerdictStatus.BAD_INVOICE: 400,
    VerdictStatus.MANUAL_REVIEW: 400,
    VerdictStatus.READY_TO_PROCESS: 200,
}
_RANK = {status: rank for rank, status in enumerate(VerdictStatus)}


class Severity(StrEnum):
    """`error`: the invoice cannot be entered as sent; `warning`: a person must decide."""

    ERROR = "error"
    WARNING = "warning"


class Finding(_Model):
    code: str
    severity: Severity
    line_no: int | None = None
    field: str | None = None
    expected: str | None = None
    actual: str | None = None
    message: str


class RpaPayloadLine(_Model):
    invoice_line_no: int
    po_line_no: int
    part_number: str
    description: str | None = None
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal


class RpaPayload(_Model):
    """Everything the RPA bot keys into Sampro, so it never has to look anything up."""

    invoice_id: str
    invoice_version: int
    vendor_id: str
    invoice_number: str
    invoice_date: date
    po_number: str
    currency: str
    lines: list[RpaPayloadLine] = Field(fail_fast=True)
    tax_amount: Decimal
    extra_charges: list[ExtraCharge] = Field(default_factory=list, fail_fast=True)
    total_amount: Decimal
    total_difference: Decimal | None = None  # total less lines, tax and charges, when the policy accepts it

    def is_for(self, invoice_id: str, invoice_version: int, po_number: str) -> bool:
        """Whether it hands over that invoice version on that PO (its email goes under their names)."""
        return (self.invoice_id, self.invoice_version, self.po_number) == (invoice_id, invoice_version, po_number)


class EarlierInvoice(_Model):
    """An invoice seen before, as the duplicate checks saw it."""

    invoice_id: str
    vendor_id: str
    invoice_number: str
    status: str
    total_amount: Decimal | None = None
    invoice_date: date | None = None


class VerdictAudit(_Model):
    """What the rules saw besides the PO snapshot: with it, a replay judges the invoice again
    exactly as the pipeline did, without Sampro, processscheduler or the PO's ledger."""

    invoice: Any  # the document as received, valid or not
    in_flight: dict[str, Decimal] = Field(default_factory=dict)  # PO line number -> quantity at the RPA bot
    earlier_invoices: list[EarlierInvoice] = Field(default_factory=list, fail_fast=True)


class Verdict(_Model):
    invoice_id: str | None
    invoice_version: int | None
    po_number: str | None
    status: VerdictStatus
    http_status: int
    reasons: list[Finding] = Field(default_factory=list, fail_fast=True)
    rpa_payload: RpaPayload | None = None
    rules_version: str
    po_snapshot: PurchaseOrder | None = None
    evaluated_at: datetime
    # Beyond DESIGN §3, so processscheduler can show who sent which invoice whatever the status.
    vendor_id: str | None = None
    invoice_number: str | None = None
    audit: VerdictAudit | None = None  # kept on the verdicts topic for replay; not part of the API
    # The Sampro change (PurchaseOrderChanged.event_id) this judgement was made for, or the verdict
    # of other rules it follows ("rules:<version>@<evaluated at>", reprocessed); None for the first.
    # A judgement again of the same version is a new event in processscheduler's history.
    judged_after: str | None = None


class CompletionOutcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"


class RpaCompletion(_Model):
    """The RPA bot's report that it entered (or failed to enter) one invoice version in Sampro."""

    event_id: EventId
    invoice_id: StreamKey
    invoice_version: VersionNumber
    po_number: StreamKey
    outcome: CompletionOutcome
    sampro_invoice_id: Annotated[str, StringConstraints(max_length=64)] | None = None
    error: Annotated[str, StringConstraints(max_length=2000)] | None = None
    occurred_at: datetime
    # The Sampro invoice processscheduler recorded for this version, where the API found the bot
    # reporting another: a second entry, which the PO agent notes for AP to reverse one.
    entered_as: Annotated[str, StringConstraints(max_length=64)] | None = None
    # The hand-off (`RpaRequest.attempt`) the report is about, where the bot says; None: the last one.
    attempt: VersionNumber | None = None
