"""What the rules need to know besides the invoice and the PO."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal

from rules.identifiers import identifier_key
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


class KnownInvoices:
    """The invoices seen before, by vendor: an invoice is only ever compared with its vendor's, so a
    batch of n invoices costs n lookups, not n x n comparisons. Filed under the case-folded vendor
    key, which is the same for every spelling the identifier rules may call the same vendor; the
    checks then compare exactly."""

    def __init__(self, invoices: Iterable[KnownInvoice] = ()):
        self._by_vendor: dict[str, list[KnownInvoice]] = defaultdict(list)
        self.extend(invoices)

    def extend(self, invoices: Iterable[KnownInvoice]) -> None:
        for invoice in invoices:
            self._by_vendor[identifier_key(invoice.vendor_id)].append(invoice)

    def of_vendor(self, vendor_id: str) -> list[KnownInvoice]:
        return self._by_vendor.get(identifier_key(vendor_id), [])


@dataclass(frozen=True, slots=True)
class EvaluationContext:
    history: KnownInvoices | Iterable[KnownInvoice] = ()  # made a KnownInvoices when it is not one
    in_flight: Mapping[str, Decimal] = field(default_factory=dict)  # PO line number -> quantity at the RPA bot
    policy: Policy = Policy()
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    today: date | None = None  # defaults to now's date
    limits: Limits = Limits()

    def __post_init__(self) -> None:
        if not isinstance(self.history, KnownInvoices):
            object.__setattr__(self, "history", KnownInvoices(self.history))

    def earlier_of_vendor(self, vendor_id: str) -> list[KnownInvoice]:
        assert isinstance(self.history, KnownInvoices), "made one in __post_init__"
        return self.history.of_vendor(vendor_id)

    @property
    def as_of(self) -> date:
        return self.today or self.now.date()
