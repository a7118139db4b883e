"""One invoice laid beside its PO: the matching every rule shares, worked out once, up front.

Plain attributes rather than lazy properties: `evaluate` runs tens of thousands of times a
second, and every rule that has a PO needs this matching anyway.
"""

from __future__ import annotations

from decimal import Decimal

from rules.context import EvaluationContext
from rules.models import (
    Finding,
    Invoice,
    InvoiceLine,
    PurchaseOrder,
    PurchaseOrderLine,
    Severity,
)
from rules.money import round_money
from rules.policy import Tolerance

ZERO = Decimal(0)


class Case:
    __slots__ = (
        "invoice", "po", "context", "contract_problems", "tolerance", "computed_amounts", "line_amounts",
        "po_lines_by_part", "matches", "invoiced_by_part",
    )

    def __init__(
        self,
        invoice: Invoice | None,
        po: PurchaseOrder | None,
        context: EvaluationContext,
        contract_problems: list[Finding] | None = None,
    ):
        self.invoice = invoice
        self.po = po
        self.context = context
        self.contract_problems = contract_problems or []
        self.tolerance: Tolerance = context.policy.for_vendor(invoice.vendor_id if invoice else None)
        self.computed_amounts: list[Decimal] = []
        self.line_amounts: list[Decimal] = []
        self.po_lines_by_part: dict[str, list[PurchaseOrderLine]] = {}
        self.matches: list[tuple[InvoiceLine, PurchaseOrderLine | None]] = []
        self.invoiced_by_part: dict[str, Decimal] = {}
        if invoice is not None:
            # Quantity x price, rounded; and the amount each line stands for: as stated, or that.
            self.computed_amounts = [self.money(line.quantity * line.unit_price) for line in invoice.lines]
            self.line_amounts = [line.amount if line.amount is not None else computed
                                 for line, computed in zip(invoice.lines, self.computed_amounts)]
        if invoice is not None and po is not None:
            self._match(invoice, po)

    def _match(self, invoice: Invoice, po: PurchaseOrder) -> None:
        by_part = self.po_lines_by_part
        for po_line in sorted(po.lines, key=lambda line: line.line_no):
            by_part.setdefault(po_line.part_number, []).append(po_line)
        invoiced = self.invoiced_by_part
        for line in invoice.lines:
            candidates = by_part.get(line.part_number)
            if not candidates:
                self.matches.append((line, None))
                continue
            # Same part and same price if the PO has such a line, else the part's first line.
            if len(candidates) > 1:
                self.matches.append((line, next((c for c in candidates if c.unit_price == line.unit_price),
                                                candidates[0])))
            else:
                self.matches.append((line, candidates[0]))
            invoiced[line.part_number] = invoiced.get(line.part_number, ZERO) + line.quantity

    def money(self, amount: Decimal) -> Decimal:
        return round_money(amount, self.invoice.currency)

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
    return Finding(
        code=code,
        severity=severity,
        line_no=line_no,
        field=field,
        expected=None if expected is None else str(expected),
        actual=None if actual is None else str(actual),
        message=message,
    )
