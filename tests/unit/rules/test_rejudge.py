"""A recorded verdict judged again: the same under the same rules, different only where the rules differ."""

from __future__ import annotations

from decimal import Decimal

from rules import KnownInvoice
from rules.policy import Policy, Tolerance
from rules.rejudge import compare, judge_again
from tests.unit.rules.builders import PRICE_OFF, codes, invoice, judge

LENIENT = Policy(default=Tolerance(price_abs=Decimal("0.10")))


def test_the_same_rules_give_the_same_verdict_from_the_audit_record_alone():
    recorded = judge(PRICE_OFF, in_flight={"1": Decimal("4")},
                     history=(KnownInvoice("MP-0001", "V100", "INV-778", "entered"),))
    again = judge_again(recorded, Policy())
    assert (again.status, again.reasons) == (recorded.status, recorded.reasons)
    assert codes(again) == ["DUPLICATE_INVOICE", "PRICE_MISMATCH", "QUANTITY_EXCEEDS_OPEN"]
    assert not compare(recorded, again).changed


def test_other_tolerances_change_only_what_they_cover():
    recorded = judge(PRICE_OFF)
    again = judge_again(recorded, LENIENT)
    comparison = compare(recorded, again)
    assert (recorded.status.value, again.status.value) == ("manual_review", "ready_to_process")
    assert comparison.changed and comparison.removed_codes == ("PRICE_MISMATCH",) and comparison.added_codes == ()
    assert again.rules_version.startswith(f"{recorded.rules_version}+tol.")


def test_a_verdict_without_its_audit_record_cannot_be_judged_again():
    recorded = judge(invoice()).model_copy(update={"audit": None})
    assert judge_again(recorded, Policy()) is None
    assert not compare(recorded, None).changed
