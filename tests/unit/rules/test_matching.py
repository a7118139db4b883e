"""Matching as AP systems read it: identifiers, tolerances, PO lines one to one, duplicates beyond the
exact number. Each decision at its boundary: exactly at a limit, and one step (one minor unit of
the currency) past it."""

from __future__ import annotations

import unicodedata
from datetime import date
from decimal import Decimal as D

import pytest

from rules import KnownInvoice, Policy, Tolerance
from rules.context import KnownInvoices
from rules.policy import PolicyError, parse_policy
from rules.rejudge import judge_again
from tests.unit.rules.builders import codes, invoice, judge, po


def one_line(part="AC-100", qty="2", price="15.50", currency="USD", **extra) -> dict:
    amount = (D(qty) * D(price)).quantize(D("1") if currency == "JPY" else D("0.001") if currency == "BHD"
                                          else D("0.01"))
    return invoice(**{"lines": [{"line_no": 1, "part_number": part, "quantity": D(qty), "unit_price": D(price)}],
                      "currency": currency, "tax_amount": D(0), "extra_charges": [], "total_amount": amount, **extra})


def po_line(line_no: int, price: str, ordered: str, invoiced: str = "0", part: str = "AC-100",
            received: str | None = None) -> dict:
    return {"line_no": line_no, "part_number": part, "unit_price": D(price), "quantity_ordered": D(ordered),
            "quantity_received": None if received is None else D(received), "quantity_invoiced": D(invoiced)}


def one_po(*lines: dict, currency: str = "USD") -> dict:
    return po(tax_rate=None, currency=currency, lines=list(lines) or [po_line(1, "15.50", "5")])


# -- identifiers ----------------------------------------------------------------------------------

@pytest.mark.parametrize("part", ["AC-100", "ac-100", " AC-100 ", "Ac-100"])
def test_a_part_number_matches_whatever_its_case_and_edge_spaces(part):
    verdict = judge(one_line(part=part), one_po())
    assert codes(verdict) == [] and verdict.rpa_payload.lines[0].part_number == part  # shown as sent


def test_a_part_number_in_decomposed_unicode_matches_its_composed_form():
    composed, decomposed = "CAFÉ-1", unicodedata.normalize("NFD", "CAFÉ-1")
    assert composed != decomposed
    assert codes(judge(one_line(part=decomposed), one_po(po_line(1, "15.50", "5", part=composed)))) == []


def test_case_folding_can_be_turned_off_per_field():
    strict = parse_policy({"identifiers": {"case_sensitive": ["part_number"]}})
    assert codes(judge(one_line(part="ac-100"), one_po(), policy=strict)) == ["PART_NOT_ON_PO"]
    assert codes(judge(one_line(part="AC-100 "), one_po(), policy=strict)) == []  # still trimmed
    assert "VENDOR_MISMATCH" not in codes(judge(one_line(vendor_id="v100"), one_po(), policy=strict))


def test_a_vendor_id_in_another_case_is_the_same_vendor():
    assert codes(judge(one_line(vendor_id="v100 "), one_po())) == []


def test_an_invoice_number_in_another_case_is_a_duplicate():
    history = (KnownInvoice("MP-9", "V100", "NV-2026-0417", "entered"),)
    assert codes(judge(one_line(invoice_number="nv-2026-0417"), one_po(), history=history)) == ["DUPLICATE_INVOICE"]



@pytest.mark.parametrize(("status", "where"), [
    ("entered", "is already entered in Sampro as MP-9"),
    ("sent_to_rpa", "was already sent to the RPA bot as MP-9"),
    ("awaiting_receipt", "is already pending as MP-9 (awaiting receipt), not entered in Sampro yet"),
    ("manual_review", "is already pending as MP-9 (manual review), not entered in Sampro yet"),
])
def test_a_duplicate_says_where_the_earlier_invoice_is(status, where):
    """An earlier invoice held for a receipt was "already processed": the clerk looked in Sampro
    for an entry that was not there."""
    exact = KnownInvoice("MP-9", "V100", "INV-42", status, D("980.00"), date(2026, 6, 1))
    (duplicate,) = judge(one_line(invoice_number="INV-42"), one_po(), history=(exact,)).reasons
    assert duplicate.message == f"Vendor V100 invoice INV-42 {where}."
    near, same_total = (KnownInvoice("MP-9", "V100", number, status, total, date(2026, 11, 18))
                        for number, total in (("INV-0042", D("980.00")), ("A-7781", D("31.00"))))
    (by_number,) = judge(one_line(invoice_number="INV-42"), one_po(), history=(near,)).reasons
    assert by_number.message == f"Vendor V100 invoice INV-42 reads like invoice INV-0042, which {where}."
    (by_total,) = judge(one_line(invoice_number="INV-42"), one_po(), history=(same_total,)).reasons
    assert by_total.message == (f"Vendor V100 already has invoice A-7781 for the same total 31.00 dated 2026-11-18, "
                                f"within 30 days, which {where}.")


