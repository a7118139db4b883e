"""What a vendor's invoice may hold, checked at each limit and one step past it."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from rules.context import KnownInvoice
from rules.errors import DataError
from rules.limits import Limits, decimal_problem, load_json
from rules.models import Invoice
from rules.parsing import read_invoice
from tests.unit.rules.builders import PO, codes, invoice, judge, po

LINE = {"line_no": 1, "part_number": "AC-100", "quantity": "2", "unit_price": "15.50", "amount": "31.00"}


def findings(doc) -> list[tuple[str, str]]:
    return [(r.field, r.message) for r in judge(doc).reasons if r.code == "INVALID_INVOICE"]


def test_lines_up_to_the_limit_are_judged_one_more_is_invalid():
    at_limit = invoice(lines=[{**LINE, "line_no": n} for n in range(1, 1001)])
    assert "INVALID_INVOICE" not in codes(judge(at_limit))
    over = invoice(lines=[{**LINE, "line_no": n} for n in range(1, 1002)])
    assert findings(over) == [("lines", "The invoice has 1,001 lines; at most 1,000 are accepted.")]


def test_charges_up_to_the_limit_are_judged_one_more_is_invalid_and_counted_before_each_is_read():
    """7,500 freight charges of 0.01 fitted in a row: 7,500 findings, a 1.7 MB verdict, 38 releases."""
    def charged(count: int) -> dict:
        doc = invoice(extra_charges=[{"kind": "freight", "amount": "0.01"}] * count)
        return {**doc, "total_amount": str(Decimal(doc["total_amount"]) + Decimal("0.01") * count)}

    assert "INVALID_INVOICE" not in codes(judge(charged(50)))
    assert findings(charged(51)) == [("extra_charges", "The invoice has 51 extra charges; at most 50 are accepted.")]
    model = Invoice.model_validate(charged(51))  # a trusted model, as the pipeline hands one over
    assert [finding.field for finding in read_invoice(model)[1]] == ["extra_charges"]
    assert findings(invoice(extra_charges=[{}] * 7_500)) == [
        ("extra_charges", "The invoice has 7,500 extra charges; at most 50 are accepted.")]


@pytest.mark.parametrize("field", ["invoice_id", "vendor_id", "invoice_number", "po_number"])
def test_identifiers_hold_64_characters(field):
    assert "INVALID_INVOICE" not in codes(judge(invoice(**{field: "X" * 64})))
    assert findings(invoice(**{field: "X" * 65})) == [(field, f"{field}: 65 characters; at most 64.")]


@pytest.mark.parametrize("character", ["\r", "\n", "\x00", "\x1b", "\u2028", "\x85"])
def test_a_control_character_in_an_identifier_is_invalid_and_named(character):
    (found,) = findings(invoice(invoice_number=f"INV{character}42"))
    assert found[0] == "invoice_number" and f"U+{ord(character):04X}" in found[1]


@pytest.mark.parametrize(("field", "value"), [
    ("invoice_number", "INV-\u202e877"),  # shows as INV-778
    ("vendor_id", "V100\u2069\u202e"),
    ("po_number", "\u2067PO-5001"),
])
def test_a_bidi_control_in_an_identifier_is_invalid_and_named(field, value):
    """It shows nothing and reorders what follows: an invoice number that read as one already paid,
    and no duplicate check saw it as that one."""
    (found,) = findings(invoice(**{field: value}))
    character = next(c for c in value if not c.isprintable())
    assert found == (field, f"{field}: contains the bidi control U+{ord(character):04X}, which reorders the "
                            "characters after it and shows nothing itself.")


@pytest.mark.parametrize("number", ["INV-\u00ad778", "778\u200e", "INV-\u200c778"])
def test_marks_that_reorder_nothing_leave_an_invoice_number_as_it_was(number):
    """A soft hyphen from a PDF, the LRM a right-to-left keyboard leaves after a number, a ZWNJ: and
    a resend of an entered invoice with one is a duplicate of it, which no clerk may release."""
    assert "INVALID_INVOICE" not in codes(judge(invoice(invoice_number=number)))
    entered = KnownInvoice("S-1", "V100", "".join(c for c in number if c.isprintable()), "entered", Decimal("57.25"))
    assert "DUPLICATE_INVOICE" in codes(judge(invoice(invoice_number=number), history=(entered,)))


@pytest.mark.parametrize("unseen", ["\u3164", "\u115f", "\u1160", "\uffa0", "\u034f", "\ufe0f", "\u2800",
                                    "\U000e0100"])
def test_letters_and_marks_that_show_nothing_leave_an_invoice_number_as_it_was(unseen):
    """A Hangul filler is a letter to Unicode and shows nothing: a resend of an entered INV-4 as
    INV-4 and a filler, a cent more freight, was ready for the RPA bot and paid twice; with the
    same total (or with a braille blank, a variation selector) a possible duplicate a clerk may release."""
    entered = KnownInvoice("S-1", "V100", "INV-778", "entered", Decimal("57.24"))
    resend = invoice(invoice_number=f"INV-778{unseen}")
    assert codes(judge(resend, history=(entered,))) == ["DUPLICATE_INVOICE"]
    assert codes(judge(invoice(invoice_number=f"INV{unseen}-778"), history=(entered,))) == (
        ["POSSIBLE_DUPLICATE"] if unseen == "\u2800" else ["DUPLICATE_INVOICE"])  # a blank, read as a space


@pytest.mark.parametrize("space", ["\u00a0", "\u2009", "\u3000", "\u2800"])
def test_a_space_of_another_kind_is_a_space(space):
    """INV\u00a0778 reads as INV 778: a resend so spelt was a possible duplicate a clerk may release."""
    entered = KnownInvoice("S-1", "V100", "INV 778", "entered", Decimal("57.24"))
    assert codes(judge(invoice(invoice_number=f"INV{space}778"), history=(entered,))) == ["DUPLICATE_INVOICE"]


def test_a_grapheme_joiner_between_accents_leaves_them_in_the_order_nfc_gives():
    """Taken out after composing, the joiner left the accents in another order: the same letter on
    the screen, and no duplicate."""
    entered = KnownInvoice("S-1", "V100", "INV-A\u0323\u0308", "entered", Decimal("57.24"))
    resend = invoice(invoice_number="INV-A\u0308\u034f\u0323")
    assert codes(judge(resend, history=(entered,))) == ["DUPLICATE_INVOICE"]


@pytest.mark.parametrize(("field", "value"), [("invoice_number", "\u3164"), ("invoice_number", "\u2800\ufe0f"),
                                              ("vendor_id", "\u115f")])
def test_an_identifier_of_characters_that_show_nothing_is_blank(field, value):
    """A Hangul filler alone went to the bot as the vendor's invoice number, which every other number
    of such characters shared."""
    verdict = judge(invoice(**{field: value}))
    assert codes(verdict) == ["INVALID_INVOICE"] and verdict.reasons[0].message == f"{field} is blank."


def test_a_description_may_hold_a_zero_width_joiner_as_scripts_that_need_one_do():
    ok = invoice(lines=[{**LINE, "description": "\u0915\u094d\u200d\u0937 filter"}, invoice()["lines"][1]])
    assert "INVALID_INVOICE" not in codes(judge(ok))


def test_a_description_may_break_lines_but_holds_400_characters():
    ok = invoice(lines=[{**LINE, "description": "Compressor\nwith a line break"}, invoice()["lines"][1]])
    assert "INVALID_INVOICE" not in codes(judge(ok))
    long = invoice(lines=[{**LINE, "description": "x" * 401}, invoice()["lines"][1]])
    assert findings(long) == [("lines[1].description", "lines[1].description: 401 characters; at most 400.")]


@pytest.mark.parametrize(("quantity", "problem"), [
    ("99999999999999", None),
    ("100000000000000", "has 15 digits before the point; Sampro keeps 14"),
    ("1e27", "has 28 digits before the point; Sampro keeps 14"),
    ("2.0001", None),
    ("2.00010000", None),
    ("2.00001", "has 5 digits after the point; Sampro keeps 4"),
])
def test_numbers_must_fit_sampros_numeric_18_4(quantity, problem):
    # At a price of 0.01: 14 digits of quantity are as many in the line's amount, which Sampro keeps too.
    doc = invoice(lines=[{**LINE, "quantity": quantity, "unit_price": "0.01", "amount": None}, invoice()["lines"][1]])
    found = findings(doc)
    if problem is None:
        assert found == []
    else:
        assert found == [("lines[1].quantity", f"lines[1].quantity: {Decimal(quantity)} {problem}.")]


@pytest.mark.parametrize(("field", "text", "problem"), [
    ("quantity", "2_0", "must be written in the digits 0-9, without separators"),
    ("unit_price", "\uff11\uff15.\uff15\uff10", "must be written in the digits 0-9, without separators"),
    ("unit_price", "\u0661\u0665.\u0665\u0660", "must be written in the digits 0-9, without separators"),
    ("quantity", "1E+1", "1E+1 is written with an exponent; write it out (10)"),
])
def test_number_text_python_reads_but_the_contract_does_not_write_is_invalid_and_named(field, text, problem):
    """Python's Decimal reads `2_0` as 20 and fullwidth or Arabic-Indic digits as ASCII ones, and the
    bot was given 1E+1 as it came: each went to it as a ready invoice."""
    line = {**LINE, "amount": None, field: text}
    found = findings(invoice(lines=[line, invoice()["lines"][1]]))
    assert found == [(f"lines[1].{field}", f"lines[1].{field}: {problem}.")]


@pytest.mark.parametrize(("zero", "read"), [("-0.00", "0.00"), ("-0.0", "0.0"), ("0.00", "0.00"), ("0.00000000", "0"),
                                            ("0E+20", "0"), ("0E-999999", "0")])
def test_any_zero_is_read_as_a_plain_zero(zero, read):
    """A rounded discount as Python or JavaScript writes it (-0.00), a system writing 8 decimals:
    refused, such an invoice was bad with no hold to release; read as written, the bot was given
    -0.00 or 0E+20."""
    invoice_read, problems = read_invoice(invoice(tax_amount=zero, total_amount="62.00"))
    assert problems == [] and str(invoice_read.tax_amount) == read


@pytest.mark.parametrize(("value", "problem"), [
    ("1795132800", "invoice_date: must be a date written YYYY-MM-DD."),  # read as a Unix time
    (1795132800, "invoice_date: must be a date written YYYY-MM-DD."),
])
def test_a_date_not_written_as_a_date_is_invalid_and_named(value, problem):
    assert findings(invoice(invoice_date=value)) == [("invoice_date", problem)]


def test_a_line_number_below_one_or_given_twice_is_invalid_and_named():
    """Holds and payload lines name an invoice line by its number: two lines numbered 1 showed the
    clerk line 1 at its right price for a price hold on the other."""
    second = invoice()["lines"][1]
    assert findings(invoice(lines=[LINE, {**second, "line_no": 1}])) == [
        ("lines[2].line_no", "Line 1: another line has this number.")]
    assert findings(invoice(lines=[{**LINE, "line_no": 0}, second])) == [
        ("lines[1].line_no", "Line 0: line numbers start at 1.")]


def test_a_json_column_that_cannot_be_read_is_named_with_why_not_as_a_wrong_type():
    doc = invoice(lines="unreadable: 300,000 bytes of JSON; at most 256,000")
    assert findings(doc) == [("lines", "lines: the column cannot be read (300,000 bytes of JSON; at most 256,000).")]


def test_the_json_a_column_may_hold_grows_with_the_lines_allowed():
    """At 256,000 bytes whatever MAX_INVOICE_LINES said, 2,000 ordinary lines could not be read:
    the setting took 100,000 and stopped working at about 1,900."""
    from streams.adapters import limits_from
    from streams.settings import Settings

    assert limits_from(Settings()).max_json_bytes == 256_000
    limits = limits_from(Settings(max_invoice_lines=5000))
    column = json.dumps([{**LINE, "line_no": n, "description": "part"} for n in range(1, 5001)])
    assert len(column) > 500_000 and len(load_json(column, limits, "lines")) == 5000


def test_json_beyond_the_size_or_nesting_limit_is_a_data_error_naming_the_limit():
    limits = Limits()
    assert load_json("[" * 8 + "]" * 8, limits, "lines") == [[[[[[[[]]]]]]]]
    with pytest.raises(DataError, match="lines: JSON nested deeper than 8 levels"):
        load_json("[" * 9 + "]" * 9, limits, "lines")
    with pytest.raises(DataError, match="nested deeper"):
        load_json("[" * 200_000 + "]" * 200_000, Limits(max_json_bytes=10**7), "lines")
    # Objects and arrays in turn, the deep one after scalars beside it: 8 levels, then 9.
    assert load_json('{"a": [0, "x", ' * 4 + "1" + "]}" * 4, limits, "lines")["a"][:2] == [0, "x"]
    with pytest.raises(DataError, match="nested deeper than 8 levels"):
        load_json('{"a": [0, "x", ' * 4 + '{"b": 1}' + "]}" * 4, limits, "lines")
    with pytest.raises(DataError, match="256,001 bytes of JSON; at most 256,000"):
        load_json('"' + "x" * 255_999 + '"', limits, "lines")


def test_a_line_number_past_a_32_bit_int_is_invalid_and_named():
    """2**31 passed as a ready invoice, which Sampro's INT and the topics' Avro int refuse; 2**63
    left the invoice unjudged, naming no field."""
    for number in (2**31, 2**63):
        (found,) = findings(invoice(lines=[{**LINE, "line_no": number}, invoice()["lines"][1]]))
        assert found[0] == "lines[1].line_no"
    assert findings(invoice(lines=[{**LINE, "line_no": 2**31 - 1}, invoice()["lines"][1]])) == []


def test_lines_past_the_limit_are_counted_before_each_is_read():
    """80,000 empty lines made 320,000 findings and 640 MB."""
    assert findings(invoice(lines=[{}] * 80_000)) == [("lines", "The invoice has 80,000 lines; at most 1,000 are "
                                                                "accepted.")]
    many = findings(invoice(lines=[{}] * 30))  # each line lacks its 4 required fields
    assert len(many) == 101 and many[-1] == ("invoice", "20 more problems like these.")


def test_a_lone_surrogate_is_named_escaped_and_the_verdict_can_be_written():
    verdict = judge(invoice(invoice_number="INV-\ud800", vendor_id="V\udfff"))
    assert [(r.field, r.actual) for r in verdict.reasons if r.code == "INVALID_INVOICE"] == [
        ("vendor_id", "V\\udfff"), ("invoice_number", "INV-\\ud800")]
    assert (verdict.vendor_id, verdict.invoice_number) == ("V\\udfff", "INV-\\ud800")
    # Raised "surrogates not allowed". The audit keeps the document as it came, which the edges
    # (load_json, the codec, the CLI and the API) refuse with such a character in it.
    verdict.model_copy(update={"audit": None}).model_dump_json()


def test_json_refuses_nan_and_a_lone_surrogate_naming_where():
    """As text, `"invoice_number": NaN` was an invoice ready to enter, numbered "NaN"."""
    limits = Limits()
    with pytest.raises(DataError, match="lines: not JSON .*NaN is not JSON"):
        load_json('[{"amount": NaN}]', limits, "lines")
    with pytest.raises(DataError, match=r"lines: \[2\]\.part_number holds a lone surrogate"):
        load_json('[{}, {"part_number": "AC-\\uDC00"}]', limits, "lines")
    with pytest.raises(DataError, match="lines: not JSON"):  # encoded, not escaped: json.loads let it through
        load_json(b'[{"part_number": "AC-\xed\xa0\x80"}]', limits, "lines")
    assert load_json('["\\ud83d\\ude00"]', limits, "lines") == ["\U0001F600"]
    assert load_json(b'\xef\xbb\xbf{"a": 1}', limits, "lines") == {"a": 1}  # a BOM, as json.loads takes it


@pytest.mark.parametrize(("changes", "field"), [
    ({"invoice_number": "   "}, "invoice_number"), ({"vendor_id": " "}, "vendor_id"),
    ({"lines": [{**invoice()["lines"][0], "part_number": "  "}]}, "lines[1].part_number"),
    ({"extra_charges": [{"kind": " ", "amount": "10.00"}]}, "extra_charges[1].kind")])
def test_an_identifier_of_blanks_is_invalid_and_named(changes, field):
    """A number of spaces went to the RPA bot as an empty invoice number, which no duplicate
    check compares."""
    verdict = judge(invoice(**changes))
    assert verdict.status.value == "bad_invoice" and ("INVALID_INVOICE", field) in [
        (r.code, r.field) for r in verdict.reasons]


def test_a_line_whose_quantity_times_price_is_past_what_sampro_keeps_is_invalid_not_a_crash():
    """Each fits numeric(18, 4); their product overflowed the rules' arithmetic (InvalidOperation),
    and the invoice was dead-lettered instead of judged."""
    huge = {**invoice()["lines"][0], "quantity": "99999999999999", "unit_price": "99999999999999", "amount": None}
    verdict = judge(invoice(lines=[huge]))
    assert verdict.status.value == "bad_invoice"
    (reason,) = [r for r in verdict.reasons if r.field == "lines[1].quantity"]
    assert "is more than Sampro keeps (14 digits)" in reason.message


@pytest.mark.parametrize(("changes", "field", "message"), [
    ({"total_amount": "57.255"}, "total_amount", "total_amount: 57.255 is finer than USD's smallest unit, 0.01."),
    ({"tax_amount": "3.505", "total_amount": "57.255"}, "tax_amount",
     "tax_amount: 3.505 is finer than USD's smallest unit, 0.01."),
    ({"lines": [{**LINE, "amount": "31.001"}], "total_amount": "44.501"}, "lines[1].amount",
     "lines[1].amount: 31.001 is finer than USD's smallest unit, 0.01."),
    ({"extra_charges": [{"kind": "freight", "amount": "10.005"}], "total_amount": "57.255"},
     "extra_charges[1].amount", "extra_charges[1].amount: 10.005 is finer than USD's smallest unit, 0.01."),
])
def test_an_amount_finer_than_the_currencys_smallest_unit_is_invalid_and_named(changes, field, message):
    """57.255 USD went to the bot as the total: the ERP and the payment run round it into a
    difference for AP to chase."""
    assert (field, message) in findings(invoice(**changes))


def test_a_unit_price_may_be_finer_than_the_currency_and_trailing_zeros_are_no_finer():
    screws = {**LINE, "quantity": "8", "unit_price": "0.0125", "amount": "0.100"}
    doc = invoice(lines=[screws], tax_amount="0", extra_charges=[], total_amount="0.1000")
    assert findings(doc) == []


def test_currencies_round_to_iso_4217s_minor_unit_not_the_digits_they_are_shown_with():
    """CLDR shows HUF without decimals; ISO 4217 gives it two, as an ERP keeps it. A HUF line of
    2 x 15.25 came to 31 and was LINE_AMOUNT_MISMATCH; an invoice of 0.5 JPY is finer than a yen."""
    huf = invoice(currency="HUF", lines=[{**LINE, "unit_price": "15.25", "amount": "30.50"}], tax_amount="0",
                  extra_charges=[], total_amount="30.50")
    hungarian_po = po(currency="HUF", tax_rate=None, lines=[{**PO["lines"][0], "unit_price": "15.25"}])
    assert judge(huf, hungarian_po).status.value == "ready_to_process"
    yen = invoice(currency="JPY", lines=[{**LINE, "unit_price": "15", "amount": "30"}], tax_amount="0.5",
                  extra_charges=[], total_amount="30.5")
    assert ("tax_amount", "tax_amount: 0.5 is finer than JPY's smallest unit, 1.") in findings(yen)


@pytest.mark.parametrize("currency", ["BGN", "CNH", "xau"])
def test_a_currency_iso_4217_lists_no_unit_for_is_judged_against_its_po_at_hundredths(currency):
    """BGN, withdrawn when Bulgaria took the euro with POs still open, and CNH, the offshore yuan ERPs
    book in, are not on ISO 4217's current list: judged INVALID_INVOICE, which no clerk may release,
    their invoices could never be entered. The PO's currency decides."""
    doc = invoice(currency=currency, lines=[{**LINE, "amount": "31.00"}], tax_amount="0", extra_charges=[],
                  total_amount="31.00")
    assert judge(doc, po(currency=currency, tax_rate=None)).status.value == "ready_to_process"
    assert "CURRENCY_MISMATCH" in codes(judge(doc))  # the builders' PO is in USD


