"""The table is complete: every rule code of DESIGN §4 is there, and each one is exercised."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rules import RULES

DESIGN_CODES = [
    "PO_NOT_FOUND", "INVALID_INVOICE", "DUPLICATE_INVOICE", "POSSIBLE_DUPLICATE", "VENDOR_MISMATCH",
    "CURRENCY_MISMATCH",
    "PART_NOT_ON_PO", "LINE_AMOUNT_MISMATCH", "TOTAL_MISMATCH", "PO_NOT_OPEN", "PRICE_MISMATCH",
    "QUANTITY_EXCEEDS_OPEN", "QUANTITY_EXCEEDS_RECEIVED", "TAX_MISMATCH", "CHARGE_NOT_ALLOWED",
    "INVOICE_DATE_INVALID",
]


def test_the_table_has_exactly_the_designed_codes_with_their_statuses():
    assert [rule.code for rule in RULES] == DESIGN_CODES
    bad = {"INVALID_INVOICE", "DUPLICATE_INVOICE", "VENDOR_MISMATCH", "CURRENCY_MISMATCH", "PART_NOT_ON_PO",
           "LINE_AMOUNT_MISMATCH", "TOTAL_MISMATCH"}
    for rule in RULES:
        expected = ("po_not_found" if rule.code == "PO_NOT_FOUND"
                    else "bad_invoice" if rule.code in bad else "manual_review")
        assert rule.forces.value == expected, rule.code


def test_a_clerk_may_release_every_hold_but_those_the_vendor_or_the_buyer_must_clear():
    """PART_NOT_ON_PO was a clerk's to release, and the bot could never be given the line on no PO line."""
    assert [rule.code for rule in RULES if not rule.releasable] == [
        "INVALID_INVOICE", "DUPLICATE_INVOICE", "VENDOR_MISMATCH", "CURRENCY_MISMATCH", "PART_NOT_ON_PO"]


@pytest.mark.parametrize("code", DESIGN_CODES)
def test_removing_a_rule_makes_the_rule_tests_fail(code):
    """Mutation check: drop one rule from the table and run the rule tests in a fresh interpreter."""
    script = (
        "import sys, pytest, rules\n"
        "table = sys.modules['rules.table']\n"
        f"table._RUNNABLE = {{shape: tuple(r for r in rules if r.code != {code!r})\n"
        "                    for shape, rules in table._RUNNABLE.items()}\n"
        "sys.exit(pytest.main(['-q', '-x', '-p', 'no:cacheprovider', '-p', 'no:randomly', "
        "'tests/unit/rules/test_rules.py', 'tests/unit/rules/test_matching.py']))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    # "failed" from pytest itself: a script that broke before the tests ran proves nothing.
    assert result.returncode == 1 and " failed" in result.stdout, (
        f"no rule test noticed that {code} was removed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