def test_a_vendor_spelt_in_another_case_is_a_duplicate_unless_its_case_counts():
    history = (KnownInvoice("MP-9", "v100", "NV-2026-0417", "entered"),)
    invoice = one_line(invoice_number="NV-2026-0417")
    assert codes(judge(invoice, one_po(), history=history)) == ["DUPLICATE_INVOICE"]
    strict = parse_policy({"identifiers": {"case_sensitive": ["vendor_id"]}})
    assert "DUPLICATE_INVOICE" not in codes(judge(invoice, one_po(), history=history, policy=strict))


def test_the_history_gives_an_invoice_only_its_vendors_invoices_of_a_like_number_or_the_same_total():
    known = KnownInvoices([
        KnownInvoice("MP-1", "V100", "INV-0042", "entered", D("10")),
        KnownInvoice("MP-2", " v100", "B-7", "entered", D("31.00")),
        KnownInvoice("MP-3", "V100", "C-8", "entered", D("99")),  # another number and total: never compared
        KnownInvoice("MP-4", "V200", "inv42", "entered", D("31")),  # another vendor
        KnownInvoice("MP-5", "V100", "inv 42", "entered"),  # no total known
    ])
    assert [k.invoice_id for k in known.like("V100 ", "INV42", D("31"))] == ["MP-1", "MP-2", "MP-5"]  # as seen
    assert [k.invoice_id for k in known.like("v200", "X", D("31.0"))] == ["MP-4"]
    assert known.like("V300", "INV42", D("31")) == [] and known.like("V100", "Z", None) == []


def test_a_verdict_records_the_earlier_invoices_it_was_compared_with_and_a_replay_finds_the_same():
    history = [KnownInvoice(f"MP-{n}", "V100", f"OTHER-{n}", "entered", D(1000 + n)) for n in range(50)]
    history.append(KnownInvoice("MP-9", "v100", "inv 42", "entered", D("5")))
    verdict = judge(one_line(invoice_number="INV-0042"), one_po(), history=history)
    assert codes(verdict) == ["POSSIBLE_DUPLICATE"]
    assert [e.invoice_id for e in verdict.audit.earlier_invoices] == ["MP-9"]  # not the vendor's other 50
    again = judge_again(verdict, Policy())
    assert again is not None and [r.code for r in again.reasons] == ["POSSIBLE_DUPLICATE"]


# -- tolerances -----------------------------------------------------------------------------------

def test_quantity_tolerance_is_of_the_ordered_quantity_whatever_the_split():
    policy = Policy(default=Tolerance(quantity_pct=D("10")))
    twenty = po_line(1, "15.50", "20")
    assert codes(judge(one_line(qty="22"), one_po(twenty), policy=policy)) == []
    # 10 already invoiced: 12 more is 22 in all, within 10 % of the 20 ordered.
    assert codes(judge(one_line(qty="12"), one_po(po_line(1, "15.50", "20", invoiced="10")), policy=policy)) == []
    assert codes(judge(one_line(qty="12.01"), one_po(po_line(1, "15.50", "20", invoiced="10")),
                       policy=policy)) == ["QUANTITY_EXCEEDS_OPEN"]
    assert codes(judge(one_line(qty="12"), one_po(twenty), in_flight={"1": D("10.01")},
                       policy=policy)) == ["QUANTITY_EXCEEDS_OPEN"]


@pytest.mark.parametrize(("qty", "pct", "absolute", "flagged"), [
    ("22", "10", "0", False), ("22.01", "10", "0", True),
    ("21", "0", "1", False), ("21.01", "0", "1", True),
    ("21", "10", "1", False), ("21.01", "10", "1", True),  # both set: the stricter, 1 unit, wins
    ("21", "5", "5", False), ("21.01", "5", "5", True),  # 5 % of 20 ordered is 1 unit, stricter than 5
])
def test_quantity_tolerance_by_percentage_and_or_units(qty, pct, absolute, flagged):
    policy = Policy(default=Tolerance(quantity_pct=D(pct), quantity_abs=D(absolute)))
    verdict = judge(one_line(qty=qty), one_po(po_line(1, "15.50", "20")), policy=policy)
    assert ("QUANTITY_EXCEEDS_OPEN" in codes(verdict)) is flagged


@pytest.mark.parametrize(("price", "pct", "absolute", "flagged"), [
    ("15.60", "10", "0.10", False),  # 10 % is 1.55, 0.10 is stricter: 15.60 is the limit
    ("15.61", "10", "0.10", True),
    ("15.65", "1", "0.50", False),  # 1 % is 0.155, stricter than 0.50
    ("15.66", "1", "0.50", True),
])
def test_with_a_percentage_and_an_amount_a_price_must_be_within_both(price, pct, absolute, flagged):
    policy = Policy(default=Tolerance(price_pct=D(pct), price_abs=D(absolute)))
    assert ("PRICE_MISMATCH" in codes(judge(one_line(price=price), one_po(), policy=policy))) is flagged


