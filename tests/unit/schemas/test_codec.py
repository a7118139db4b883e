"""Every record type round-trips through its Avro schema, framings are right, and schemas evolve."""

from __future__ import annotations

import copy
import io
import json
import socket
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from fastavro import parse_schema, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form
from pydantic import ValidationError

from rules.errors import Unavailable
from rules.lifecycle import (
    DispatchApproved,
    InvoiceStatus,
    InvoiceSubmitted,
    InvoiceWithdrawn,
    PurchaseOrderChanged,
    ReleaseRequested,
    RpaRequest,
    StatusChanged,
)
from rules.models import CompletionOutcome, RpaCompletion, Verdict
from schemas.avro import avro_schema
from schemas.codec import DecodeError, RegistryCodec, SingleObjectCodec, from_record, schema_for, to_record
from streams.settings import Settings
from tests.unit.rules.builders import INVOICE, judge

AT = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)
VERDICT_READY = judge(INVOICE)
VERDICT_BAD = judge({**INVOICE, "lines": [], "invoice_id": "MP-2"}, None)

EXAMPLES = [
    VERDICT_READY,
    VERDICT_BAD,
    RpaCompletion(event_id="e1", invoice_id="MP-1001", invoice_version=1, po_number="PO-5001",
                  outcome=CompletionOutcome.SUCCESS, sampro_invoice_id="S-77", occurred_at=AT),
    RpaCompletion(event_id="e2", invoice_id="MP-1001", invoice_version=1, po_number="PO-5001",
                  outcome=CompletionOutcome.FAILURE, error="Sampro timed out", occurred_at=AT),
    InvoiceSubmitted(invoice_id="MP-1001", version=2, po_number="PO-5001", document=INVOICE, received_at=AT),
    InvoiceSubmitted(invoice_id="MP-X", version=1, po_number="PO-1", document={"lines": "nonsense"}, received_at=AT),
    InvoiceWithdrawn(invoice_id="MP-1001", version=2, po_number="PO-5001", withdrawn_at=AT),
    ReleaseRequested(command_id="c1", invoice_id="MP-1001", invoice_version=1, po_number="PO-5001", user="ana",
                     reason="price agreed", issued_at=AT),
    DispatchApproved(command_id="c2", invoice_id="MP-1001", invoice_version=1, po_number="PO-5001", user="ana",
                     issued_at=AT),
    RpaRequest(invoice_id="MP-1001", invoice_version=1, po_number="PO-5001", payload=VERDICT_READY.rpa_payload,
               requested_at=AT),
    StatusChanged(event_id="s1", invoice_id="MP-1001", invoice_version=1, po_number="PO-5001",
                  status=InvoiceStatus.RELEASED, occurred_at=AT, actor="ana", reason="ok"),
    PurchaseOrderChanged(event_id="sampro:PO-5001:1764578400000", po_number="PO-5001", changed_at=AT),
    VERDICT_READY.model_copy(update={"judged_after": "sampro:PO-5001:1764578400000"}),
]


@pytest.mark.parametrize("model", EXAMPLES, ids=lambda m: type(m).__name__)
def test_every_model_round_trips_exactly(model):
    codec = SingleObjectCodec()
    decoded = codec.decode(codec.encode(model))
    assert decoded == model
    assert decoded.model_dump_json() == model.model_dump_json()  # "15.50" stays "15.50"


@pytest.mark.parametrize("model", [*EXAMPLES, StatusChanged(
    event_id="s2", invoice_id="MP-1001", invoice_version=1, po_number="PO-5001", status=InvoiceStatus.SENT_TO_RPA,
    occurred_at=AT, rpa_payload=VERDICT_READY.rpa_payload)], ids=lambda m: type(m).__name__)
def test_a_nested_record_named_for_its_union_branch_writes_the_bytes_fastavro_would_choose(model):
    """The codec names the branch of a union that takes a record (fastavro's tuple notation); the
    bytes are those of fastavro choosing the branch itself."""
    schema, out = schema_for(type(model).__name__), io.BytesIO()
    schemaless_writer(out, schema, to_record(model))
    assert SingleObjectCodec().encode(model)[10:] == out.getvalue()


