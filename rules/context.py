"""What the rules need to know besides the invoice and the PO."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal

from rules.identifiers import identifier_key, loose_number_key
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
    """The invoices seen before, filed by what the duplicate checks compare (`rules.duplicates`):
    the vendor with the loose invoice number, and the vendor with the total. An invoice is looked
    up by its own, so judging a batch of n invoices of one vendor costs n lookups, not n x n
    comparisons. Filed under case-folded keys, which the identifier rules may only narrow (two
    numbers the same as identifiers have the same loose key); the checks then compare exactly."""

    def __init__(self, invoices: Iterable[KnownInvoice] = ()):
        self._filed: dict[tuple[str, str | Decimal], list[tuple[int, KnownInvoice]]] = defaultdict(list)
        self._seen = 0
        self.extend(invoices)

    def extend(self, invoices: Iterable[KnownInvoice]) -> None:
        for invoice in invoices:
            vendor, self._seen = identifier_key(invoice.vendor_id), self._seen + 1
            for key in _filed_under(vendor, invoice.invoice_number, invoice.total_amount):
                self._filed[key].append((self._seen, invoice))

    def like(self, vendor_id: str, invoice_number: str, total_amount: Decimal | None) -> list[KnownInvoice]:
        """The vendor's invoices with the same loose number or the same total, in the order seen."""
        found = {seen: invoice for key in _filed_under(identifier_key(vendor_id), invoice_number, total_amount)
                 for seen, invoice in self._filed.get(key, ())}
        return [found[seen] for seen in sorted(found)]


def _filed_under(vendor: str, number: str, total: Decimal | None) -> list[tuple[str, str | Decimal]]:
    keys: list[tuple[str, str | Decimal]] = [(vendor, loose_number_key(number))]
    if total is not None:  # a Decimal never equals a str: the two kinds of key cannot meet
        keys.append((vendor, total))
    return keys


@dataclass(frozen=True, slots=True)
class EvaluationContext:
    history: KnownInvoices | Iterable[KnownInvoice] = ()  # made a KnownInvoices when it is not one
    in_flight: Mapping[str, Decimal] = field(default_factory=dict)  # PO line number -> quantity at the RPA bot
    policy: Policy = Policy()
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    today: date | None = None  # defaults to now's date
    limits: Limits = Limits()
    po_problem: str | None = None  # why Sampro's PO could not be read, when it could not (UnreadablePurchaseOrder)

    def __post_init__(self) -> None:
        if not isinstance(self.history, KnownInvoices):
            object.__setattr__(self, "history", KnownInvoices(self.history))

    def earlier_like(self, vendor_id: str, invoice_number: str, total_amount: Decimal | None) -> list[KnownInvoice]:
        """The invoices seen before that the duplicate checks compare an invoice with."""
        assert isinstance(self.history, KnownInvoices), "made one in __post_init__"
        return self.history.like(vendor_id, invoice_number, total_amount)

    @property
    def as_of(self) -> date:
        return self.today or self.now.date()