@pytest.mark.parametrize(("price", "flagged"), [("15.30", False), ("15.29", True), ("15.51", True)])
def test_a_lower_limit_of_its_own(price, flagged):
    policy = Policy(default=Tolerance(price_lower_abs=D("0.20")))
    assert ("PRICE_MISMATCH" in codes(judge(one_line(price=price), one_po(), policy=policy))) is flagged


@pytest.mark.parametrize(("currency", "po_price", "price", "absolute", "flagged"), [
    ("JPY", "1000", "1001", "1", False), ("JPY", "1000", "1002", "1", True),
    ("BHD", "1.000", "1.005", "0.005", False), ("BHD", "1.000", "1.006", "0.005", True),
])
def test_price_limits_at_the_currencys_minor_unit(currency, po_price, price, absolute, flagged):
    policy = Policy(default=Tolerance(price_abs=D(absolute)))
    verdict = judge(one_line(price=price, currency=currency), one_po(po_line(1, po_price, "5"), currency=currency),
                    policy=policy)
    assert ("PRICE_MISMATCH" in codes(verdict)) is flagged


def test_a_part_section_and_a_vendors_part_section_take_over_in_order():
    policy = parse_policy({"default": {"price_pct": "0"}, "parts": {"ac-100": {"price_pct": "1"}},
                           "vendors": {"V100": {"price_abs": "0.05", "parts": {"AC-100": {"price_pct": "0.5"}}}}})
    assert policy.for_line("V100", "AC-100") == Tolerance(price_pct=D("0.5"), price_abs=D("0.05"))
    assert policy.for_line("V200", "AC-100") == Tolerance(price_pct=D("1"))
    assert policy.for_line("v100", "FL-200") == Tolerance(price_abs=D("0.05"))
    assert policy.digest() != Policy().digest()


@pytest.mark.parametrize(("section", "where"), [("vendors", "V100"), ("parts", "AC-100")])
def test_a_zero_in_a_vendors_or_parts_section_allows_none_of_that_kind(section, where):
    """Read as not set, a vendor's price_abs = "0" gave it the whole 2 % of [default], where AP had
    meant to take its 0.50 away; the quantity's pair, the same."""
    default = {"price_pct": "2", "price_abs": "0.50", "quantity_pct": "10", "quantity_abs": "2"}
    strict = parse_policy({"default": default, section: {where: {"price_abs": "0", "quantity_pct": "0"}}})
    assert codes(judge(one_line(price="15.51"), one_po(), policy=strict)) == ["PRICE_MISMATCH"]
    assert codes(judge(one_line(qty="21"), one_po(po_line(1, "15.50", "20")), policy=strict)) == [
        "QUANTITY_EXCEEDS_OPEN"]
    other = parse_policy({"default": default})  # 2 % of 15.50 is 0.31, stricter than 0.50
    assert codes(judge(one_line(price="15.81"), one_po(), policy=other)) == []
    assert codes(judge(one_line(qty="22"), one_po(po_line(1, "15.50", "20")), policy=other)) == []


def test_a_zero_beside_a_leeway_of_the_other_kind_in_one_section_is_not_set():
    """As the samples spell every key out: a vendor's price_pct = "0" beside its price_abs = "1.00"
    took away the 1.00 it had always allowed (the stricter of the two, zero)."""
    policy = parse_policy({"vendors": {"V100": {"price_pct": "0", "price_abs": "1.00", "quantity_pct": "0",
                                                "quantity_abs": "2"}}})
    assert codes(judge(one_line(price="16.00"), one_po(), policy=policy)) == []
    assert codes(judge(one_line(qty="22"), one_po(po_line(1, "15.50", "20")), policy=policy)) == []
    assert policy.for_line("V100", "P") == Tolerance(price_abs=D("1.00"), quantity_abs=D("2"))


def test_a_zero_in_default_is_no_limit_of_that_kind():
    """As documented, and as samples/tolerances.toml spells every key out: a vendor's 2 % is not
    held to [default]'s price_abs = "0"."""
    policy = parse_policy({"default": {"price_pct": "0", "price_abs": "0"}, "vendors": {"V100": {"price_pct": "2"}}})
    assert codes(judge(one_line(price="15.81"), one_po(), policy=policy)) == []
    assert parse_policy({"default": {"price_pct": "0", "price_abs": "0.50"}}).for_line("V1", "P") == Tolerance(
        price_abs=D("0.50"))
    assert parse_policy({"default": {"price_pct": "0", "quantity_abs": "0"}}) == Policy()


