"""A ready invoice and its PO as plain JSON-shaped dicts; tests change one thing at a time."""

from __future__ import annotations

import copy
import json
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from rules import EvaluationContext, KnownInvoice, PurchaseOrder, Verdict, evaluate
from rules.policy import Policy  # frozen: safe as a default (the ruff config names rules.policy.Policy)

TODAY = date(2026, 11, 25)
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

INVOICE: dict[str, Any] = json.loads(
    """{"invoice_id": "MP-1001", "version": 1, "vendor_id": "V100", "invoice_number": "INV-778",
    "po_number": "PO-5001", "invoice_date": "2026-11-20", "currency": "USD",
    "lines": [{"line_no": 1, "part_number": "AC-100", "description": "Compressor",
               "quantity": "2", "unit_price": "15.50", "amount": "31.00"},
              {"line_no": 2, "part_number": "FL-200", "description": "Filter",
               "quantity": "3", "unit_price": "4.25", "amount": "12.75"}],
    "tax_amount": "3.50", "extra_charges": [{"kind": "freight", "amount": "10.00"}],
    "total_amount": "57.25"}""",
    parse_float=Decimal,
)

PO: dict[str, Any] = json.loads(
    """{"po_number": "PO-5001", "vendor_id": "V100", "status": "open", "currency": "USD",
    "order_date": "2026-11-01", "tax_rate": "0.08", "allowed_charges": ["freight"],
    "lines": [{"line_no": 1, "part_number": "AC-100", "unit_price": "15.50",
               "quantity_ordered": "5", "quantity_received": "5", "quantity_invoiced": "0"},
              {"line_no": 2, "part_number": "FL-200", "unit_price": "4.25",
               "quantity_ordered": "10", "quantity_received": "3", "quantity_invoiced": "0"}]}""",
    parse_float=Decimal,
)


def invoice(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(INVOICE)
    doc.update(changes)
    return doc


def po(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(PO)
    doc.update(changes)
    return doc


def judge(
    inv: Any,
    po_doc: dict[str, Any] | None = PO,
    *,
    history: tuple[KnownInvoice, ...] = (),
    in_flight: dict[str, Decimal] | None = None,
    policy: Policy = Policy(),
) -> Verdict:
    snapshot = PurchaseOrder.model_validate(po_doc) if po_doc is not None else None
    context = EvaluationContext(history=history, in_flight=in_flight or {}, policy=policy, now=NOW, today=TODAY)
    return evaluate(inv, snapshot, context)


# INVOICE with line 1 ten cents above the PO price, the arithmetic redone: manual_review by price alone.
PRICE_OFF = invoice(lines=[{"line_no": 1, "part_number": "AC-100", "quantity": "2", "unit_price": "15.60",
                            "amount": "31.20"},
                           {"line_no": 2, "part_number": "FL-200", "quantity": "3", "unit_price": "4.25",
                            "amount": "12.75"}], tax_amount="3.52", total_amount="57.47")


def codes(verdict: Verdict) -> list[str]:
    return [reason.code for reason in verdict.reasons]
