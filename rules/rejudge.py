"""Judging a recorded verdict again: the invoice, PO snapshot and context it carries, under the
rules and tolerances in force now. Pure, so an audit never depends on today's Sampro."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal

from rules.checks import as_found_now
from rules.context import EvaluationContext, KnownInvoice
from rules.evaluate import case_of, findings
from rules.limits import Limits
from rules.models import Finding, PurchaseOrder, PurchaseOrderLine, Verdict, VerdictStatus
from rules.policy import Policy
from rules.table import rules_version


@dataclass(frozen=True, slots=True)
class Judgement:
    """What the rules say now: the part of a verdict that a replay compares (no payload)."""

    status: VerdictStatus
    reasons: list[Finding]
    rules_version: str
    # False: the audit kept only the earlier invoices of the very same number (rules before
    # 2026.12.1), so what the duplicate checks find beyond it (a near number, the same total, the
    # number in other case) cannot be found again, and no change of theirs can show.
    duplicates_judged: bool = True


def judge_again(recorded: Verdict, policy: Policy, limits: Limits = Limits()) -> Judgement | None:
    """None when the verdict predates its audit record and cannot be judged again. `limits`: the
    worker's (INVOICE_AUTOMATION_MAX_INVOICE_LINES), in neither the audit record nor `rules_version`."""
    audit = recorded.audit
    if audit is None:
        return None
    history = [KnownInvoice(e.invoice_id, e.vendor_id, e.invoice_number, e.status, e.total_amount, e.invoice_date)
               for e in audit.earlier_invoices]
    in_flight = _by_po_line(audit.in_flight, recorded.po_snapshot, recorded.rules_version)
    context = EvaluationContext(history=history, in_flight=in_flight, policy=policy, now=recorded.evaluated_at,
                                limits=limits)
    status, reasons = findings(case_of(audit.invoice, recorded.po_snapshot, context))
    return Judgement(status, reasons, rules_version(policy),
                     duplicates_judged=not _before(recorded.rules_version, DUPLICATES_BEYOND_THE_NUMBER_SINCE))


# The first rules whose audits count quantities at the RPA bot by PO line; those before, by part.
IN_FLIGHT_BY_LINE_SINCE = (2026, 12, 1)
# The first rules whose audits keep, beyond the same number, the earlier invoices the duplicate checks
# could find the invoice a duplicate of (of its total, those dated within its vendor's window); those
# before kept only the same vendor's same number (trimmed, not case-folded).
DUPLICATES_BEYOND_THE_NUMBER_SINCE = (2026, 12, 1)


def _by_po_line(in_flight: dict[str, Decimal], po: PurchaseOrder | None, recorded_by: str) -> dict[str, Decimal]:
    """Audits written before rules 2026.12.1 counted quantities at the RPA bot by part, not by PO
    line: such a quantity fills its part's PO lines in line order up to what each has open (ordered
    less invoiced in Sampro), the rest on the last, as today's rules place what goes to the bot.
    All on the first line, 7 at the bot of a part on two lines of 5 left the second its 5, and an
    invoice for 4 the old rules held (3 open of the part) read as ready. Told by the rules that
    wrote it, not by the key: part 100200 is no PO line 100200."""
    if po is None or not _before(recorded_by, IN_FLIGHT_BY_LINE_SINCE):
        return dict(in_flight)
    lines_of: dict[str, list[PurchaseOrderLine]] = {}
    for line in sorted(po.lines, key=lambda line: line.line_no):
        lines_of.setdefault(line.part_number, []).append(line)
    by_line: dict[str, Decimal] = {}
    for part, quantity in in_flight.items():
        if part not in lines_of:
            continue
        *before_last, last = lines_of[part]
        for line in before_last:
            placed = min(quantity, max(Decimal(0), line.quantity_ordered - line.quantity_invoiced))
            if placed:
                by_line[str(line.line_no)] = placed
                quantity -= placed
        if quantity:
            by_line[str(last.line_no)] = quantity
    return by_line


def _before(rules: str, version: tuple[int, ...]) -> bool:
    """Whether `rules` (2026.11.3, 2026.12.1+tol.ab12) is a version before `version`."""
    parts = re.match(r"(\d+)\.(\d+)\.(\d+)", rules)
    return parts is not None and tuple(int(part) for part in parts.groups()) < version


@dataclass(frozen=True, slots=True)
class Comparison:
    """Recorded against re-derived: the status and the findings, by what a person would act on."""

    recorded_status: str
    rederived_status: str | None
    recorded_codes: tuple[str, ...]
    rederived_codes: tuple[str, ...]
    findings_changed: bool
    duplicates_judged: bool  # see Judgement; False too when nothing was judged again

    @property
    def changed(self) -> bool:
        return self.rederived_status is not None and (
            self.recorded_status != self.rederived_status or self.findings_changed)

    @property
    def added_codes(self) -> tuple[str, ...]:
        return tuple(code for code in dict.fromkeys(self.rederived_codes) if code not in self.recorded_codes)

    @property
    def removed_codes(self) -> tuple[str, ...]:
        return tuple(code for code in dict.fromkeys(self.recorded_codes) if code not in self.rederived_codes)


def _finding_key(finding: Finding) -> tuple[object, ...]:
    return finding.code, finding.line_no, finding.field, finding.expected, finding.actual


def compare(recorded: Verdict, rederived: Judgement | None) -> Comparison:
    """The recorded findings are read as these rules word them (`as_found_now`), as the PO ledger
    reads them before it takes a verdict for new: compared as written, a future date worded before
    rules 2026.12.12, or a quantity written "7.00" before 2026.12.14, read as changed where the
    pipeline found it alike and kept the holds AP had released, and a replay gating a change of
    rules on --fail-on-change could never pass."""
    return Comparison(
        recorded_status=recorded.status.value,
        rederived_status=rederived.status.value if rederived else None,
        recorded_codes=tuple(f.code for f in recorded.reasons),
        rederived_codes=tuple(f.code for f in rederived.reasons) if rederived else (),
        # In any order: rules that only check in another order change nothing a person acts on.
        findings_changed=rederived is not None and (
            Counter(_finding_key(as_found_now(finding)) for finding in recorded.reasons)
            != Counter(map(_finding_key, rederived.reasons))),
        duplicates_judged=rederived is not None and rederived.duplicates_judged,
    )