def test_an_unknown_key_or_a_bad_value_names_where_it_is():
    with pytest.raises(PolicyError, match=r"vendors\.v100\.parts\.x\.price_pct: not a number"):
        parse_policy({"vendors": {"V100": {"parts": {"X": {"price_pct": "lots"}}}}})
    with pytest.raises(PolicyError, match="case_sensitive"):
        parse_policy({"identifiers": {"case_sensitive": ["colour"]}})


@pytest.mark.parametrize(("document", "refused"), [
    ({"vendors": {"V100": {"price_pct": "1", "three_way_match": True}, "v100": {"price_pct": "50"}}},
     "vendors: [vendors.V100] and [vendors.v100] are one vendor id"),
    ({"parts": {"AC-100": {}, " AC-100": {"price_pct": "50"}}}, 'parts: [parts.AC-100] and [parts." AC-100"] are one '
                                                                "part number"),
    ({"vendors": {"Müller": {"parts": {"Ä-1": {}, "A\u0308-1": {"price_pct": "50"}}}}},
     r'vendors.müller.parts: [vendors."M\u00fcller".parts."\u00c4-1"] and [vendors."M\u00fcller".parts."A\u0308-1"] '
     "are one part number"),
])
def test_two_sections_for_one_vendor_or_part_are_refused_naming_both(document, refused):
    """Kept as one, the later replaced the earlier whole: a strict [vendors.V100] with three_way_match
    gave way to a [vendors.v100] added below it, and 140.00 on a PO price of 100.00 was ready for the
    RPA bot."""
    with pytest.raises(PolicyError) as refusal:
        parse_policy(document)
    assert refused in str(refusal.value) and str(refusal.value).endswith(
        "as invoices are matched (letter case, edge spaces and Unicode form aside): write one section")


def test_sections_told_apart_by_a_case_that_counts_are_two():
    policy = parse_policy({"identifiers": {"case_sensitive": ["vendor_id"]},
                           "vendors": {"V100": {"price_pct": "1"}, "v100": {"price_pct": "50"}}})
    assert (policy.for_vendor("V100").price_pct, policy.for_vendor("v100").price_pct) == (D("1"), D("50"))


@pytest.mark.parametrize(("document", "refused"), [
    ({"parts": {"AC-100": {"tax_abs": "0.01"}}}, r"parts\.ac-100\.tax_abs: .* \[default\] or \[vendors\.V\]"),
    ({"vendors": {"V100": {"parts": {"AC-100": {"total_abs": "0.02"}}}}},
     r"vendors\.v100\.parts\.ac-100\.total_abs: .* \[vendors\.v100\] \(value '0\.02'\)"),
    ({"parts": {"AC-100": {"duplicate_window_days": 0}}}, r"parts\.ac-100\.duplicate_window_days: .*value 0"),
])
def test_a_part_section_may_not_set_what_is_judged_once_per_invoice(document, refused):
    """The tax, the total and the duplicate window are judged with the vendor's tolerance: a part's
    value was taken and never read, and AP believed the part's tax had its leeway."""
    with pytest.raises(PolicyError, match=refused):
        parse_policy(document)


@pytest.mark.parametrize(("tax", "flagged"), [("2.49", False), ("2.47", False), ("2.50", True)])
def test_tax_accepts_the_rounding_difference_it_is_given(tax, flagged):
    policy = Policy(default=Tolerance(tax_abs=D("0.01")))
    doc = invoice(lines=[{"line_no": 1, "part_number": "AC-100", "quantity": D(2), "unit_price": D("15.50")}],
                  tax_amount=D(tax), extra_charges=[], total_amount=D("31.00") + D(tax))
    assert ("TAX_MISMATCH" in codes(judge(doc, po(), policy=policy))) is flagged


def test_an_accepted_total_difference_is_noted_in_the_payload():
    policy = Policy(default=Tolerance(total_abs=D("0.02")))
    near = judge(one_line(total_amount=D("31.02")), one_po(), policy=policy)
    assert codes(near) == [] and near.rpa_payload.total_difference == D("0.02")
    assert codes(judge(one_line(total_amount=D("31.03")), one_po(), policy=policy)) == ["TOTAL_MISMATCH"]
    assert judge(one_line(), one_po(), policy=policy).rpa_payload.total_difference is None


@pytest.mark.parametrize(("qty", "pct", "flagged"), [("4", "0", True), ("3", "0", False), ("3.3", "10", False),
                                                     ("3.31", "10", True)])
