"""The wire format comes from the models alone, and every schema released before is still read."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime

import pytest
from fastavro import schemaless_reader, schemaless_writer

from rules.lifecycle import InvoiceReplaced
from schemas.avro import avro_schema
from schemas.codec import (
    MODELS,
    RELEASED,
    SINGLE_OBJECT_MARKER,
    SingleObjectCodec,
    fingerprint_of,
    released_schemas,
    schema_for,
    to_record,
)
from tests.unit.schemas.test_codec import EXAMPLES


def _fields(schema) -> list[str]:
    return [field["name"] for field in schema["fields"]]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_schema_has_exactly_its_models_fields(model):
    assert _fields(avro_schema(model)) == list(model.model_fields)


def test_every_released_schema_is_of_a_record_a_topic_carries():
    names = {model.__name__ for model in MODELS}
    released = {path.name.split(".")[1] for folder in RELEASED.iterdir() for path in folder.glob("*.avsc")}
    # Named types defined inside the records (findings, payload lines ...) are released with them.
    assert names <= released, names - released


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda m: type(m).__name__)
def test_the_current_schemas_read_what_each_released_schema_wrote(example):
    """BACKWARD compatibility: data written with a released schema resolves to the current one, so
    a worker on the new schema reads the topics' history."""
    writers = [schema for model, schema in released_schemas() if model is type(example)]
    assert writers, f"no released schema of {type(example).__name__}"
    for writer in writers:
        out = io.BytesIO()
        schemaless_writer(out, writer, to_record(example))  # fields the release lacked are left out
        record = schemaless_reader(io.BytesIO(out.getvalue()), writer, schema_for(type(example).__name__))
        assert set(record) == set(type(example).model_fields)


def test_a_record_written_with_a_released_schema_decodes_through_the_codec():
    codec = SingleObjectCodec()
    example = EXAMPLES[0]
    writers = [schema for model, schema in released_schemas() if model is type(example)]
    assert len(writers) >= 2  # 2026.11.1, and 2026.12.1 with the verdict's judged_after
    for writer in writers:
        out = io.BytesIO()
        schemaless_writer(out, writer, to_record(example))
        decoded = codec.decode(SINGLE_OBJECT_MARKER + fingerprint_of(writer) + out.getvalue())
        assert decoded.reasons == example.reasons and decoded.rpa_payload.lines == example.rpa_payload.lines


REPLACED = InvoiceReplaced(invoice_id="MP-1001", version=2, po_number="PO-5001", replaced_on="PO-5002",
                           replaced_at=datetime(2026, 11, 25, 9, tzinfo=UTC))

# The fingerprint of every released schema: the builds' records are read by it. A released file
# edited in place, where its model changed again, lost the records its first form wrote (2026.12.1's
# StatusChanged twice, 2026.12.3's RpaCompletion): a model's change releases its schema anew.
RELEASED_FINGERPRINTS = {
    ("Verdict", "84e6e90ff3698d75"), ("Verdict", "8abf1c32cc291ea4"), ("Verdict", "05ecddddd6f80170"),
    ("Verdict", "c6353618f6add892"),
    ("RpaCompletion", "e3848c7188119093"), ("RpaCompletion", "3047d22418e11443"),
    ("RpaCompletion", "b8549d3eece0111e"),
    ("InvoiceSubmitted", "f794676e5a4e487d"),
    ("InvoiceWithdrawn", "ec46c790eedc5a2b"),
    ("ReleaseRequested", "3b36b432c1f9453c"), ("ReleaseRequested", "5ca4bc5d441cc161"),
    ("ReleaseRequested", "e68aa75f6c1fb392"),
    ("DispatchApproved", "56a7938800237617"),
    ("RpaRequest", "2e6b9cce274da782"), ("RpaRequest", "ee05471a09a6bf25"), ("RpaRequest", "1d91f612ee27be6b"),
    ("RpaRequest", "94e45550eb32406d"),
    ("StatusChanged", "6bbdb30e4d9f6655"), ("StatusChanged", "b5d39a7844e4b455"),
    ("StatusChanged", "51d967b62ad4c01a"), ("StatusChanged", "983edc3421bdadbb"),
    ("StatusChanged", "fa35e0f327c95127"),
    ("PurchaseOrderChanged", "e0f18d36ee7c0a55"),
    ("InvoiceReplaced", "71db45ac97bb4d3b"),
}


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_current_schema_is_released(model):
    """A model changed without its schema released wrote records the next change of it left unread:
    a pending RPA request of ccd5f38 was dead-lettered after the upgrade ('unknown schema
    fingerprint'), and its email never sent. Release the schema under schemas/released/."""
    released = {fingerprint_of(schema) for released_model, schema in released_schemas() if released_model is model}
    current = fingerprint_of(schema_for(model.__name__))
    assert current in released, f"{model.__name__}'s schema ({current.hex()}) is not in schemas/released/"


def test_no_released_schema_is_changed_or_dropped():
    released = {(model.__name__, fingerprint_of(schema).hex()) for model, schema in released_schemas()}
    assert released == RELEASED_FINGERPRINTS, (
        f"changed or dropped: {sorted(RELEASED_FINGERPRINTS - released)}; new (list them here): "
        f"{sorted(released - RELEASED_FINGERPRINTS)}")


@pytest.mark.parametrize(("model", "writer"), released_schemas(),
                         ids=lambda value: getattr(value, "__name__", None) or fingerprint_of(value).hex())
def test_a_record_written_with_any_released_schema_decodes_through_the_codec(model, writer):
    example = next(example for example in (*EXAMPLES, REPLACED) if type(example) is model)
    out = io.BytesIO()
    schemaless_writer(out, writer, to_record(example))
    decoded = SingleObjectCodec().decode(SINGLE_OBJECT_MARKER + fingerprint_of(writer) + out.getvalue())
    written = _fields(writer)
    assert decoded.model_dump(include=set(written)) == example.model_dump(include=set(written))


def test_free_form_json_travels_as_json_text_and_decimals_as_text():
    verdict = avro_schema(MODELS[0])
    audit = next(f for f in verdict["fields"] if f["name"] == "audit")["type"][1]
    assert next(f for f in audit["fields"] if f["name"] == "invoice")["type"] == "string"
    record = to_record(EXAMPLES[0])
    assert json.loads(record["audit"]["invoice"])["total_amount"] == "57.25"
    assert record["rpa_payload"]["lines"][0]["unit_price"] == "15.50"
