"""Judging a recorded verdict again: the invoice, PO snapshot and context it carries, under the
rules and tolerances in force now. Pure, so an audit never depends on today's Sampro."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from rules.context import EvaluationContext, KnownInvoice
from rules.evaluate import case_of, findings
from rules.models import Finding, PurchaseOrder, Verdict, VerdictStatus
from rules.policy import Policy
from rules.table import rules_version


@dataclass(frozen=True, slots=True)
class Judgement:
    """What the rules say now: the part of a verdict that a replay compares (no payload)."""

    status: VerdictStatus
    reasons: list[Finding]
    rules_version: str


def judge_again(recorded: Verdict, policy: Policy) -> Judgement | None:
    """None when the verdict predates its audit record and cannot be judged again."""
    audit = recorded.audit
    if audit is None:
        return None
    history = [KnownInvoice(e.invoice_id, e.vendor_id, e.invoice_number, e.status, e.total_amount, e.invoice_date)
               for e in audit.earlier_invoices]
    in_flight = _by_po_line(audit.in_flight, recorded.po_snapshot)
    context = EvaluationContext(history=history, in_flight=in_flight, policy=policy, now=recorded.evaluated_at)
    status, reasons = findings(case_of(audit.invoice, recorded.po_snapshot, context))
    return Judgement(status, reasons, rules_version(policy))


def _by_po_line(in_flight: dict[str, Decimal], po: PurchaseOrder | None) -> dict[str, Decimal]:
    """Audits written before rules 2026.12.1 counted quantities at the RPA bot by part, not by PO
    line: such a quantity is put on its part's first PO line, as those rules pooled it."""
    if po is None or all(key.isdigit() for key in in_flight):
        return dict(in_flight)
    first_line: dict[str, str] = {}
    for line in sorted(po.lines, key=lambda line: line.line_no):
        first_line.setdefault(line.part_number, str(line.line_no))
    by_line: dict[str, Decimal] = {}
    for key, quantity in in_flight.items():
        line_no = key if key.isdigit() else first_line.get(key)
        if line_no is not None:
            by_line[line_no] = by_line.get(line_no, Decimal(0)) + quantity
    return by_line


@dataclass(frozen=True, slots=True)
class Comparison:
    """Recorded against re-derived: the status and the findings, by what a person would act on."""

    recorded_status: str
    rederived_status: str | None
    recorded_codes: tuple[str, ...]
    rederived_codes: tuple[str, ...]
    findings_changed: bool

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
    return Comparison(
        recorded_status=recorded.status.value,
        rederived_status=rederived.status.value if rederived else None,
        recorded_codes=tuple(f.code for f in recorded.reasons),
        rederived_codes=tuple(f.code for f in rederived.reasons) if rederived else (),
        findings_changed=rederived is not None and (
            [_finding_key(f) for f in recorded.reasons] != [_finding_key(f) for f in rederived.reasons]),
    )