def test_three_way_match_with_a_received_tolerance(qty, pct, flagged):
    policy = Policy(default=Tolerance(three_way_match=True, received_pct=D(pct)))
    verdict = judge(one_line(qty=qty), one_po(po_line(1, "15.50", "10", received="3")), policy=policy)
    assert ("QUANTITY_EXCEEDS_RECEIVED" in codes(verdict)) is flagged


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
@pytest.mark.parametrize("y_price", ["10.40", "10.00"])  # 10.00: at line 1's very price, and within line 2's
def test_whether_an_invoice_is_held_does_not_depend_on_the_order_of_its_lines(order, y_price):
    """Y matches both PO lines (10 and 11, within 10 % either way) and X at 9.50 only the first:
    placed first, Y took line 1's five and X overflowed it, though line 2 had room."""
    policy = Policy(default=Tolerance(price_pct=D(10), price_lower_pct=D(10)))
    x = {"line_no": 1, "part_number": "AC-100", "quantity": D(5), "unit_price": D("9.50"), "amount": D("47.50")}
    y = {"line_no": 2, "part_number": "AC-100", "quantity": D(5), "unit_price": D(y_price),
         "amount": D(y_price) * 5}
    doc = invoice(lines=[(x, y)[i] for i in order], tax_amount=D(0), extra_charges=[],
                  total_amount=D("47.50") + D(y_price) * 5)
    verdict = judge(doc, one_po(po_line(1, "10.00", "5"), po_line(2, "11.00", "5")), policy=policy)
    assert codes(verdict) == []
    assert sorted((p.invoice_line_no, p.po_line_no) for p in verdict.rpa_payload.lines) == [(1, 1), (2, 2)]


def test_three_way_match_places_a_quantity_on_the_po_line_that_received_it_first():
    """Filled in line order, 10 delivered on PO line 2 went on undelivered line 1, and the invoice
    awaited a receipt for goods that had come."""
    policy = Policy(default=Tolerance(three_way_match=True))
    lines = (po_line(1, "15.50", "10", received="0"), po_line(2, "15.50", "10", received="6"))
    verdict = judge(one_line(qty="10"), one_po(*lines), policy=policy)
    assert codes(verdict) == ["QUANTITY_EXCEEDS_RECEIVED"]  # 4 still short: on line 1, after line 2's 6
    assert [(p.po_line_no, p.quantity) for p in judge(one_line(qty="6"), one_po(*lines), policy=policy)
            .rpa_payload.lines] == [(2, D(6))]


def test_three_way_match_fills_a_received_line_up_to_its_received_tolerance_before_an_undelivered_one():
    """11 on a PO whose line 2 had received its 10 put the 11th on undelivered line 1, held for a
    receipt, where the same invoice against line 2 alone was ready."""
    policy = parse_policy({"default": {"three_way_match": True, "received_pct": "10", "quantity_abs": "1"}})
    lines = (po_line(1, "15.50", "10", received="0"), po_line(2, "15.50", "10", received="10"))
    assert codes(judge(one_line(qty="11"), one_po(lines[1]), policy=policy)) == []
    verdict = judge(one_line(qty="11"), one_po(*lines), policy=policy)
    assert [(p.po_line_no, p.quantity) for p in verdict.rpa_payload.lines] == [(2, D(11))]
    # Past line 2's received tolerance, the rest waits for a receipt on line 1.
    (short,) = judge(one_line(qty="11.5"), one_po(*lines), policy=policy).reasons
    assert (short.code, short.expected, short.actual) == ("QUANTITY_EXCEEDS_RECEIVED", "0", "0.5")


def test_a_receipt_on_a_po_line_at_another_price_does_not_take_the_quantity_first():
    """Under a price tolerance the receipt picked the line: 10 ordered at 10.00, none delivered,
    were paid against line 2's receipt at 10.90, before the goods came."""
    policy = Policy(default=Tolerance(three_way_match=True, price_pct=D(10), price_lower_pct=D(10)))
    lines = (po_line(1, "10.00", "10", received="0"), po_line(2, "10.90", "10", received="10"))
    assert codes(judge(one_line(qty="10", price="10.00"), one_po(*lines), policy=policy)) == [
        "QUANTITY_EXCEEDS_RECEIVED"]


THREE_WAY = {"three_way_match": True}


@pytest.mark.parametrize(("section", "flagged"), [({"parts": {"ac-100": THREE_WAY}}, True),
                                                  ({"vendors": {"v100": THREE_WAY}}, True),
                                                  ({"vendors": {"V100": {"parts": {"AC-100": THREE_WAY}}}}, True),
                                                  ({"vendors": {"V200": THREE_WAY}}, False)])
def test_three_way_match_set_for_a_part_or_a_vendor_alone_checks_their_lines(section, flagged):
    policy = parse_policy(section)
    verdict = judge(one_line(qty="4"), one_po(po_line(1, "15.50", "10", received="3")), policy=policy)
    assert ("QUANTITY_EXCEEDS_RECEIVED" in codes(verdict)) is flagged


# -- PO lines one to one ----------------------------------------------------------------------------

