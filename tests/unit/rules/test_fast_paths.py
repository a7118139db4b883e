"""The hot path's shortcuts answer exactly as the long way does: a shortcut may only say "fine"
where the full check finds nothing."""

from __future__ import annotations

import unicodedata
from decimal import Decimal

from hypothesis import example, given, settings
from hypothesis import strategies as st

from rules.limits import Limits, control_character, decimal_problem, plainly_storable

LIMITS = (Limits(), Limits(max_integer_digits=3, max_fraction_digits=0), Limits(max_integer_digits=0))

decimals = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True),
    st.decimals(min_value=Decimal("-1e16"), max_value=Decimal("1e16"), places=6),
    st.builds(lambda digits, exponent: Decimal(f"{digits}E{exponent}"), st.integers(-10**20, 10**20),
              st.integers(-30, 30)),
)


@given(st.lists(decimals, max_size=5))
@settings(max_examples=1000)
@example([Decimal("0E+20"), Decimal("100.00000"), Decimal("-0.00001")])
@example([Decimal("99999999999999.99990"), Decimal("1E+13"), Decimal("1.0E+14")])
def test_plainly_storable_only_where_no_number_has_a_problem(numbers):
    assert plainly_storable([Decimal("15.50"), Decimal("-3"), Decimal("0.1250")], Limits())
    for limits in LIMITS:
        if plainly_storable(numbers, limits):
            assert all(decimal_problem(number, limits) is None for number in numbers)


@given(st.text(max_size=12))
@example("a\u2028b")
@example("tab\there")
@example("\x85")
def test_control_character_is_the_same_as_the_scan(text):
    for allow_layout in (False, True):
        scanned = next((f"U+{ord(c):04X}" for c in text
                        if not (allow_layout and c in "\t\n\r")
                        and (unicodedata.category(c) == "Cc" or c in "\u2028\u2029")), None)
        assert control_character(text, allow_layout) == scanned


def test_a_trusted_model_is_the_validated_one():
    """`trusted` builds what validation would: same values, order, fields set, JSON, equality and hash."""
    from datetime import UTC, date, datetime

    from rules.models import ExtraCharge, Finding, RpaPayload, RpaPayloadLine, Severity, Verdict, VerdictStatus, trusted

    finding = {"code": "TAX_MISMATCH", "severity": Severity.WARNING, "line_no": None, "field": "tax_amount",
               "expected": "2.48", "actual": "2.50", "message": "Tax 2.50 is not 0.08 x line amounts = 2.48."}
    line = {"invoice_line_no": 1, "po_line_no": 2, "part_number": "AC-100", "description": None,
            "quantity": Decimal("2"), "unit_price": Decimal("15.50"), "amount": Decimal("31.00")}
    payload = {"invoice_id": "MP-1", "invoice_version": 2, "vendor_id": "V1", "invoice_number": "N-1",
               "invoice_date": date(2026, 11, 20), "po_number": "PO-1", "currency": "USD",
               "lines": [trusted(RpaPayloadLine, dict(line))], "tax_amount": Decimal("0"),
               "extra_charges": [ExtraCharge(kind="freight", amount=Decimal("1.5"))],
               "total_amount": Decimal("32.50"), "total_difference": None}
    verdict = {"invoice_id": "MP-1", "invoice_version": 2, "po_number": "PO-1", "status": VerdictStatus.MANUAL_REVIEW,
               "http_status": 400, "reasons": [trusted(Finding, dict(finding))],
               "rpa_payload": trusted(RpaPayload, dict(payload)), "rules_version": "2026.12.1", "po_snapshot": None,
               "evaluated_at": datetime(2026, 11, 25, tzinfo=UTC), "vendor_id": "V1", "invoice_number": "N-1",
               "audit": None}
    without_audit = {name: value for name, value in verdict.items() if name != "audit"}
    for model, values in ((Finding, finding), (RpaPayloadLine, line), (RpaPayload, payload), (Verdict, verdict),
                          (Verdict, without_audit)):
        fast, validated = trusted(model, dict(values)), model.model_validate(dict(values))
        assert fast == validated and repr(fast) == repr(validated)
        if model in (Finding, RpaPayloadLine):  # the others hold lists: unhashable either way
            assert hash(fast) == hash(validated)
        assert fast.model_dump_json() == validated.model_dump_json()
        assert fast.model_fields_set == validated.model_fields_set and list(fast.__dict__) == list(validated.__dict__)
        assert fast.model_copy(update={"invoice_id": "X"} if "invoice_id" in values else {}).model_dump_json()


def test_the_rules_name_every_field_in_the_models_order():
    """The call sites of `trusted`: what they build is laid out as validation lays it out."""
    from rules.models import Verdict
    from tests.unit.rules.builders import PRICE_OFF, invoice, judge

    for verdict in (judge(invoice()), judge(PRICE_OFF), judge(invoice(lines=[]))):
        models = [verdict, *verdict.reasons]
        if verdict.rpa_payload is not None:
            models += [verdict.rpa_payload, *verdict.rpa_payload.lines]
        for model in models:
            assert list(model.__dict__) == list(type(model).model_fields), type(model).__name__
        assert verdict == Verdict.model_validate(verdict.model_dump())
