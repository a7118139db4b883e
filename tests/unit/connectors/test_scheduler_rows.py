"""The sink writes a verdict from its Avro record as read (`rows.verdict_entry`), without decoding
it into a Verdict: what it writes must be exactly what the decoded verdict would write."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from connectors.scheduler.rows import (
    entry_of,
    fitted_to_column,
    reason_codes_column,
    status_change_entry,
    stored_key,
    verdict_entry,
)
from connectors.scheduler.tables import REASON_CODES_LENGTH
from rules.errors import DataError
from rules.lifecycle import InvoiceStatus, StatusChanged
from rules.models import Verdict
from rules.po_ledger import verdict_event_id
from schemas.codec import SingleObjectCodec
from tests.unit.rules.test_golden_verdicts import _verdicts

CODEC = SingleObjectCodec()


def as_read(message: Verdict | StatusChanged) -> dict:
    kind, record = CODEC.read_unvalidated(CODEC.encode(message))
    assert kind is type(message)
    return record


def pinned_verdicts() -> list[Verdict]:
    return [Verdict.model_validate_json(text) for name, text in _verdicts() if not name.endswith("-payload")]


def test_every_pinned_verdict_writes_the_same_from_its_record_as_decoded():
    verdicts = pinned_verdicts()
    assert len(verdicts) > 500
    for verdict in verdicts:
        decoded = CODEC.decode(CODEC.encode(verdict))
        assert isinstance(decoded, Verdict)
        assert verdict_entry(as_read(verdict)) == entry_of(decoded), verdict.invoice_id


def test_a_judgement_after_a_sampro_change_and_a_verdict_of_no_invoice_version():
    verdict = next(v for v in pinned_verdicts() if v.invoice_id is not None)
    again = verdict.model_copy(update={"judged_after": "sampro:PO-5001:1764835200000"})
    entry, first = verdict_entry(as_read(again)), verdict_entry(as_read(verdict))
    assert entry == entry_of(again)
    assert entry is not None and first is not None
    assert entry.event["event_id"].startswith(first.event["event_id"] + ":after:")  # a new history event
    nameless = verdict.model_copy(update={"invoice_id": None, "invoice_version": None})
    assert verdict_entry(as_read(nameless)) is None and entry_of(nameless) is None


def test_a_judgement_after_a_change_is_the_same_event_from_its_record_as_the_worker_names_it():
    """The worker names a verdict's event from the model (`streams.decisions`), and waits for the
    sink to record it; the sink names it from the Avro record. Another judgement after the same
    change, with other findings, is another event."""
    judged = [verdict.model_copy(update={"judged_after": "sampro:PO-5001:1764835200000"})
              for verdict in pinned_verdicts() if verdict.invoice_id is not None and verdict.reasons]
    assert len(judged) > 100
    for again in judged:
        entry = verdict_entry(as_read(again))
        assert entry is not None and entry.event["event_id"] == verdict_event_id(
            again.invoice_id, again.invoice_version, again.status.value, again.rules_version, again.judged_after,
            again.reasons), again.invoice_id
    other = judged[0].model_copy(update={"reasons": judged[0].reasons[1:] or judged[1].reasons})
    assert verdict_entry(as_read(other)).event["event_id"] != verdict_entry(as_read(judged[0])).event["event_id"]


def test_numbers_the_vendor_sent_as_json_numbers_are_written_as_decoding_would():
    verdict = next(v for v in pinned_verdicts() if v.audit is not None and isinstance(v.audit.invoice, dict))
    document = {**verdict.audit.invoice, "total_amount": 1e5, "tax_amount": 15.50, "version": 2}  # type: ignore[union-attr]
    sent = verdict.model_copy(update={"audit": verdict.audit.model_copy(update={"invoice": document})})  # type: ignore[union-attr]
    decoded = CODEC.decode(CODEC.encode(sent))
    entry = verdict_entry(as_read(sent))
    assert isinstance(decoded, Verdict) and entry == entry_of(decoded)
    assert entry is not None and entry.fields["invoice_document"]["version"] == 2


@pytest.mark.parametrize("field, value", [("evaluated_at", "the day after tomorrow"), ("audit", "{not json")])
def test_a_record_no_verdict_could_be_is_refused_naming_the_invoice(field, value):
    verdict = next(v for v in pinned_verdicts() if v.invoice_id is not None and v.audit is not None)
    record = as_read(verdict)
    if field == "audit":
        record["audit"]["invoice"] = value
    else:
        record[field] = value
    with pytest.raises(DataError, match=f"Verdict record of {verdict.invoice_id} v{verdict.invoice_version}"):
        verdict_entry(record)


def status_changes() -> list[StatusChanged]:
    payload = next(v.rpa_payload for v in pinned_verdicts() if v.rpa_payload is not None)
    at = datetime(2026, 12, 4, 9, 30, tzinfo=UTC)
    base = {"invoice_id": "MP-1", "invoice_version": 2, "po_number": "PO-1", "occurred_at": at}
    return [StatusChanged(event_id="e1", status=InvoiceStatus.SENT_TO_RPA, rpa_payload=payload, **base),
            StatusChanged(event_id="e2", status=InvoiceStatus.ENTERED, sampro_invoice_id="S-9", actor="rpa", **base),
            StatusChanged(event_id="e3", status=InvoiceStatus.RELEASED, actor="ana", reason="price agreed",
                          holds=["PRICE_MISMATCH:1:unit_price"], **base)]


@pytest.mark.parametrize("change", status_changes(), ids=lambda change: change.status.value)
def test_a_status_change_writes_the_same_from_its_record_as_decoded(change):
    assert status_change_entry(as_read(change)) == entry_of(change)


def test_a_status_change_record_of_no_time_is_refused_naming_the_invoice():
    record = as_read(status_changes()[0])
    record["occurred_at"] = "soon"
    with pytest.raises(DataError, match="StatusChanged record of MP-1 v2"):
        status_change_entry(record)


def test_the_reason_codes_column_holds_each_code_once_between_spaces_within_its_length():
    assert reason_codes_column([{"code": "PRICE_MISMATCH"}, {"code": "TAX_MISMATCH"}, {"code": "PRICE_MISMATCH"}]) == (
        " PRICE_MISMATCH TAX_MISMATCH ")
    assert reason_codes_column([]) is None and reason_codes_column(None) is None
    many = reason_codes_column([{"code": f"CODE_{n:03d}"} for n in range(100)])  # a record no rule table makes
    assert len(many) <= REASON_CODES_LENGTH and many.startswith(" CODE_000 ") and many.endswith(" ")
    assert many.split() == [f"CODE_{n:03d}" for n in range(len(many.split()))]  # whole codes only
    # A space would split a code in two: such a code, or one longer than the column, is left out.
    assert reason_codes_column([{"code": "NOT ONE"}, {"code": "X" * REASON_CODES_LENGTH}]) is None
    assert reason_codes_column([{"code": "NOT ONE"}, {"code": "TAX_MISMATCH"}]) == " TAX_MISMATCH "


def test_keys_and_vendor_text_are_cut_to_what_sql_servers_columns_count():
    """NVARCHAR(64) counts UTF-16 units: 64 emoji (128 units) fit a count of characters, and were
    refused there, with the verdict's row."""
    def units(text: str) -> int:
        return len(text.encode("utf-16-le")) // 2

    emoji = "\U0001f9fe" * 64
    assert units(stored_key(emoji)) == 64 and stored_key(emoji) == "\U0001f9fe" * 32
    assert stored_key("x" + emoji) == "x" + "\U0001f9fe" * 31  # 63 units: no half of a pair at the cut
    assert stored_key("a" * 64) == "a" * 64
    fitted = fitted_to_column(emoji, "vendor_id")
    assert units(fitted) <= 64 and fitted.endswith("\u2026")
    assert fitted_to_column("V100", "vendor_id") == "V100"