def test_a_quantity_that_would_overflow_into_a_line_at_another_price_exceeds_the_line_it_matched():
    lines = (po_line(1, "15.50", "10"), po_line(2, "14.00", "2"))
    verdict = judge(one_line(qty="4", price="14.00"), one_po(*lines))
    assert codes(verdict) == ["QUANTITY_EXCEEDS_OPEN"] and verdict.rpa_payload is None
    assert "PO line 2" in verdict.reasons[0].message
    assert (verdict.reasons[0].expected, verdict.reasons[0].actual) == ("2", "4")


def test_a_quantity_spread_over_lines_at_the_same_price_is_split_in_the_payload():
    lines = (po_line(1, "14.00", "2", invoiced="1"), po_line(2, "15.50", "9"), po_line(3, "14.00", "5"))
    verdict = judge(one_line(qty="4", price="14.00"), one_po(*lines))
    assert codes(verdict) == []
    assert [(p.invoice_line_no, p.po_line_no, p.quantity, p.amount) for p in verdict.rpa_payload.lines] == [
        (1, 1, D(1), D("14.00")), (1, 3, D(3), D("42.00"))]


def many_lines(*quantities: str, price: str = "14.00") -> dict:
    lines = [{"line_no": n, "part_number": "AC-100", "quantity": D(q), "unit_price": D(price)}
             for n, q in enumerate(quantities, start=1)]
    total = sum(D(q) for q in quantities) * D(price)
    return invoice(lines=lines, tax_amount=D(0), extra_charges=[], total_amount=total)


def test_lines_of_a_part_repeated_on_a_blanket_po_fill_its_schedule_lines_in_order():
    """Worked out once per price for the lines of a part, and each pass starting past the PO lines
    already full (a 1,000-line invoice on 1,000 such lines took 1.9 s): the same placing."""
    blanket = one_po(*(po_line(n, "14.00", "5") for n in (1, 2, 3)))
    verdict = judge(many_lines("3", "3", "3", "3", "3"), blanket)
    assert codes(verdict) == []
    assert [(p.invoice_line_no, p.po_line_no, p.quantity) for p in verdict.rpa_payload.lines] == [
        (1, 1, D(3)), (2, 1, D(2)), (2, 2, D(1)), (3, 2, D(3)), (4, 2, D(1)), (4, 3, D(2)), (5, 3, D(3))]
    over = judge(many_lines("5", "5", "5", "2"), blanket)
    assert codes(over) == ["QUANTITY_EXCEEDS_OPEN"] and "PO line 1" in over.reasons[0].message


@pytest.mark.parametrize(("quantity", "flagged"), [("4.4", False), ("4.4624", False), ("4.4625", True)])
def test_a_quantity_tolerance_is_in_quantities_sampro_keeps(quantity, flagged):
    """5 % of 2.125 ordered is 0.10625: the payload put 2.23125 on PO line 1, which Sampro's
    numeric(18, 4) cannot key. Each line takes 0.1062 of leeway, the next line the rest."""
    policy = parse_policy({"default": {"quantity_pct": "5"}})
    doc = many_lines(quantity, price="100.00")
    verdict = judge(doc, one_po(po_line(1, "100.00", "2.125"), po_line(2, "100.00", "2.125")), policy=policy)
    assert codes(verdict) == (["QUANTITY_EXCEEDS_OPEN"] if flagged else [])
    if not flagged:
        assert [p.quantity for p in verdict.rpa_payload.lines] == [D("2.2312"), D(quantity) - D("2.2312")]


def test_split_amounts_add_up_to_the_invoice_lines_amount():
    lines = (po_line(1, "0.333", "1"), po_line(2, "0.333", "5"))
    doc = invoice(lines=[{"line_no": 1, "part_number": "AC-100", "quantity": D(3), "unit_price": D("0.333"),
                          "amount": D("1.00")}], tax_amount=D(0), extra_charges=[], total_amount=D("1.00"))
    payload = judge(doc, one_po(*lines)).rpa_payload
    assert [p.quantity for p in payload.lines] == [D(1), D(2)] and sum(p.amount for p in payload.lines) == D("1.00")


@pytest.mark.parametrize(("price", "placed", "amount", "pieces"), [
    # the last piece taking the rest was -0.01 for a positive quantity
    ("0.005", ["1", "1", "1", "1"], "0.02", ["0.00", "0.00", "0.01", "0.01"]),
    # a running total put a cent on the second of two equal pieces: each is its own share rounded
    ("0.0125", ["1001", "1001", "998"], "37.50", ["12.51", "12.51", "12.48"]),
])
def test_split_amounts_are_each_shares_rounding_the_missing_cents_where_rounding_cut_most(price, placed, amount,
                                                                                          pieces):
    lines = [po_line(n, price, quantity) for n, quantity in enumerate(placed, start=1)]
    total = sum(D(q) for q in placed)
    doc = invoice(lines=[{"line_no": 1, "part_number": "AC-100", "quantity": total, "unit_price": D(price),
                          "amount": D(amount)}], tax_amount=D(0), extra_charges=[], total_amount=D(amount))
    payload = judge(doc, one_po(*lines)).rpa_payload
    assert [p.amount for p in payload.lines] == [D(piece) for piece in pieces]


