"""One invoice laid beside its PO: the matching every rule shares, worked out once."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property

from rules.context import EvaluationContext
from rules.models import Finding, Invoice, InvoiceLine, PurchaseOrder, PurchaseOrderLine, Severity
from rules.money import minor_unit, round_money
from rules.policy import Tolerance

ZERO = Decimal(0)


@dataclass
class Case:
    invoice: Invoice | None
    po: PurchaseOrder | None
    context: EvaluationContext
    contract_problems: list[Finding] = field(default_factory=list)

    @cached_property
    def tolerance(self) -> Tolerance:
        return self.context.policy.for_vendor(self.invoice.vendor_id if self.invoice else None)

    @cached_property
    def cent(self) -> Decimal:
        return minor_unit(self.invoice.currency)

    def money(self, amount: Decimal) -> Decimal:
        return round_money(amount, self.invoice.currency)

    @cached_property
    def po_lines_by_part(self) -> dict[str, list[PurchaseOrderLine]]:
        by_part: dict[str, list[PurchaseOrderLine]] = defaultdict(list)
        for line in sorted(self.po.lines, key=lambda line: line.line_no):
            by_part[line.part_number].append(line)
        return dict(by_part)

    @cached_property
    def matches(self) -> list[tuple[InvoiceLine, PurchaseOrderLine | None]]:
        """Each invoice line with the PO line it is keyed against: same part, same price if any."""
        pairs = []
        for line in self.invoice.lines:
            candidates = self.po_lines_by_part.get(line.part_number, [])
            same_price = next((c for c in candidates if c.unit_price == line.unit_price), None)
            pairs.append((line, same_price or (candidates[0] if candidates else None)))
        return pairs

    @cached_property
    def line_amounts(self) -> list[Decimal]:
        """The amount each line stands for: as stated, or quantity x price when the vendor left it out."""
        return [
            line.amount if line.amount is not None else self.money(line.quantity * line.unit_price)
            for line in self.invoice.lines
        ]

    @cached_property
    def invoiced_by_part(self) -> dict[str, Decimal]:
        """Quantities per part on the PO, summed over every invoice line that names it."""
        totals: dict[str, Decimal] = defaultdict(Decimal)
        for line in self.invoice.lines:
            if line.part_number in self.po_lines_by_part:
                totals[line.part_number] += line.quantity
        return dict(totals)

    def first_line_of(self, part_number: str) -> int | None:
        return next((line.line_no for line in self.invoice.lines if line.part_number == part_number), None)


def finding(
    code: str,
    severity: Severity,
    message: str,
    *,
    line_no: int | None = None,
    field: str | None = None,
    expected: object = None,
    actual: object = None,
) -> Finding:
    # Built without re-validation: every argument comes from already validated models.
    return Finding.model_construct(
        code=code,
        severity=severity,
        line_no=line_no,
        field=field,
        expected=None if expected is None else str(expected),
        actual=None if actual is None else str(actual),
        message=message,
    )
