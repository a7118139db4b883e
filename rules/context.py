"""What the rules need to know besides the invoice and the PO."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal

from rules.limits import Limits
from rules.policy import Policy

# Earlier invoices with these statuses were never processed, so a resend is not a duplicate.
NOT_PROCESSED = frozenset({"bad_invoice", "po_not_found", "withdrawn", "superseded"})


@dataclass(frozen=True, slots=True)
class KnownInvoice:
    """An invoice seen before (entered in Sampro or decided by the pipeline)."""

    invoice_id: str
    vendor_id: str
    invoice_number: str
    status: str

    def shares_number_with(self, vendor_id: str, invoice_number: str) -> bool:
        """The same vendor's same invoice number (the vendor's number compared without edge spaces)."""
        return self.vendor_id == vendor_id and self.invoice_number.strip() == invoice_number.strip()


@dataclass(frozen=True, slots=True)
class EvaluationContext:
    history: Sequence[KnownInvoice] = ()
    in_flight: Mapping[str, Decimal] = field(default_factory=dict)  # part number -> quantity
    policy: Policy = Policy()
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    today: date | None = None  # defaults to now's date
    limits: Limits = Limits()

    @property
    def as_of(self) -> date:
        return self.today or self.now.date()
