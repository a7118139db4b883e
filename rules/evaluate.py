"""`evaluate`: the verdict for one invoice against one PO snapshot, with every reason."""

from __future__ import annotations

from typing import Any

from rules.case import Case
from rules.context import EvaluationContext
from rules.models import Invoice, PurchaseOrder, RpaPayload, Verdict, VerdictStatus
from rules.parsing import read_invoice
from rules.payload import build_rpa_payload
from rules.table import RULES, RULES_VERSION, STATUS_OF


def _identity(raw: Any, invoice: Invoice | None) -> tuple[str | None, int | None, str | None]:
    """Who the verdict is about, even when the invoice broke its contract."""
    if invoice is not None:
        return invoice.invoice_id, invoice.version, invoice.po_number
    if isinstance(raw, dict):
        version = raw.get("version", 1)
        return (
            raw["invoice_id"] if isinstance(raw.get("invoice_id"), str) else None,
            version if isinstance(version, int) and not isinstance(version, bool) else None,
            raw["po_number"] if isinstance(raw.get("po_number"), str) else None,
        )
    return None, None, None


def evaluate(invoice: Invoice | Any, po: PurchaseOrder | None, context: EvaluationContext | None = None) -> Verdict:
    """Never raises on JSON-shaped input: a broken invoice is a bad_invoice verdict."""
    context = context or EvaluationContext()
    parsed, problems = read_invoice(invoice)
    case = Case(invoice=parsed, po=po, context=context, contract_problems=problems)
    reasons = []
    for rule in RULES:
        if (rule.needs_invoice and parsed is None) or (rule.needs_po and po is None):
            continue
        reasons.extend(rule.check(case))
    status = min((STATUS_OF[r.code] for r in reasons), key=lambda s: s.rank, default=VerdictStatus.READY_TO_PROCESS)
    payload: RpaPayload | None = None
    if status is VerdictStatus.READY_TO_PROCESS:
        payload = build_rpa_payload(case)
    invoice_id, version, po_number = _identity(invoice, parsed)
    return Verdict(
        invoice_id=invoice_id,
        invoice_version=version,
        po_number=po_number,
        status=status,
        http_status=status.http_status,
        reasons=reasons,
        rpa_payload=payload,
        rules_version=RULES_VERSION,
        po_snapshot=po,
        evaluated_at=context.now,
    )
