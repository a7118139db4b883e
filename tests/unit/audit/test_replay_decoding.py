"""The replay reads a verdict without its RPA payload: judged again, it must be judged exactly as
the fully decoded verdict is, whichever released schema wrote it."""

from __future__ import annotations

import io
from decimal import Decimal

import pytest
from fastavro import schemaless_writer

from audit.replay import recorded_message
from rules.models import Verdict
from rules.policy import Policy, Tolerance
from rules.rejudge import compare, judge_again
from schemas.codec import (
    SINGLE_OBJECT_MARKER,
    DecodeError,
    SingleObjectCodec,
    fingerprint_of,
    released_schemas,
    to_record,
)
from tests.unit.audit.recorded import recorded_verdicts, verdicts_topic

POLICIES = [Policy(), Policy(default=Tolerance(price_abs=Decimal("0.10")))]
CODEC = SingleObjectCodec()


@pytest.fixture(scope="module")
def verdicts() -> list[Verdict]:
    _, placed = verdicts_topic(count=200)
    found = recorded_verdicts(placed)
    # Every kind of verdict the replay meets: with and without a payload, with findings.
    assert any(v.rpa_payload for v in found) and any(v.reasons for v in found)
    return found


def _written_with(writer: dict, verdict: Verdict) -> bytes:
    body = io.BytesIO()
    schemaless_writer(body, writer, to_record(verdict))  # fields the release lacked are left out
    return SINGLE_OBJECT_MARKER + fingerprint_of(writer) + body.getvalue()


def _same_judgement(value: bytes, policy: Policy) -> None:
    full, partial = CODEC.decode(value), recorded_message(CODEC, value)
    assert isinstance(full, Verdict) and isinstance(partial, Verdict)
    assert partial.rpa_payload is None
    # What the replay report shows of the recorded verdict ...
    assert (partial.invoice_id, partial.invoice_version, partial.po_number, partial.rules_version) == (
        full.invoice_id, full.invoice_version, full.po_number, full.rules_version)
    # ... and of its judgement again, to the last finding.
    again_full, again_partial = judge_again(full, policy), judge_again(partial, policy)
    assert again_partial == again_full
    assert compare(partial, again_partial) == compare(full, again_full)


@pytest.mark.parametrize("policy", POLICIES, ids=["same rules", "lenient price"])
def test_a_verdict_without_its_payload_is_judged_as_the_whole_verdict(verdicts, policy):
    for verdict in verdicts:
        _same_judgement(CODEC.encode(verdict), policy)


@pytest.mark.parametrize("policy", POLICIES, ids=["same rules", "lenient price"])
def test_a_verdict_written_with_an_older_released_schema_is_judged_as_the_whole_verdict(verdicts, policy):
    writers = [schema for model, schema in released_schemas() if model is Verdict]
    assert fingerprint_of(writers[0]) != CODEC.encode(verdicts[0])[2:10]  # 2026.11.1: not today's schema
    # Audits of 2026.11.1 counted the quantities at the RPA bot by part: judged again through
    # `_by_po_line`, which reads the PO snapshot.
    by_part = [v.model_copy(update={"audit": v.audit.model_copy(update={"in_flight": {"P-1": Decimal(3)}})})
               for v in verdicts[:20] if v.audit is not None and v.po_snapshot is not None]
    for writer in writers:
        for verdict in [*verdicts[:40], *by_part]:
            _same_judgement(_written_with(writer, verdict), policy)


def test_a_verdict_that_does_not_validate_is_reported_as_the_full_decode_reports_it(verdicts):
    broken = to_record(verdicts[0])
    broken["po_snapshot"]["currency"] = "US"  # a currency has three letters
    writer = next(schema for model, schema in reversed(released_schemas()) if model is Verdict)
    body = io.BytesIO()
    schemaless_writer(body, writer, broken)
    value = SINGLE_OBJECT_MARKER + fingerprint_of(writer) + body.getvalue()
    with pytest.raises(DecodeError) as full:
        CODEC.decode(value)
    with pytest.raises(DecodeError) as partial:
        recorded_message(CODEC, value)
    assert str(partial.value) == str(full.value) and "currency" in str(full.value)


def test_other_records_and_bytes_are_decoded_in_full():
    status_change = next(m for _, m in verdicts_topic(count=20)[1] if not isinstance(m, Verdict))
    assert recorded_message(CODEC, CODEC.encode(status_change)) == status_change
    with pytest.raises(DecodeError, match="not Avro single-object encoding"):
        recorded_message(CODEC, b"not avro")
