"""`validate` agrees with each finding of issue 14's list: the invoices AP lost money or time on."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app

PO = {"po_number": "PO-310", "vendor_id": "V100", "status": "open", "currency": "USD", "order_date": "2026-11-01",
      "tax_rate": None, "allowed_charges": [],
      "lines": [{"line_no": 1, "part_number": "VLV-310", "unit_price": "10.00", "quantity_ordered": "20",
                 "quantity_received": None, "quantity_invoiced": "0"}]}


def invoice(part="VLV-310", qty="2", price="10.00", **extra) -> dict:
    total = f"{float(qty) * float(price):.2f}"
    return {"invoice_id": "MP-1", "version": 1, "vendor_id": "V100", "invoice_number": "INV-0042",
            "po_number": "PO-310", "invoice_date": "2026-11-20", "currency": "USD", "tax_amount": "0",
            "lines": [{"line_no": 1, "part_number": part, "quantity": qty, "unit_price": price}],
            "total_amount": total, **extra}


def two_lines(po: dict) -> dict:
    return {**po, "lines": [po["lines"][0], {**po["lines"][0], "line_no": 2, "unit_price": "9.00",
                                             "quantity_ordered": "2"}]}


CASES = {
    "a part number in lower case": (invoice(part="vlv-310"), PO, None, None, "ready_to_process", []),
    "a part number with a trailing space": (invoice(part="VLV-310 "), PO, None, None, "ready_to_process", []),
    "a vendor id in another case": (invoice(vendor_id="v100"), PO, None, None, "ready_to_process", []),
    "a part number in decomposed Unicode": (
        invoice(part=unicodedata.normalize("NFD", "VLV-310É")),
        {**PO, "lines": [{**PO["lines"][0], "part_number": "VLV-310É"}]}, None, None, "ready_to_process", []),
    "an invoice number in another case": (
        invoice(invoice_number="nv-2026-0417"), PO,
        [{"invoice_id": "MP-0", "vendor_id": "V100", "invoice_number": "NV-2026-0417", "status": "entered"}], None,
        "bad_invoice", ["DUPLICATE_INVOICE"]),
    "22 on a 20-unit order with 10 % as one invoice": (
        invoice(qty="22"), PO, None, '[default]\nquantity_pct = "10"\n', "ready_to_process", []),
    "the second of 10 + 12 on a 20-unit order with 10 %": (
        invoice(qty="12"), {**PO, "lines": [{**PO["lines"][0], "quantity_invoiced": "10"}]}, None,
        '[default]\nquantity_pct = "10"\n', "ready_to_process", []),
    "a price within 10 % but not within 0.05": (
        invoice(price="10.06"), PO, None, '[default]\nprice_pct = "10"\nprice_abs = "0.05"\n', "manual_review",
        ["PRICE_MISMATCH"]),
    "4 units at the cheaper line's price where it has 2 open": (
        invoice(qty="4", price="9.00"), two_lines(PO), None, None, "manual_review", ["QUANTITY_EXCEEDS_OPEN"]),
    "INV42 after INV-0042": (
        invoice(invoice_number="INV42"), PO,
        [{"invoice_id": "MP-0", "vendor_id": "V100", "invoice_number": "INV-0042", "status": "entered"}], None,
        "manual_review", ["POSSIBLE_DUPLICATE"]),
    "inv 0042 after INV-0042": (
        invoice(invoice_number="inv 0042"), PO,
        [{"invoice_id": "MP-0", "vendor_id": "V100", "invoice_number": "INV-0042", "status": "entered"}], None,
        "manual_review", ["POSSIBLE_DUPLICATE"]),
    "the same vendor, amount and date under another number": (
        invoice(invoice_number="X-77"), PO,
        [{"invoice_id": "MP-0", "vendor_id": "V100", "invoice_number": "INV-0042", "status": "entered",
          "total_amount": "20.00", "invoice_date": "2026-11-20"}], None, "manual_review", ["POSSIBLE_DUPLICATE"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_validate_judges_it_as_ap_reads_it(case, tmp_path: Path):
    document, po, history, tolerances, status, reasons = CASES[case]
    args = ["validate", "--today", "2026-11-25"]
    for name, content in (("invoice", document), ("po", po), ("history", history)):
        if content is not None:
            path = tmp_path / f"{name}.json"
            path.write_text(json.dumps(content))
            args += [f"--{name}", str(path)]
    if tolerances is not None:
        (tmp_path / "tolerances.toml").write_text(tolerances)
        args += ["--tolerances", str(tmp_path / "tolerances.toml")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    verdict = json.loads(result.stdout)
    assert (verdict["status"], [r["code"] for r in verdict["reasons"]]) == (status, reasons)
