"""Verdicts pinned byte for byte: a speed-up of `evaluate` must not change one character of any
finding, payload or audit. Three hundred seeded invoices cover every rule, the payload's split
lines and rounding, tolerances, identifiers, duplicates and broken documents; their
`model_dump_json` digests were recorded before the hot path was optimised.

Regenerate only for a deliberate change of rules: `python -m tests.unit.rules.test_golden_verdicts`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
from collections.abc import Iterator
from decimal import Decimal as D
from pathlib import Path
from typing import Any

from rules import EvaluationContext, Invoice, KnownInvoice, PurchaseOrder, evaluate
from rules.judge import RulesJudge
from rules.lifecycle import InvoiceSubmitted
from rules.models import Verdict
from rules.policy import parse_policy
from tests.unit.rules.builders import INVOICE, NOW, PO, TODAY

GOLDEN = Path(__file__).with_name("golden_verdicts.json")
PARTS = ["AC-100", "ac-100 ", "FL-200", "ZZ-9", "Cafe\u0301-1", "Caf\u00e9-1"]
PRICES = ["15.50", "15.51", "4.25", "0.333", "1200", "9.999"]
POLICIES = [
    parse_policy({}),
    parse_policy({"default": {"price_pct": "1", "quantity_abs": "2", "total_abs": "0.02", "tax_abs": "0.01"}}),
    parse_policy({"default": {"three_way_match": True, "received_pct": "10", "price_lower_abs": "0.05"},
                  "vendors": {"v100": {"price_abs": "0.10"}}, "parts": {"fl-200": {"quantity_pct": "20"}},
                  "identifiers": {"case_sensitive": ["part_number"]}}),
]


def _money(value: D, currency: str) -> D:
    return value.quantize(D("1") if currency.upper() == "JPY" else D("0.001") if currency.upper() == "BHD"
                          else D("0.01"))


def _case(rng: random.Random) -> tuple[Any, dict[str, Any] | None, EvaluationContext]:
    currency = rng.choice(["USD", "USD", "USD", "usd", "JPY", "BHD"])
    po_lines = []
    for line_no in rng.sample(range(1, 8), rng.randint(1, 5)):
        received = rng.choice([None, "0", "3", "50"])
        po_lines.append({"line_no": line_no, "part_number": rng.choice(PARTS[:4] + PARTS[4:5]),
                         "unit_price": rng.choice(PRICES), "quantity_ordered": rng.choice(["1", "5", "10", "3.5"]),
                         "quantity_received": received, "quantity_invoiced": rng.choice(["0", "0", "1", "4"])})
    lines = []
    for line_no in range(1, rng.randint(1, 6) + 1):
        source = rng.choice(po_lines) if rng.random() < 0.8 else None
        part = source["part_number"] if source else rng.choice(PARTS)
        if source and rng.random() < 0.3:
            part = part.lower().strip() + rng.choice(["", " "])
        price = D(source["unit_price"]) if source and rng.random() < 0.8 else D(rng.choice(PRICES))
        quantity = D(rng.choice(["1", "2", "3", "6", "12", "0.5"]))
        line: dict[str, Any] = {"line_no": line_no, "part_number": part, "quantity": str(quantity),
                                "unit_price": str(price)}
        amount = _money(quantity * price, currency)
        roll = rng.random()
        if roll < 0.7:
            line["amount"] = str(amount)
        elif roll < 0.8:
            line["amount"] = str(amount + D("0.01"))
        if rng.random() < 0.5:
            line["description"] = rng.choice(["Compressor", "Filter\tset", None])
        lines.append(line)
    subtotal = sum((D(line.get("amount") or _money(D(line["quantity"]) * D(line["unit_price"]), currency))
                    for line in lines), D(0))
    tax_rate = rng.choice([None, "0.08", "0.0825", "0"])
    tax = _money(subtotal * D(tax_rate), currency) if tax_rate else D(rng.choice(["0", "3.50"]))
    if rng.random() < 0.15:
        tax += D("0.01")
    charges = [{"kind": kind, "amount": rng.choice(["10.00", "2.5"])}
               for kind in rng.sample(["freight", "Freight ", "handling"], rng.randint(0, 2))]
    total = subtotal + tax + sum((D(c["amount"]) for c in charges), D(0))
    total += D(rng.choice(["0", "0", "0", "0", "0.01", "0.02", "1"]))
    number = rng.choice(["INV-778", " inv-0778", "INV-779", "N-1"])
    document: dict[str, Any] = {
        "invoice_id": rng.choice(["MP-1001", "MP-1002"]), "version": rng.choice([1, 2]),
        "vendor_id": rng.choice(["V100", "V100", "v100 ", "V200"]), "invoice_number": number,
        "po_number": "PO-5001", "invoice_date": rng.choice(["2026-11-20", "2026-10-01", "2026-12-01"]),
        "currency": currency, "lines": lines, "tax_amount": str(tax), "extra_charges": charges,
        "total_amount": str(total)}
    roll = rng.random()
    if roll < 0.04:
        document.pop(rng.choice(["vendor_id", "lines", "total_amount", "invoice_date"]))
    elif roll < 0.08:
        document["lines"][0]["quantity"] = rng.choice(["0", "-1", "abc", "1.123456", "123456789012345"])
    elif roll < 0.10:
        document["invoice_number"] = rng.choice(["INV\r\n778", "X" * 70])
    po_document = {"po_number": "PO-5001", "vendor_id": rng.choice(["V100", "V100", "V200"]),
                   "status": rng.choice(["open", "open", "open", "closed", "on_hold"]),
                   "currency": rng.choice(["USD", "USD", currency.upper()]),
                   "order_date": "2026-11-01", "tax_rate": tax_rate,
                   "allowed_charges": rng.sample(["freight", "handling"], rng.randint(0, 2)), "lines": po_lines}
    history = [KnownInvoice(rng.choice(["MP-0900", "MP-1001", "MP-0901"]), rng.choice(["V100", "v100", "V200"]),
                            rng.choice(["INV-778", "INV778", "inv-0778", "OTHER-1"]),
                            rng.choice(["ready_to_process", "manual_review", "bad_invoice", "withdrawn", "entered"]),
                            rng.choice([None, total, D("5")]), rng.choice([None, TODAY]))
               for _ in range(rng.randint(0, 3))]
    in_flight = {str(po_lines[0]["line_no"]): D(rng.choice(["1", "4"]))} if rng.random() < 0.3 else {}
    context = EvaluationContext(history=history, in_flight=in_flight, policy=rng.choice(POLICIES), now=NOW,
                                today=TODAY)
    return document, (po_document if rng.random() < 0.93 else None), context


def _clean_case(rng: random.Random) -> tuple[dict[str, Any], dict[str, Any], EvaluationContext]:
    """An invoice keyed from its PO: mostly ready to process, so the payload is pinned too."""
    currency = rng.choice(["USD", "JPY", "BHD"])
    po_lines, lines = [], []
    for line_no in range(1, rng.randint(1, 10) + 1):
        price = D(rng.choice(PRICES)) + D(line_no)
        quantity = D(rng.randint(1, 9))
        po_lines.append({"line_no": line_no, "part_number": f"P-{line_no}", "unit_price": str(price),
                         "quantity_ordered": "10", "quantity_received": rng.choice([None, "10"]),
                         "quantity_invoiced": "0"})
        line = {"line_no": line_no, "part_number": rng.choice([f"P-{line_no}", f" p-{line_no}"]),
                "quantity": str(quantity), "unit_price": str(price), "description": "part"}
        if rng.random() < 0.7:
            line["amount"] = str(_money(quantity * price, currency))
        lines.append(line)
    subtotal = sum((_money(D(line["quantity"]) * D(line["unit_price"]), currency) for line in lines), D(0))
    tax = _money(subtotal * D("0.0825"), currency)
    charges = [{"kind": "freight", "amount": "10.00"}] if rng.random() < 0.5 else []
    total = subtotal + tax + sum((D(c["amount"]) for c in charges), D(0)) + D(rng.choice(["0", "0", "0.01"]))
    document = {"invoice_id": "MP-2000", "version": 3, "vendor_id": "V100", "invoice_number": " INV-2000 ",
                "po_number": "PO-7", "invoice_date": "2026-11-20", "currency": currency, "lines": lines,
                "tax_amount": str(tax), "extra_charges": charges, "total_amount": str(total)}
    po_document = {"po_number": "PO-7", "vendor_id": "V100", "status": "open", "currency": currency,
                   "order_date": "2026-11-01", "tax_rate": "0.0825", "allowed_charges": ["freight"],
                   "lines": po_lines}
    return document, po_document, EvaluationContext(policy=rng.choice(POLICIES), now=NOW, today=TODAY)


def _split(price: D, quantity: D, currency: str) -> dict[str, Any]:
    """One line whose quantity no single PO line has open: the payload spreads it."""
    amount = _money(price * quantity, currency)
    return {**copy.deepcopy(INVOICE), "currency": currency, "tax_amount": "0", "extra_charges": [],
            "lines": [{"line_no": 1, "part_number": "AC-100", "quantity": str(quantity), "unit_price": str(price),
                       "amount": str(amount)}], "total_amount": str(amount)}


def _verdicts() -> Iterator[tuple[str, str]]:
    """(name, verdict JSON) for the reference invoice, the seeded cases, each also as a parsed
    Invoice when it parses, and through the PO agent's `RulesJudge.decide`."""
    reference = EvaluationContext(now=NOW, today=TODAY)
    yield "reference", _json(evaluate(copy.deepcopy(INVOICE), PurchaseOrder.model_validate(PO), reference))
    for price, quantity, currency in (("0.333", "7", "USD"), ("15.50", "8", "USD"), ("0.3335", "9", "BHD"),
                                      ("12.5", "6", "JPY")):
        document = _split(D(price), D(quantity), currency)
        po = PurchaseOrder.model_validate({**PO, "currency": currency, "tax_rate": None, "lines": [
            {"line_no": n, "part_number": "AC-100", "unit_price": price, "quantity_ordered": "3",
             "quantity_invoiced": "0"} for n in (1, 2, 3, 4)]})
        yield f"split-{price}-{currency}", _json(evaluate(document, po, reference))
    rng = random.Random(20261204)
    for index in range(300):
        document, po_document, context = _clean_case(rng) if index % 3 == 0 else _case(rng)
        po = PurchaseOrder.model_validate(po_document) if po_document is not None else None
        yield f"case-{index}", _json(evaluate(copy.deepcopy(document), po, context))
        try:
            parsed = Invoice.model_validate(document)
        except ValueError:
            parsed = None
        if parsed is not None:
            yield f"case-{index}-parsed", _json(evaluate(parsed, po, context))
        if index % 5 == 0:
            judge = RulesJudge(po, context.history, context.policy, NOW)
            submission = InvoiceSubmitted(invoice_id="MP-1001", version=1, po_number="PO-5001",
                                          document=copy.deepcopy(document), received_at=NOW)
            in_flight = dict(context.in_flight)
            yield f"case-{index}-judge", _json(judge.decide(submission, in_flight))
            payload = judge.payload_for(submission)
            yield f"case-{index}-payload", payload.model_dump_json() if payload is not None else "null"