@pytest.mark.parametrize("model", EXAMPLES, ids=lambda m: type(m).__name__)
def test_a_record_read_unvalidated_is_what_decode_validates(model):
    codec = SingleObjectCodec()
    kind, record = codec.read_unvalidated(codec.encode(model))
    assert kind is type(model) and set(record) == set(kind.model_fields)
    if isinstance(model, Verdict) and model.audit is not None:
        assert isinstance(record["audit"]["invoice"], str)  # free-form JSON: still its text
    assert from_record(kind, record) == model


def test_a_record_of_the_current_schema_is_read_with_that_schema_as_both_writer_and_reader(monkeypatch):
    """The current schema is also a released one; read with an equal copy as the writer's, fastavro
    compared the two in depth on every record before reading it."""
    import schemas.codec

    given = []
    real = schemas.codec.schemaless_reader
    monkeypatch.setattr(schemas.codec, "schemaless_reader",
                        lambda data, writer, reader: given.append((writer, reader)) or real(data, writer, reader))
    codec = SingleObjectCodec()
    assert codec.decode(codec.encode(VERDICT_READY)) == VERDICT_READY
    ((writer, reader),) = given
    assert writer is reader is schema_for("Verdict")


def test_a_record_read_unvalidated_is_refused_as_decode_refuses_it():
    with pytest.raises(DecodeError, match="unknown schema fingerprint"):
        SingleObjectCodec().read_unvalidated(b"\xc3\x01" + bytes(8) + b"body")


def test_single_object_header_is_marker_and_crc64_fingerprint():
    data = SingleObjectCodec().encode(EXAMPLES[0])
    expected = fingerprint(to_parsing_canonical_form(schema_for("Verdict")), "CRC-64-AVRO")
    assert data[:2] == b"\xc3\x01" and data[2:10].hex() == expected


def test_fingerprint_matches_the_avro_reference_value():
    # CRC-64-AVRO of the schema "int", as Avro's Java implementation writes it (little-endian).
    assert fingerprint(to_parsing_canonical_form("int"), "CRC-64-AVRO") == "8f5c393f1ad57572"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "not Avro single-object"),
        (b"\x00\x01" + b"\x00" * 12, "not Avro single-object"),
        (b"\xc3\x01" + b"\xff" * 8 + b"\x02", "unknown schema fingerprint"),
    ],
)
def test_undecodable_bytes_raise_decode_error_with_the_reason(data, reason):
    with pytest.raises(DecodeError, match=reason):
        SingleObjectCodec().decode(data)


def test_truncated_body_is_a_decode_error():
    data = SingleObjectCodec().encode(EXAMPLES[0])
    with pytest.raises(DecodeError, match="cannot be read"):
        SingleObjectCodec().decode(data[:40])


def _next_version(name: str) -> dict:
    """The schema as its next version would be: one optional field added."""
    schema = copy.deepcopy(schema_for(name))
    schema["fields"].append({"name": "channel", "type": ["null", "string"], "default": None})
    return schema


@pytest.mark.parametrize("model", EXAMPLES[:5], ids=lambda m: f"{type(m).__name__}-{id(m) % 97}")
def test_the_next_schema_version_reads_what_the_current_one_wrote(model, monkeypatch):
    old = SingleObjectCodec()
    written = old.encode(model)
    name = type(model).__name__
    next_schema = _next_version(name)
    monkeypatch.setattr("schemas.codec.schema_for", lambda n, *a: next_schema if n == name else schema_for(n))
    reader = SingleObjectCodec(older_versions=[(type(model), schema_for(name))])
    assert reader.decode(written) == model
    assert reader.encode(model)[2:10] != written[2:10]  # it really is another schema version


def _registry(name: str) -> SchemaRegistryClient:
    # The client's own in-memory registry: no registry server can run on this machine.
    return SchemaRegistryClient.new_client({"url": f"mock://{name}"})


@pytest.mark.parametrize("model", EXAMPLES, ids=lambda m: type(m).__name__)
def test_every_model_round_trips_through_the_registry(model):
    registry = _registry("round-trip")
    data = RegistryCodec("mock://round-trip", client=registry).encode(model)
    assert data[:1] == b"\x00" and int.from_bytes(data[1:5], "big") > 0
    other = RegistryCodec("mock://round-trip", client=registry)  # a second reader looks the id up
    assert other.decode(data) == model and other.kind(data) is type(model)