def test_a_price_within_tolerance_matches_the_line_at_that_price_not_the_first():
    lines = (po_line(1, "15.50", "1"), po_line(2, "14.00", "5"))
    policy = Policy(default=Tolerance(price_abs=D("0.05")))
    verdict = judge(one_line(qty="3", price="14.05"), one_po(*lines), policy=policy)
    assert codes(verdict) == [] and [p.po_line_no for p in verdict.rpa_payload.lines] == [2]


# -- duplicates beyond the exact number ----------------------------------------------------------------

FULLWIDTH = "\uff29\uff2e\uff36\uff0d\uff10\uff10\uff14\uff12"  # INV-0042 as a Japanese system writes it


@pytest.mark.parametrize("earlier", ["INV-0042", "INV42", "inv 0042", "Inv-42", FULLWIDTH, "INV-" + FULLWIDTH[4:],
                                     "\U0001d408\U0001d40d\U0001d415-0042"])  # mathematical bold: folded after NFKC
def test_the_same_number_but_for_punctuation_and_leading_zeros_is_a_possible_duplicate(earlier):
    history = (KnownInvoice("MP-9", "V100", earlier, "entered"),)
    verdict = judge(one_line(invoice_number="INV-0042"), one_po(), history=history)
    expected = ["DUPLICATE_INVOICE"] if earlier.casefold() == "inv-0042" else ["POSSIBLE_DUPLICATE"]
    assert codes(verdict) == expected


@pytest.mark.parametrize(("dated", "window", "flagged"), [
    (date(2026, 10, 21), 30, True),  # 30 days before 2026-11-20
    (date(2026, 10, 20), 30, False),
    (date(2026, 11, 20), 0, True),
    (date(2026, 11, 19), 0, False),
])
def test_the_same_vendor_and_total_within_the_window_under_another_number_is_a_possible_duplicate(
        dated, window, flagged):
    history = (KnownInvoice("MP-9", "V100", "OTHER-1", "entered", D("31.00"), dated),)
    policy = Policy(default=Tolerance(duplicate_window_days=window))
    verdict = judge(one_line(invoice_number="INV-1"), one_po(), history=history, policy=policy)
    assert (codes(verdict) == ["POSSIBLE_DUPLICATE"]) is flagged
    if flagged:
        assert verdict.reasons[0].field == "total_amount" and verdict.status.value == "manual_review"


def test_an_entered_invoice_without_a_number_is_compared_by_its_total_alone():
    """Sampro may hold one with a NULL number: no letter or digit is no loose number to share with
    an invoice numbered '-'."""
    history = (KnownInvoice("sampro:S-9", "V100", "", "entered", D("99.00"), date(2026, 11, 20)),)
    assert codes(judge(one_line(invoice_number="-"), one_po(), history=history)) == []
    same_total = (KnownInvoice("sampro:S-9", "V100", "", "entered", D("31.00"), date(2026, 11, 20)),)
    assert codes(judge(one_line(invoice_number="-"), one_po(), history=same_total)) == ["POSSIBLE_DUPLICATE"]


@pytest.mark.parametrize("status", ["bad_invoice", "po_not_found", "withdrawn", "superseded"])
def test_earlier_invoices_that_were_never_processed_do_not_count(status):
    history = (KnownInvoice("MP-9", "V100", "INV42", status, D("31.00"), date(2026, 11, 20)),)
    assert codes(judge(one_line(invoice_number="INV-0042"), one_po(), history=history)) == []


def test_another_vendor_or_the_invoices_own_earlier_version_is_no_duplicate():
    other_vendor = (KnownInvoice("MP-9", "V999", "INV-0042", "entered", D("31.00"), date(2026, 11, 20)),)
    own = (KnownInvoice("MP-1001", "V100", "INV42", "entered", D("31.00"), date(2026, 11, 20)),)
    assert codes(judge(one_line(invoice_number="INV-0042"), one_po(), history=other_vendor)) == []
    assert codes(judge(one_line(invoice_number="INV-0042"), one_po(), history=own)) == []


