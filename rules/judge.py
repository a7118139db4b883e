"""The rules bound to one PO snapshot: what the per-PO ledger calls to decide an invoice."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from rules.case import Case
from rules.context import EvaluationContext, KnownInvoice, KnownInvoices
from rules.duplicates import known_from
from rules.evaluate import could_not_judge, evaluate
from rules.lifecycle import InvoiceSubmitted
from rules.limits import Limits
from rules.models import PurchaseOrder, RpaPayload, UnreadablePurchaseOrder, Verdict
from rules.parsing import read_invoice
from rules.payload import build_rpa_payload
from rules.policy import Policy
from rules.table import rules_version


@dataclass(frozen=True)
class RulesJudge:
    sampro_po: PurchaseOrder | UnreadablePurchaseOrder | None  # as Sampro gave it
    history: KnownInvoices | Sequence[KnownInvoice]
    policy: Policy
    now: datetime
    limits: Limits = Limits()

    @property
    def purchase_order(self) -> PurchaseOrder | None:
        """The snapshot the rules judge against: none for a PO Sampro has but cannot give."""
        return self.sampro_po if isinstance(self.sampro_po, PurchaseOrder) else None

    @property
    def rules_version(self) -> str:
        return rules_version(self.policy)

    def _context(self, in_flight: dict[str, Decimal]) -> EvaluationContext:
        problem = self.sampro_po.problem if isinstance(self.sampro_po, UnreadablePurchaseOrder) else None
        return EvaluationContext(history=self.history, in_flight=in_flight, policy=self.policy, now=self.now,
                                 limits=self.limits, po_problem=problem)

    def decide(self, submission: InvoiceSubmitted, in_flight: dict[str, Decimal]) -> Verdict:
        verdict = evaluate(submission.document, self.purchase_order, self._context(in_flight))
        if isinstance(self.history, KnownInvoices) and (
                seen := known_from(submission.invoice_id, verdict.status.value, submission.document)) is not None:
            # Known at once: two invoices of one number parked behind the bot are judged one after the
            # other when its completion frees the PO, and the second is a duplicate of the first.
            self.history.extend([seen])
        # The stream's key fields are authoritative, even for a document that lost them or says
        # otherwise: the payload too, since its email goes under the stream's invoice version.
        return verdict.model_copy(update={"invoice_id": submission.invoice_id,
                                          "invoice_version": submission.version,
                                          "po_number": submission.po_number,
                                          "rpa_payload": _handed_over_as(verdict.rpa_payload, submission)})

    def payload_for(self, submission: InvoiceSubmitted) -> RpaPayload | None:
        invoice, _ = read_invoice(submission.document, self.limits)
        if invoice is None or self.purchase_order is None:
            return None
        return _handed_over_as(build_rpa_payload(Case(invoice, self.purchase_order, self._context({}))), submission)

    def could_not_judge(self, submission: InvoiceSubmitted, reason: str, dead_lettered: bool = True) -> Verdict:
        return could_not_judge(submission, reason, self._context({}), dead_lettered)


def _handed_over_as(payload: RpaPayload | None, submission: InvoiceSubmitted) -> RpaPayload | None:
    if payload is None or payload.is_for(submission.invoice_id, submission.version, submission.po_number):
        return payload
    return payload.model_copy(update={"invoice_id": submission.invoice_id, "invoice_version": submission.version,
                                      "po_number": submission.po_number})

