"""The wire format comes from the models alone, and every schema released before is still read."""

from __future__ import annotations

import io
import json

import pytest
from fastavro import schemaless_reader, schemaless_writer

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


def test_free_form_json_travels_as_json_text_and_decimals_as_text():
    verdict = avro_schema(MODELS[0])
    audit = next(f for f in verdict["fields"] if f["name"] == "audit")["type"][1]
    assert next(f for f in audit["fields"] if f["name"] == "invoice")["type"] == "string"
    record = to_record(EXAMPLES[0])
    assert json.loads(record["audit"]["invoice"])["total_amount"] == "57.25"
    assert record["rpa_payload"]["lines"][0]["unit_price"] == "15.50"