def _json(verdict: Verdict) -> str:
    # judged_after is the PO agent's stamp on a judgement made again for a Sampro change; the
    # rules never set it, and the digests were recorded before the field existed.
    return verdict.model_dump_json(exclude={"judged_after"})


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_every_pinned_verdict_is_byte_identical():
    pinned = json.loads(GOLDEN.read_text(encoding="utf-8"))
    produced = dict(_verdicts())
    assert list(produced) == list(pinned["digests"])
    assert produced["reference"] == pinned["reference"]
    changed = [name for name, text in produced.items() if _digest(text) != pinned["digests"][name]]
    assert not changed, f"{len(changed)} verdicts changed, first {changed[:5]}"


def test_the_pinned_cases_reach_every_status_and_rule():
    texts = [json.loads(text) for name, text in _verdicts() if not name.endswith("-payload")]
    assert {verdict["status"] for verdict in texts} == {"ready_to_process", "manual_review", "bad_invoice",
                                                        "po_not_found"}
    seen = {reason["code"] for verdict in texts for reason in verdict["reasons"]}
    assert len(seen) == 16, sorted(seen)
    assert any(len({line["invoice_line_no"] for line in verdict["rpa_payload"]["lines"]})
               < len(verdict["rpa_payload"]["lines"]) for verdict in texts if verdict["rpa_payload"]), \
        "no payload splits a line over PO lines"


if __name__ == "__main__":
    verdicts = dict(_verdicts())
    GOLDEN.write_text(json.dumps({"reference": verdicts["reference"],
                                  "digests": {name: _digest(text) for name, text in verdicts.items()}},
                                 indent=0) + "\n", encoding="utf-8")
    print(f"wrote {len(verdicts)} digests to {GOLDEN}")
