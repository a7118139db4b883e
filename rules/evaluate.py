"""`evaluate`: the verdict for one invoice against one PO snapshot, with every reason."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from rules.case import Case
from rules.context import EvaluationContext
from rules.lifecycle import InvoiceSubmitted
from rules.models import (
    EarlierInvoice,
    Finding,
    Invoice,
    PurchaseOrder,
    RpaPayload,
    Severity,
    Verdict,
    VerdictAudit,
    VerdictStatus,
    trusted,
)
from rules.parsing import read_invoice, writable
from rules.payload import build_rpa_payload
from rules.table import STATUS_OF, rules_version, runnable


def _text(raw: dict[str, Any], key: str) -> str | None:
    return writable(raw[key]) if isinstance(raw.get(key), str) else None


def _identity(raw: Any, invoice: Invoice | None) -> dict[str, Any]:
    """Who and what the verdict is about, even when the invoice broke its contract."""
    if invoice is not None:
        return {"invoice_id": invoice.invoice_id, "invoice_version": invoice.version, "po_number": invoice.po_number,
                "vendor_id": invoice.vendor_id, "invoice_number": invoice.invoice_number.strip()}
    raw = raw if isinstance(raw, dict) else {}
    version = raw.get("version", 1)
    return {"invoice_id": _text(raw, "invoice_id"),
            "invoice_version": version if isinstance(version, int) and not isinstance(version, bool) else None,
            "po_number": _text(raw, "po_number"), "vendor_id": _text(raw, "vendor_id"),
            "invoice_number": _text(raw, "invoice_number")}


def findings(case: Case) -> tuple[VerdictStatus, list[Finding]]:
    """Every rule of the table that can run on the case; the strongest finding decides."""
    reasons = []
    for rule in runnable(case):
        reasons.extend(rule.check(case))
    status = min((STATUS_OF[r.code] for r in reasons), key=lambda s: s.rank, default=VerdictStatus.READY_TO_PROCESS)
    return status, reasons


def case_of(invoice: Invoice | Any, po: PurchaseOrder | None, context: EvaluationContext) -> Case:
    parsed, problems = read_invoice(invoice, context.limits)
    return Case(invoice=parsed, po=po, context=context, contract_problems=problems)


def evaluate(invoice: Invoice | Any, po: PurchaseOrder | None, context: EvaluationContext | None = None) -> Verdict:
    """Never raises on JSON-shaped input: a broken invoice is a bad_invoice verdict."""
    context = context or EvaluationContext()
    case = case_of(invoice, po, context)
    parsed = case.invoice
    status, reasons = findings(case)
    payload: RpaPayload | None = None
    if status is VerdictStatus.READY_TO_PROCESS:
        payload = build_rpa_payload(case)
    identity = _identity(invoice, parsed)
    values = {
        "invoice_id": identity["invoice_id"],
        "invoice_version": identity["invoice_version"],
        "po_number": identity["po_number"],
        "status": status,
        "http_status": status.http_status,
        "reasons": reasons,
        "rpa_payload": payload,
        "rules_version": rules_version(context.policy),
        "po_snapshot": po,
        "evaluated_at": context.now,
        "vendor_id": identity["vendor_id"],
        "invoice_number": identity["invoice_number"],
        "audit": _audit(invoice, case),
    }
    if isinstance(po, PurchaseOrder | None) and isinstance(context.now, datetime):
        # Findings, payload and audit are models already; identity values are typed by _identity.
        return trusted(Verdict, values)
    return Verdict.model_validate(values)


def _audit(raw: Any, case: Case) -> VerdictAudit:
    # The earlier invoices the duplicate checks could find it a duplicate of (`Case.earlier`): a replay
    # compares it with them again, and finds what the checks found.
    earlier = [EarlierInvoice(invoice_id=e.invoice_id, vendor_id=e.vendor_id, invoice_number=e.invoice_number,
                              status=e.status, total_amount=e.total_amount, invoice_date=e.invoice_date)
               for e in case.earlier]
    document = raw.model_dump(mode="json") if isinstance(raw, Invoice) else raw
    in_flight = dict(case.context.in_flight)
    if all(type(key) is str and type(quantity) is Decimal for key, quantity in in_flight.items()):
        # What validation would give: the document is kept as it is (Any), the rest are typed already.
        return trusted(VerdictAudit, {"invoice": document, "in_flight": in_flight, "earlier_invoices": earlier})
    return VerdictAudit(invoice=document, in_flight=in_flight, earlier_invoices=earlier)


def could_not_judge(submission: InvoiceSubmitted, reason: str, context: EvaluationContext,
                    dead_lettered: bool = True) -> Verdict:
    """bad_invoice for an invoice the pipeline failed to judge, so AP sees it in processscheduler
    instead of never hearing of it: its record went to the dead-letter topic, or (not
    `dead_lettered`) it was judged for another message of its PO, which went on."""
    document = submission.document if isinstance(submission.document, dict) else {}
    where = ("its record is in the dead-letter topic" if dead_lettered
             else "a fault of the pipeline, not of the invoice: report it; the invoices behind it on its PO went on")
    finding = Finding(code="INVALID_INVOICE", severity=Severity.ERROR, field="invoice", actual=None,
                      message=f"This invoice could not be judged ({reason[:300]}); {where}.")
    return Verdict(invoice_id=submission.invoice_id, invoice_version=submission.version,
                   po_number=submission.po_number, status=VerdictStatus.BAD_INVOICE,
                   http_status=VerdictStatus.BAD_INVOICE.http_status, reasons=[finding],
                   rules_version=rules_version(context.policy), evaluated_at=context.now,
                   vendor_id=_text(document, "vendor_id"), invoice_number=_text(document, "invoice_number"))
