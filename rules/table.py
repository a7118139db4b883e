"""The rule table (DESIGN §4): every check, the status it forces, and what it needs to run.

This is the one place that says which rules exist. `RULES_VERSION` is stamped on every verdict;
bump it whenever a rule or this table changes, so a replay can tell old decisions from new.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rules import checks
from rules.case import Case
from rules.models import Finding, VerdictStatus
from rules.policy import Policy

RULES_VERSION = "2026.12.14"
_EXACT_MATCHING = Policy()
CORRECTED_INVOICE = "the vendor must send a corrected invoice"


def rules_version(policy: Policy) -> str:
    """`RULES_VERSION`, plus the tolerances' digest when they are not the default exact matching:
    a verdict names everything that judged it, and a change of tolerances is a change of rules."""
    return RULES_VERSION if policy == _EXACT_MATCHING else f"{RULES_VERSION}+tol.{policy.digest()}"


@dataclass(frozen=True, slots=True)
class Rule:
    code: str
    forces: VerdictStatus
    check: Callable[[Case], list[Finding]]
    needs_invoice: bool = True
    needs_po: bool = True
    releasable: bool = True  # whether a clerk may release its hold
    cleared_by: str = CORRECTED_INVOICE  # who clears a hold a clerk may not release, as the API and dashboard say


_PNF, _BAD, _REVIEW = VerdictStatus.PO_NOT_FOUND, VerdictStatus.BAD_INVOICE, VerdictStatus.MANUAL_REVIEW

RULES: tuple[Rule, ...] = (
    Rule("PO_NOT_FOUND", _PNF, checks.po_not_found, needs_invoice=False, needs_po=False),
    Rule("INVALID_INVOICE", _BAD, checks.invalid_invoice, needs_invoice=False, needs_po=False, releasable=False),
    Rule("DUPLICATE_INVOICE", _BAD, checks.duplicate_invoice, needs_po=False, releasable=False),
    Rule("POSSIBLE_DUPLICATE", _REVIEW, checks.possible_duplicate, needs_po=False),
    Rule("VENDOR_MISMATCH", _BAD, checks.vendor_mismatch, releasable=False),
    Rule("CURRENCY_MISMATCH", _BAD, checks.currency_mismatch, releasable=False),
    # Not a clerk's to release: the RPA bot cannot be given a line on no PO line, and every release of
    # it, answered 202, was refused at the invoice's turn at the bot (2026.12.13).
    Rule("PART_NOT_ON_PO", _BAD, checks.part_not_on_po, releasable=False,
         cleared_by="the vendor must correct the invoice, or the buyer add the part to the PO in Sampro (which judges "
                    "the invoice again by itself)"),
    Rule("LINE_AMOUNT_MISMATCH", _BAD, checks.line_amount_mismatch, needs_po=False),
    Rule("TOTAL_MISMATCH", _BAD, checks.total_mismatch, needs_po=False),
    Rule("PO_NOT_OPEN", _REVIEW, checks.po_not_open),
    Rule("PRICE_MISMATCH", _REVIEW, checks.price_mismatch),
    Rule("QUANTITY_EXCEEDS_OPEN", _REVIEW, checks.quantity_exceeds_open),
    Rule("QUANTITY_EXCEEDS_RECEIVED", _REVIEW, checks.quantity_exceeds_received),
    Rule("TAX_MISMATCH", _REVIEW, checks.tax_mismatch),
    Rule("CHARGE_NOT_ALLOWED", _REVIEW, checks.charge_not_allowed),
    Rule("INVOICE_DATE_INVALID", _REVIEW, checks.invoice_date_invalid),
)

STATUS_OF: dict[str, VerdictStatus] = {rule.code: rule.forces for rule in RULES}

_RUNNABLE = {
    (has_invoice, has_po): tuple(rule for rule in RULES
                                 if (has_invoice or not rule.needs_invoice) and (has_po or not rule.needs_po))
    for has_invoice in (False, True) for has_po in (False, True)
}


def runnable(case: Case) -> tuple[Rule, ...]:
    """The rules that can run on the case, in table order: those whose inputs it has."""
    return _RUNNABLE[case.invoice is not None, case.po is not None]
