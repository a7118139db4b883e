"""Properties that hold for any invoice, not just the examples."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from rules import EvaluationContext, PurchaseOrder, evaluate
from rules.money import round_money
from tests.unit.rules.builders import NOW, TODAY

CONTEXT = EvaluationContext(now=NOW, today=TODAY)

money = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("9999.99"), places=2)
quantity = st.integers(min_value=1, max_value=500).map(Decimal)
rate = st.sampled_from([None, Decimal("0"), Decimal("0.05"), Decimal("0.0825"), Decimal("0.2")])


@st.composite
def po_and_matching_invoice(draw):
    n = draw(st.integers(min_value=1, max_value=10))
    po_lines, inv_lines = [], []
    for i in range(1, n + 1):
        price, ordered = draw(money), draw(quantity)
        invoiced_before = draw(st.integers(min_value=0, max_value=int(ordered) - 1)).__index__()
        po_lines.append({"line_no": i, "part_number": f"P-{i}", "unit_price": price, "quantity_ordered": ordered,
                         "quantity_received": None, "quantity_invoiced": Decimal(invoiced_before)})
        qty = Decimal(draw(st.integers(min_value=1, max_value=int(ordered) - invoiced_before)))
        inv_lines.append({"line_no": i, "part_number": f"P-{i}", "quantity": qty, "unit_price": price,
                          "amount": round_money(qty * price, "USD")})
    tax_rate = draw(rate)
    subtotal = sum(line["amount"] for line in inv_lines)
    tax = round_money(tax_rate * subtotal, "USD") if tax_rate is not None else draw(money)
    po = PurchaseOrder.model_validate({"po_number": "PO-1", "vendor_id": "V1", "status": "open", "currency": "USD",
                                       "order_date": "2026-01-01", "tax_rate": tax_rate, "allowed_charges": [],
                                       "lines": po_lines})
    invoice = {"invoice_id": "MP-1", "version": 1, "vendor_id": "V1", "invoice_number": "N-1", "po_number": "PO-1",
               "invoice_date": "2026-06-01", "currency": "USD", "lines": inv_lines, "tax_amount": tax,
               "total_amount": subtotal + tax}
    return po, invoice


@given(po_and_matching_invoice())
@settings(max_examples=200)
def test_an_invoice_built_from_open_po_lines_is_ready(case):
    po, invoice = case
    verdict = evaluate(invoice, po, CONTEXT)
    assert verdict.status.value == "ready_to_process", verdict.reasons
    assert len(verdict.rpa_payload.lines) == len(invoice["lines"])


@given(po_and_matching_invoice(), st.data())
@settings(max_examples=200)
def test_changing_one_unit_price_gives_price_mismatch(case, data):
    po, invoice = case
    index = data.draw(st.integers(min_value=0, max_value=len(invoice["lines"]) - 1))
    delta = data.draw(st.sampled_from([Decimal("0.01"), Decimal("-0.01"), Decimal("1.00")]))
    line = invoice["lines"][index]
    if line["unit_price"] + delta < 0:
        delta = -delta
    line["unit_price"] += delta
    verdict = evaluate(invoice, po, CONTEXT)
    assert any(r.code == "PRICE_MISMATCH" and r.line_no == line["line_no"] for r in verdict.reasons)


json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=12),
    st.decimals(allow_nan=False, allow_infinity=False), st.sampled_from(["NaN", "Infinity", "-0", "1e999", ""]),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=20,
)
invoice_keys = st.sampled_from(["invoice_id", "version", "vendor_id", "invoice_number", "po_number", "invoice_date",
                                "currency", "lines", "tax_amount", "extra_charges", "total_amount"])
invoice_like = st.dictionaries(invoice_keys, json_values, max_size=11)


@given(st.one_of(json_values, invoice_like))
@settings(max_examples=400)
def test_evaluate_never_raises_on_json_shaped_input(raw):
    for po in (None, PurchaseOrder.model_validate({"po_number": "PO-1", "vendor_id": "V1", "status": "open",
                                                   "currency": "USD", "order_date": "2026-01-01"})):
        verdict = evaluate(raw, po, CONTEXT)
        assert verdict.status.value in {"ready_to_process", "manual_review", "bad_invoice", "po_not_found"}
