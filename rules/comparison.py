"""Which PO line each invoice line was matched to, by the rules' own line matcher (rules.case),
for showing an invoice beside its PO: the same answer the rules and the RPA payload work from."""

from __future__ import annotations

from typing import Any

from rules.case import Case
from rules.context import EvaluationContext
from rules.limits import Limits
from rules.models import PurchaseOrder, PurchaseOrderLine
from rules.parsing import read_invoice
from rules.policy import Policy


def matched_po_lines(document: Any, po: PurchaseOrder, policy: Policy = Policy(),
                     limits: Limits = Limits()) -> dict[int, list[PurchaseOrderLine]]:
    """Invoice line number -> the PO lines its quantity went to, nearest in price first: more than one
    where one line had no room for it all. Empty when the document is not an invoice the rules
    could read (they matched nothing either); a line whose part is on no PO line is absent."""
    invoice, _ = read_invoice(document, limits)
    if invoice is None:
        return {}
    case = Case(invoice, po, EvaluationContext(policy=policy, limits=limits))
    return {match.line.line_no: [po_line for po_line, _ in match.placed] or match.targets[:1]
            for match in case.matches if match.targets}
