"""Holds: each finding of a held invoice is a hold of its own, named by its code, line and field.

A clerk releases holds one by one (the rule table says which may be released at all); the
invoice goes on only when none is left, as AP systems keep one hold per reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from rules.models import Finding
from rules.table import RULES

RELEASABLE_CODES = frozenset(rule.code for rule in RULES if rule.releasable)
# What a release of an RPA failure names: the failure, which has no finding. A command naming none
# releases every hold the invoice has when it comes; after a failure, that was every hold of the
# judgement made at its next turn at the bot (`rules.po_ledger`), which no one had seen.
RPA_FAILURE = "RPA_FAILED::"


@dataclass(frozen=True, slots=True)
class Hold:
    id: str  # "PRICE_MISMATCH:1:unit_price": code, invoice line, field
    finding: Finding

    @property
    def releasable(self) -> bool:
        return self.finding.code in RELEASABLE_CODES


def hold_id(finding: Finding) -> str:
    return f"{finding.code}:{'' if finding.line_no is None else finding.line_no}:{finding.field or ''}"


def holds_of(findings: Iterable[Finding]) -> list[Hold]:
    """One hold per finding, in the order of the findings (the same finding twice is one). Two
    findings of one code, line and field (an invoice line spread over two PO lines, each short of
    its receipt) are two holds, the second named with `#2`: as one, releasing the hold the clerk was
    shown released the other PO line's shortfall unseen."""
    holds: dict[str, Hold] = {}
    for finding in findings:
        name, count = hold_id(finding), 1
        while name in holds and holds[name].finding != finding:
            count += 1
            name = f"{hold_id(finding)}#{count}"
        holds.setdefault(name, Hold(name, finding))
    return list(holds.values())
