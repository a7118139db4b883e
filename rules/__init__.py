"""The pure domain: invoices, purchase orders, the rule table and its verdicts."""

from rules.context import EvaluationContext, KnownInvoice
from rules.evaluate import evaluate
from rules.models import Finding, Invoice, PurchaseOrder, Verdict, VerdictStatus
from rules.policy import Policy, Tolerance, load_policy
from rules.table import RULES, RULES_VERSION

__all__ = [
    "RULES",
    "RULES_VERSION",
    "EvaluationContext",
    "Finding",
    "Invoice",
    "KnownInvoice",
    "Policy",
    "PurchaseOrder",
    "Tolerance",
    "Verdict",
    "VerdictStatus",
    "evaluate",
    "load_policy",
]