def test_the_registry_framing_is_confluents_around_the_plain_avro_body():
    codec = RegistryCodec("mock://framing", client=_registry("framing"))
    data = codec.encode(EXAMPLES[0])
    body = io.BytesIO()
    schemaless_writer(body, schema_for("Verdict"), to_record(EXAMPLES[0]))
    assert data[5:] == body.getvalue()


def _defaults(schema) -> int:
    """Defaults in a schema, leaving out fastavro's own bookkeeping keys (`__named_schemas`)."""
    if isinstance(schema, dict):
        return ("default" in schema) + sum(_defaults(v) for k, v in schema.items() if not k.startswith("__"))
    return sum(_defaults(item) for item in schema) if isinstance(schema, list) else 0


@pytest.mark.parametrize("model", EXAMPLES[:5], ids=lambda m: type(m).__name__)
def test_schemas_are_registered_with_their_defaults(model):
    registry = _registry("defaults")
    RegistryCodec("mock://defaults", client=registry).encode(model)
    name = type(model).__name__
    registered = json.loads(registry.get_latest_version(f"invoice_automation.{name}").schema.schema_str)
    assert _defaults(registered) == _defaults(avro_schema(type(model)))
    assert _defaults(avro_schema(type(EXAMPLES[0]))) > 0  # a verdict's optional fields have theirs
    assert to_parsing_canonical_form(registered) == to_parsing_canonical_form(schema_for(name))


def test_the_subject_is_named_from_the_template():
    registry = _registry("subjects")
    codec = RegistryCodec("mock://subjects", client=registry, subject_template="ap-prod.{record}")
    codec.encode(EXAMPLES[0])
    codec.encode(EXAMPLES[2])
    assert sorted(registry.get_subjects()) == ["ap-prod.invoice_automation.RpaCompletion",
                                               "ap-prod.invoice_automation.Verdict"]


@pytest.mark.parametrize(("template", "message"), [("{topic}-{record}", "only {record}"),
                                                   ("invoice-automation", "must contain {record}")])
def test_a_subject_template_without_the_record_is_refused(template, message):
    with pytest.raises(ValidationError, match=message):
        Settings(schema_registry_subject=template)


def test_the_registry_reads_an_older_writer_version_into_the_current_schema(monkeypatch):
    registry = _registry("versions")
    written = RegistryCodec("mock://versions", client=registry).encode(EXAMPLES[2])
    current = avro_schema(RpaCompletion)
    next_version = {**current, "fields": [*current["fields"],
                                          {"name": "channel", "type": ["null", "string"], "default": None}]}
    monkeypatch.setattr("schemas.codec.avro_schema", lambda model: next_version if model is RpaCompletion
                        else avro_schema(model))
    monkeypatch.setattr("schemas.codec.schema_for", lambda n, *a: parse_schema(next_version) if n == "RpaCompletion"
                        else schema_for(n))
    reader = RegistryCodec("mock://versions", client=registry)
    assert reader.decode(written) == EXAMPLES[2]
    assert reader.encode(EXAMPLES[2])[1:5] != written[1:5]  # the reader really registered another version


def test_bytes_the_registry_does_not_know_are_a_decode_error():
    codec = RegistryCodec("mock://unknown", client=_registry("unknown"))
    with pytest.raises(DecodeError, match="not Confluent-framed"):
        codec.decode(b"\x01rest")
    with pytest.raises(DecodeError, match="schema id 99: unknown to the schema registry"):
        codec.decode(b"\x00\x00\x00\x00\x63body")
    assert codec.kind(b"\x00\x00\x00\x00\x63body") is None


def test_records_written_before_the_registry_was_set_are_still_read():
    """Every single-object record failed once SCHEMA_REGISTRY_URL was set: the topics' history,
    which replay and explain read, and what was in flight at the switch."""
    codec = RegistryCodec("mock://switch", client=_registry("switch"))
    for model in EXAMPLES:
        before = SingleObjectCodec().encode(model)
        assert codec.decode(before) == model and codec.kind(before) is type(model)
    assert codec.encode(EXAMPLES[0])[:1] == b"\x00"  # what it writes is the registry's