def test_a_line_goes_to_the_po_line_at_its_very_price_before_one_the_tolerance_lets_it_onto():
    """Placed in line order, 5 at 10.40 went onto the 10.00 line (paying the difference), and the
    invoice's 5 at 10.00 then found that line full: held, for an invoice that is exactly the PO."""
    five_pct = Policy(default=Tolerance(price_pct=D(5)))
    lines = (po_line(1, "10.00", "5"), po_line(2, "10.40", "5"))
    both = one_line(qty="5", price="10.40")
    both["lines"].append({"line_no": 2, "part_number": "AC-100", "quantity": D(5), "unit_price": D("10.00")})
    both["total_amount"] = D("102.00")
    verdict = judge(both, one_po(*lines), policy=five_pct)
    assert codes(verdict) == [] and verdict.rpa_payload is not None
    assert [(p.invoice_line_no, p.po_line_no) for p in verdict.rpa_payload.lines] == [(1, 2), (2, 1)]
    alone = judge(one_line(qty="5", price="10.40"), one_po(*lines), policy=five_pct)
    assert [p.po_line_no for p in alone.rpa_payload.lines] == [2]
    over = judge(one_line(qty="12", price="10.40"), one_po(*lines), policy=five_pct)
    (exceeds,) = [r for r in over.reasons if r.code == "QUANTITY_EXCEEDS_OPEN"]
    assert exceeds.message.startswith("PO line 2 ")  # left over on the line at its price, not the 10.00 one


def test_each_earlier_invoice_that_looks_alike_is_a_possible_duplicate_and_a_hold_of_its_own():
    """With the first alone named, the clerk cleared a June invoice of a near number, and the one of
    the same total two days before was never shown: released, the invoice was paid twice."""
    from rules.holds import holds_of

    near = KnownInvoice("MP-9", "V100", "INV-0042", "entered", D("980.00"), date(2026, 6, 1))
    same_totals = [KnownInvoice(f"MP-1{n}", "V100", f"A-778{n}", "entered", D("31.00"), date(2026, 11, 18 - n))
                   for n in (0, 1)]
    verdict = judge(one_line(invoice_number="INV-42", total_amount="31.00"), one_po(),
                    history=(near, *same_totals))
    assert [(r.code, r.field, r.expected) for r in verdict.reasons] == [
        ("POSSIBLE_DUPLICATE", "invoice_number", "MP-9"), ("POSSIBLE_DUPLICATE", "total_amount", "MP-10"),
        ("POSSIBLE_DUPLICATE", "total_amount", "MP-11")]
    names = [hold.id for hold in holds_of(verdict.reasons)]
    assert names[0] == "POSSIBLE_DUPLICATE::invoice_number" and len(set(names)) == 3
    assert all(name.startswith("POSSIBLE_DUPLICATE::total_amount#") for name in names[1:])
    # The earlier invoice moves on (sent to the bot, entered): the message says so, the names stay,
    # and the holds a clerk released are still the ones released at the invoice's turn at the bot.
    moved = [KnownInvoice(k.invoice_id, k.vendor_id, k.invoice_number, "sent_to_rpa", k.total_amount,
                          k.invoice_date) for k in same_totals]
    again = judge(one_line(invoice_number="INV-42", total_amount="31.00"), one_po(), history=(near, *moved))
    assert [r.message for r in again.reasons] != [r.message for r in verdict.reasons]
    assert [hold.id for hold in holds_of(again.reasons)] == names


def test_a_line_short_of_receipt_on_two_po_lines_is_two_holds_each_released_on_its_own():
    """As one hold, releasing the one the clerk was shown released the other PO line's shortfall unseen."""
    from rules.holds import holds_of

    short = [{"line_no": n, "part_number": "AC-100", "unit_price": "15.50", "quantity_ordered": "5",
              "quantity_received": received, "quantity_invoiced": "0"} for n, received in ((1, "3"), (2, "1"))]
    spread = invoice(lines=[{"line_no": 1, "part_number": "AC-100", "quantity": "10", "unit_price": "15.50",
                             "amount": "155.00"}], tax_amount="0", total_amount="165.00")
    verdict = judge(spread, po(lines=short, tax_rate=None), policy=Policy(default=Tolerance(three_way_match=True)))
    holds = holds_of(verdict.reasons)
    assert [hold.id for hold in holds] == ["QUANTITY_EXCEEDS_RECEIVED:1:quantity#po1",
                                           "QUANTITY_EXCEEDS_RECEIVED:1:quantity#po2"]
    assert ["PO line 1" in holds[0].finding.message, "PO line 2" in holds[1].finding.message] == [True, True]
    assert holds_of([*verdict.reasons, verdict.reasons[0]]) == holds  # the same finding twice is one hold
    # A receipt for PO line 1 leaves PO line 2's finding alone, under its own name: not the one the
    # clerk saw on PO line 1's, which a release of that would have released.
    received = [{**short[0], "quantity_received": "5"}, short[1]]
    (left,) = holds_of(judge(spread, po(lines=received, tax_rate=None),
                             policy=Policy(default=Tolerance(three_way_match=True))).reasons)
    assert left.id == "QUANTITY_EXCEEDS_RECEIVED:1:quantity#po2"