def test_a_number_past_the_limit_after_many_with_trailing_zeros_is_invalid_and_named():
    """Each "100.000" matched its zeros in several ways, and a unit price of five decimals after them
    tried each way of each number before it: 8 lines took 52 s, 10 outlived Kafka's poll interval,
    and the partition's batch was read again and hung again (the suite's timeout fails it so)."""
    lines = [{**LINE, "line_no": n, "quantity": "100.000", "unit_price": "0.0100", "amount": "1.000"}
             for n in range(1, 40)]
    lines.append({**LINE, "line_no": 40, "quantity": "100.000", "unit_price": "0.01255", "amount": None})
    assert ("lines[40].unit_price", "lines[40].unit_price: 0.01255 has 5 digits after the point; Sampro keeps "
            "4.") in findings(invoice(lines=lines, tax_amount="0.000", extra_charges=[], total_amount="40.000"))


def test_a_number_written_with_a_million_trailing_zeros_is_read_as_the_number_it_is():
    """Its zeros were dropped one copy of its digits at a time: 250,000 of them took 517 s, past
    Kafka's poll interval (the suite's timeout fails it so)."""
    zeros = Decimal("10." + "0" * 1_000_000)
    assert decimal_problem(zeros, Limits()) is None
    assert decimal_problem(zeros + Decimal("0.00001"), Limits()) == "has 5 digits after the point; Sampro keeps 4"