def test_a_record_of_another_namespace_is_not_ours():
    """com.acme.billing.RpaCompletion was taken for ours, and failed on a field it lacks."""
    registry = _registry("namespaces")
    theirs = {"type": "record", "name": "RpaCompletion", "namespace": "com.acme.billing",
              "fields": [{"name": "amount", "type": "long"}]}
    schema_id = registry.register_schema("billing", Schema(json.dumps(theirs), "AVRO"))
    codec = RegistryCodec("mock://namespaces", client=registry)
    data = b"\x00" + schema_id.to_bytes(4, "big") + b"\x02"
    with pytest.raises(DecodeError, match="com.acme.billing.RpaCompletion, not a record this service reads"):
        codec.decode(data)
    assert codec.kind(data) is None


def test_bytes_after_the_record_are_a_decode_error():
    """They were dropped unseen: a record written under another schema than its fingerprint names."""
    data = SingleObjectCodec().encode(EXAMPLES[2])
    with pytest.raises(DecodeError, match="RpaCompletion body has 70 bytes after its record"):
        SingleObjectCodec().decode(data + b"GARBAGE" * 10)


def test_a_registry_that_does_not_answer_is_unavailable():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    client = SchemaRegistryClient.new_client({"url": url, "max.retries": 0})
    with pytest.raises(Unavailable, match="schema-registry is unavailable: registering: ConnectError"):
        RegistryCodec(url, client=client).encode(EXAMPLES[2])


def test_decimal_strings_are_exact_on_the_wire():
    codec = SingleObjectCodec()
    decoded = codec.decode(codec.encode(EXAMPLES[4]))
    assert decoded.document["lines"][0]["unit_price"] == "15.50"
    assert decoded.document["tax_amount"] == "3.50"
    assert json.loads(decoded.model_dump_json())["document"]["total_amount"] == "57.25"


def test_a_number_in_free_json_travels_as_a_number():
    """pydantic's JSON mode wrote a Decimal as text: `"description": 2.5` reached the rules as the
    text "2.5", which they took, where `validate` refuses the number; 10.250 became "10.250"."""
    document = {"lines": [{"description": Decimal("2.5"), "unit_price": Decimal("10.250"), "quantity": 10**30,
                           "amount": Decimal("1E+2"), "part_number": None, "taxable": True}]}
    submitted = InvoiceSubmitted(invoice_id="MP-1", version=1, po_number="PO-1", document=document,
                                 received_at=datetime(2026, 11, 20, tzinfo=UTC))
    assert json.loads(to_record(submitted)["document"], parse_float=Decimal) == document
    assert '"description":2.5' in to_record(submitted)["document"]
    for codec in (SingleObjectCodec(), RegistryCodec("mock://numbers", client=_registry("numbers"))):
        line = codec.decode(codec.encode(submitted)).document["lines"][0]
        assert line == document["lines"][0] and type(line["description"]) is Decimal
        assert str(line["unit_price"]) == "10.250" and type(line["quantity"]) is int


@pytest.mark.parametrize("text", ['{"invoice_id": "MP-1001", truncated', "[" * 100_000 + "]" * 100_000],
                         ids=["truncated", "too-deep"])
def test_free_json_that_is_not_json_text_is_a_decode_error_naming_the_field(text):
    """A JSONDecodeError or RecursionError stopped the audit replay and explain with a traceback."""
    record = to_record(VERDICT_READY)
    record["audit"]["invoice"] = text
    out = io.BytesIO()
    schemaless_writer(out, schema_for("Verdict"), record)
    data = SingleObjectCodec().encode(VERDICT_READY)[:10] + out.getvalue()
    with pytest.raises(DecodeError, match=r"Verdict record's audit\.invoice is not JSON text: "
                                          r"(JSONDecodeError|RecursionError)"):
        SingleObjectCodec().decode(data)


def _with(model, field: str, value) -> bytes:
    """The model's record with one field set as no model would allow, in its own framing."""
    record = to_record(model)
    record[field] = value
    out = io.BytesIO()
    schemaless_writer(out, schema_for(type(model).__name__), record)
    return SingleObjectCodec().encode(model)[:10] + out.getvalue()


