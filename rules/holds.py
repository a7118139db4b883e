"""Holds: each finding of a held invoice is a hold of its own, named by its code, line and field.

A clerk releases holds one by one (the rule table says which may be released at all); the
invoice goes on only when none is left, as AP systems keep one hold per reason.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from rules.models import Finding
from rules.table import CORRECTED_INVOICE, RULES

RELEASABLE_CODES = frozenset(rule.code for rule in RULES if rule.releasable)
_CLEARED_BY = {rule.code: rule.cleared_by for rule in RULES}
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
        """As this rule table says, whatever rules judged it: a verdict kept from older rules is not
        offered or released where these would refuse it."""
        return self.finding.code in RELEASABLE_CODES

    @property
    def cleared_by(self) -> str | None:
        """Who clears it, when a clerk may not release it."""
        return None if self.releasable else _CLEARED_BY.get(self.finding.code, CORRECTED_INVOICE)


# Findings each about one PO line, named by the first invoice line placed on it: their hold names the
# PO line too, read off the message the rule wrote ("PO line 2 (part ...)", `rules.checks`), so that
# a name never moves to another PO line's finding (a receipt for PO line 1 left PO line 2's short,
# under the name the clerk had released for PO line 1's, and it went to the bot).
PER_PO_LINE = frozenset({"QUANTITY_EXCEEDS_OPEN", "QUANTITY_EXCEEDS_RECEIVED"})
_PO_LINE = re.compile(r"PO line (\d+) ")


def hold_id(finding: Finding) -> str:
    name = f"{finding.code}:{'' if finding.line_no is None else finding.line_no}:{finding.field or ''}"
    if finding.code in PER_PO_LINE and (po_line := _PO_LINE.match(finding.message)) is not None:
        return f"{name}#po{po_line.group(1)}"
    return name


def holds_of(findings: Iterable[Finding]) -> list[Hold]:
    """One hold per finding, in the order of the findings (the same finding twice is one). Findings
    that `hold_id` gives one name (two problems of one field of a broken invoice, two earlier
    invoices of the same total) are told apart by a digest of each, all of them: as one hold,
    releasing the one the clerk was shown released the other unseen; told apart by place, a name
    moved to the other once the first was gone. The digest is of what the finding compares
    (expected, actual), and of its message only where that alone tells two apart: a possible
    duplicate's message says where the earlier invoice is, and each time that one moved on, the
    names changed, and the holds a clerk had released came back at the invoice's turn at the bot."""
    unique = list(dict.fromkeys(findings))
    shared = Counter(hold_id(finding) for finding in unique)
    compared = Counter((hold_id(finding), finding.expected, finding.actual) for finding in unique)
    holds = []
    for finding in unique:
        name = hold_id(finding)
        if shared[name] > 1:
            told_by = ([finding.expected, finding.actual] if compared[name, finding.expected, finding.actual] == 1
                       else finding.model_dump_json())
            name = f"{name}#{hashlib.sha256(json.dumps(told_by).encode()).hexdigest()[:8]}"
        holds.append(Hold(name, finding))
    return holds
