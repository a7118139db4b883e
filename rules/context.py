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
    """An invoice seen before (entered in Sampro or decided by the pipeline), as the duplicate
    checks compare it: see `rules.duplicates`."""

    invoice_id: str
    vendor_id: str
    invoice_number: str
    status: str
    total_amount: Decimal | None = None
    invoice_date: date | None = None


@dataclass(frozen=True, slots=True)
class EvaluationContext:
    history: Sequence[KnownInvoice] = ()
    in_flight: Mapping[str, Decimal] = field(default_factory=dict)  # PO line number -> quantity at the RPA bot
    policy: Policy = Policy()
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    today: date | None = None  # defaults to now's date
    limits: Limits = Limits()

    @property
    def as_of(self) -> date:
        return self.today or self.now.date()