def test_free_json_with_nan_is_a_decode_error():
    """Read as floats, NaN and Infinity were named by the rules, then written back as null: a
    replay judged another invoice than the worker had. No JSON standard allows them."""
    for constant in ("NaN", "-Infinity"):
        with pytest.raises(DecodeError, match=f"document is not JSON text: ValueError: {constant} is not JSON"):
            SingleObjectCodec().decode(_with(EXAMPLES[4], "document", f'{{"total_amount": {constant}}}'))


def test_free_json_with_a_lone_surrogate_is_a_decode_error_naming_where():
    """No UTF-8 carries one: the verdict naming it could not be written, and the invoice ended
    unjudged, naming no field. A surrogate pair is a character like any other."""
    lone = _with(EXAMPLES[4], "document", '{"lines": [{"part_number": "AC-\\ud800"}]}')
    with pytest.raises(DecodeError, match=r"document is not JSON text: .*lines\[1\]\.part_number holds a lone"):
        SingleObjectCodec().decode(lone)
    paired = SingleObjectCodec().decode(_with(EXAMPLES[4], "document", '{"invoice_number": "INV-\\ud83d\\ude00"}'))
    assert paired.document == {"invoice_number": "INV-\U0001F600"}


def test_a_verdict_an_older_release_wrote_with_a_line_number_past_32_bits_is_still_read():
    """Its invoice was judged ready before invoices' line numbers were bound: its ledger entry, its
    RPA request and its verdict must still be read, or every later message on its PO fails."""
    payload = VERDICT_READY.rpa_payload
    assert payload is not None
    lines = [payload.lines[0].model_copy(update={"invoice_line_no": 2**31, "po_line_no": 2**31}), *payload.lines[1:]]
    older = VERDICT_READY.model_copy(update={"rpa_payload": payload.model_copy(update={"lines": lines})})
    codec = SingleObjectCodec()
    assert codec.decode(codec.encode(older)) == older
    assert Verdict.model_validate_json(older.model_dump_json()) == older


def test_a_list_of_a_million_bad_items_is_refused_at_its_first():
    """Each bad hold was an error, and listing a million of them took the worker past 1 GB."""
    with pytest.raises(DecodeError, match=r"'loc': \('holds', 0\)"):
        SingleObjectCodec().decode(_with(EXAMPLES[7], "holds", [""] * 1_000_000))
    with pytest.raises(DecodeError, match=r"at most 200 items"):
        SingleObjectCodec().decode(_with(EXAMPLES[7], "holds", ["PRICE_MISMATCH:1:unit_price"] * 201))
    assert SingleObjectCodec().decode(_with(EXAMPLES[7], "holds", ["A:1:x"] * 200)).holds == ["A:1:x"] * 200


def test_a_record_under_a_schema_that_is_not_avro_is_a_decode_error():
    """Protobuf and JSON Schema records carry the same magic byte: the registry's schema text is
    not JSON then, and reading its name stopped the audit replay with a traceback."""
    registry = _registry("protobuf")
    schema_id = registry.register_schema("orders-value", Schema('syntax = "proto3"; message Order { string id = 1; }',
                                                                "PROTOBUF"))
    data = b"\x00" + schema_id.to_bytes(4, "big") + b"\x00\x0a\x03abc"
    codec = RegistryCodec("mock://protobuf", client=registry)
    assert codec.kind(data) is None
    with pytest.raises(DecodeError, match=f"schema id {schema_id} is not an Avro record schema"):
        codec.decode(data)


@pytest.mark.parametrize("codec", [lambda: SingleObjectCodec(),
                                   lambda: RegistryCodec("mock://tombstone", client=_registry("tombstone"))],
                         ids=["single-object", "registry"])
def test_a_record_without_a_value_is_undecodable_not_an_unexpected_error(codec):
    """A tombstone on rpa.requests or the verdicts topic was a TypeError: dead-lettered as an
    unexpected error, with a traceback in the log, where it is bad data."""
    with pytest.raises(DecodeError, match="a record without a value"):
        codec().decode(None)
