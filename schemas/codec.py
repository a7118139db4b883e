"""Avro on the wire, with fastavro; the schemas come from the models (see `schemas.avro`).

Default framing: Avro single-object encoding (marker C3 01, then the 8-byte little-endian
CRC-64-AVRO fingerprint of the writer schema's Parsing Canonical Form, then the binary body),
so every message says which schema wrote it and no schema registry is needed. Decoding looks
the fingerprint up among the current schemas and every released one, and resolves it to the
current reader schema. With a registry URL, confluent-kafka's AvroSerializer and AvroDeserializer
write and read the Confluent framing (magic 0, 4-byte schema id) instead, registering each schema
with its defaults.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any, Protocol

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, load_schema, to_parsing_canonical_form
from pydantic import BaseModel, ValidationError

from rules.errors import DataError, Unavailable
from rules.lifecycle import (
    DispatchApproved,
    InvoiceReplaced,
    InvoiceSubmitted,
    InvoiceWithdrawn,
    PurchaseOrderChanged,
    ReleaseRequested,
    RpaRequest,
    StatusChanged,
)
from rules.limits import lone_surrogate, not_json
from rules.models import RpaCompletion, Verdict
from schemas.avro import NAMESPACE, avro_schema, free_json_paths
from schemas.exact_json import dump_exact

RELEASED = Path(__file__).with_name("released")
SINGLE_OBJECT_MARKER = b"\xc3\x01"
CONFLUENT_MAGIC = b"\x00"

# Every record a topic carries.
MODELS: tuple[type[BaseModel], ...] = (
    Verdict, RpaCompletion, InvoiceSubmitted, InvoiceWithdrawn, ReleaseRequested, DispatchApproved, RpaRequest,
    StatusChanged, PurchaseOrderChanged, InvoiceReplaced,
)


class DecodeError(DataError):
    """Bytes that are not a record we know; the message says why."""


# A record with a null value on a topic of messages: no producer of this pipeline writes one.
TOMBSTONE = "a record without a value (a tombstone), which no message of this topic is"


class EncodeError(DataError):
    """A message that cannot be written (bytes that are no text in a document from a table that
    keeps them): that record is dead-lettered, and the rest of its batch goes on."""


@contextmanager
def _encoding(model: BaseModel) -> Iterator[None]:
    try:
        yield
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:  # pydantic's, json's, fastavro's
        raise EncodeError(f"{type(model).__name__} cannot be written: {type(exc).__name__}: "
                          f"{str(exc)[:200]}") from None


class Codec(Protocol):
    def encode(self, model: BaseModel) -> bytes: ...

    def decode(self, data: bytes | None) -> BaseModel: ...

    def read_unvalidated(self, data: bytes | None) -> tuple[type[BaseModel], dict[str, Any]]:
        """The record's model type and its Avro data, resolved to the current schema but not
        validated: free-form JSON is still JSON text. `decode` is this and then the model's
        validation; a reader that needs only part of a record (the audit replay, the
        processscheduler sink) reads just that part, and pays for no more."""

    def kind(self, data: bytes) -> type[BaseModel] | None:
        """The record type the bytes hold, from the framing alone; None when unknown."""


AvroSchema = dict[str, Any]  # a record schema, as fastavro parses it


def _record_schema(schema: object) -> AvroSchema:
    """fastavro's parse_schema and load_schema return any schema; a record schema is a dict."""
    if not isinstance(schema, dict):
        raise TypeError(f"not an Avro record schema: {schema!r}")
    return schema


@cache
def schema_for(name: str) -> AvroSchema:
    """The parsed current schema of the model named `invoice_automation.<name>`."""
    model = next(model for model in MODELS if model.__name__ == name)
    return _record_schema(parse_schema(avro_schema(model)))


@cache
def released_schemas() -> tuple[tuple[type[BaseModel], AvroSchema], ...]:
    """Every schema released before, of every record a topic carries: their data stays readable."""
    found = []
    for folder in sorted(RELEASED.iterdir()):
        for model in MODELS:
            path = folder / f"{NAMESPACE}.{model.__name__}.avsc"
            if path.exists():
                found.append((model, _record_schema(load_schema(str(path)))))
    return tuple(found)


def fingerprint_of(schema: AvroSchema) -> bytes:
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


def to_record(model: BaseModel) -> dict[str, Any]:
    """The model as Avro record data: free-form JSON as JSON text (see `schemas.avro`), written
    from the model's own values, so that a number stays a number (`schemas.exact_json`)."""
    paths = free_json_paths(type(model))
    record = model.model_dump(mode="json", exclude=_free_json_left_out(type(model)))
    for path in paths:
        holder, node = model, record
        for name in path[:-1]:
            holder, node = getattr(holder, name), node[name]
            if holder is None:
                break
        else:
            node[path[-1]] = dump_exact(getattr(holder, path[-1])).decode()
    return record


@cache
def _free_json_left_out(model_type: type[BaseModel]) -> dict[str, Any]:
    """The free-form JSON paths as `model_dump`'s `exclude`: `to_record` writes them itself."""
    left_out: dict[str, Any] = {}
    for path in free_json_paths(model_type):
        node = left_out
        for name in path[:-1]:
            node = node.setdefault(name, {})
        node[path[-1]] = True
    return left_out


def _free_json(text: str) -> Any:
    value = json.loads(text, parse_float=Decimal, parse_constant=not_json)
    if (where := lone_surrogate(text, value)) is not None:
        raise ValueError(f"{where} holds a lone surrogate, which no text can carry")
    return value


def from_record(model_type: type[BaseModel], record: dict[str, Any]) -> BaseModel:
    for path in free_json_paths(model_type):
        try:
            _replace(record, path, _free_json)
        except (ValueError, TypeError, RecursionError) as exc:  # JSONDecodeError is a ValueError
            raise DecodeError(f"{model_type.__name__} record's {'.'.join(path)} is not JSON text: "
                              f"{type(exc).__name__}: {str(exc)[:200]}") from None
    try:
        return model_type.model_validate(record)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        raise DecodeError(f"{model_type.__name__} record breaks its model: {first}") from None


def _replace(record: dict[str, Any], path: tuple[str, ...], change: Callable[[Any], Any]) -> None:
    node: Any = record  # free-form JSON below the record
    for name in path[:-1]:
        node = node.get(name)
        if node is None:
            return
    if path[-1] in node:
        node[path[-1]] = change(node[path[-1]])


def record_branches(schema: AvroSchema) -> tuple[tuple[str, str], ...]:
    """The fields of a record schema whose union takes a record, with that record's name."""
    found: list[tuple[str, str]] = []
    for entry in schema["fields"]:
        if isinstance(entry["type"], list):
            found.extend((entry["name"], branch["name"]) for branch in entry["type"]
                         if isinstance(branch, dict) and branch.get("type") == "record")
    return tuple(found)


def _body(schema: AvroSchema, branches: tuple[tuple[str, str], ...], model: BaseModel) -> bytes:
    """A nested record in a union (a verdict's payload, PO snapshot and audit) is written in
    fastavro's tuple notation, (record name, value): fastavro then takes that branch, where
    otherwise it validates the whole value against each branch before writing it, which was
    half of a verdict's write. The bytes are the same (tests/unit/schemas)."""
    record = to_record(model)
    for name, record_name in branches:
        if record[name] is not None:
            record[name] = (record_name, record[name])
    out = io.BytesIO()
    schemaless_writer(out, schema, record)
    return out.getvalue()


def _read(data: bytes, writer: AvroSchema, reader: AvroSchema, model_type: type[BaseModel]) -> dict[str, Any]:
    body = io.BytesIO(data)
    try:
        record = schemaless_reader(body, writer, reader)
    except Exception as exc:  # fastavro raises EOFError, ValueError, SchemaResolutionError...
        raise DecodeError(f"{model_type.__name__} body cannot be read: {type(exc).__name__}: {exc}") from None
    if not isinstance(record, dict):  # a record schema reads a record
        raise DecodeError(f"{model_type.__name__} body is not a record")
    if body.tell() != len(data):  # a record written under another schema than its fingerprint says
        raise DecodeError(f"{model_type.__name__} body has {len(data) - body.tell():,} bytes after its record")
    return record


@dataclass(frozen=True)
class _WriterVersion:
    schema: AvroSchema
    model: type[BaseModel]


class SingleObjectCodec:
    """Encodes with the current schema; decodes any known version of any known record type."""

    def __init__(self, models: Iterable[type[BaseModel]] = MODELS,
                 older_versions: Iterable[tuple[type[BaseModel], AvroSchema]] = ()) -> None:
        self._current = {model: schema_for(model.__name__) for model in models}
        self._branches = {model: record_branches(s) for model, s in self._current.items()}
        self._headers = {model: SINGLE_OBJECT_MARKER + fingerprint_of(s) for model, s in self._current.items()}
        self._writers = {fingerprint_of(s): _WriterVersion(s, model) for model, s in self._current.items()}
        for model, schema in (*released_schemas(), *older_versions):
            parsed = _record_schema(parse_schema(schema))
            # A released schema the current one still is keeps the current schema as its writer:
            # fastavro then reads without resolving, where an equal copy was compared in depth
            # with the reader's schema on every record (18 us a verdict).
            self._writers.setdefault(fingerprint_of(parsed), _WriterVersion(parsed, model))

    def encode(self, model: BaseModel) -> bytes:
        kind = type(model)
        if kind not in self._current:
            raise TypeError(f"no Avro schema for {kind.__name__}")
        with _encoding(model):
            return self._headers[kind] + _body(self._current[kind], self._branches[kind], model)

    def kind(self, data: bytes) -> type[BaseModel] | None:
        writer = self._writers.get(data[2:10]) if data[:2] == SINGLE_OBJECT_MARKER else None
        return writer.model if writer else None

    def decode(self, data: bytes | None) -> BaseModel:
        return from_record(*self.read_unvalidated(data))

    def read_unvalidated(self, data: bytes | None) -> tuple[type[BaseModel], dict[str, Any]]:
        if data is None:
            raise DecodeError(TOMBSTONE)
        if len(data) < 10 or data[:2] != SINGLE_OBJECT_MARKER:
            raise DecodeError(f"not Avro single-object encoding (starts with {data[:2].hex() or 'nothing'})")
        writer = self._writers.get(data[2:10])
        if writer is None:
            raise DecodeError(f"unknown schema fingerprint {data[2:10].hex()}")
        return writer.model, _read(data[10:], writer.schema, self._current[writer.model], writer.model)


class RegistryCodec:
    """Confluent framing (magic 0 + 4-byte schema id) through confluent-kafka's AvroSerializer and
    AvroDeserializer, one subject per record type: several record types share a topic, so the
    subject is named from the record (`subject_template`, "{record}" is RecordNameStrategy)."""

    def __init__(self, registry_url: str, models: Iterable[type[BaseModel]] = MODELS, client: Any = None,
                 subject_template: str = "{record}"):
        from confluent_kafka.schema_registry import SchemaRegistryClient
        from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer

        self._client = client or SchemaRegistryClient.new_client({"url": registry_url})
        self._current = {model: schema_for(model.__name__) for model in models}
        self._by_name = {f"{NAMESPACE}.{model.__name__}": model for model in self._current}
        conf = {"auto.register.schemas": True,
                "subject.name.strategy": lambda _context, record: subject_template.format(record=record)}
        # Registered as generated, every default kept: a registry's BACKWARD check needs them (the
        # Parsing Canonical Form strips them, and the first field added would then be refused).
        self._serializers = {model: AvroSerializer(self._client, json.dumps(avro_schema(model)), conf=conf)
                             for model in self._current}
        # One deserializer per record type, each resolving any writer version to the current schema.
        self._deserializers = {model: AvroDeserializer(self._client, json.dumps(avro_schema(model)))
                               for model in self._current}
        self._models: dict[int, type[BaseModel]] = {}
        # Records written before the registry was set (single-object encoding) are still read: the
        # topics' history, which replay and explain read, and what was in flight at the switch.
        self._before = SingleObjectCodec(self._current)

    def encode(self, model: BaseModel) -> bytes:
        kind = type(model)
        if kind not in self._serializers:
            raise TypeError(f"no Avro schema for {kind.__name__}")
        with _encoding(model):
            record = to_record(model)
        with _registry_errors("registering"):
            data: bytes = self._serializers[kind](record, None)
            return data

    def kind(self, data: bytes) -> type[BaseModel] | None:
        if data[:2] == SINGLE_OBJECT_MARKER:
            return self._before.kind(data)
        try:
            return self._writer_model(data)
        except DecodeError:
            return None

    def decode(self, data: bytes | None) -> BaseModel:
        return from_record(*self.read_unvalidated(data))

    def read_unvalidated(self, data: bytes | None) -> tuple[type[BaseModel], dict[str, Any]]:
        if data is None:
            raise DecodeError(TOMBSTONE)
        if data[:2] == SINGLE_OBJECT_MARKER:
            return self._before.read_unvalidated(data)
        model = self._writer_model(data)
        try:
            record = self._deserializers[model](data, None)
        except Exception as exc:  # fastavro raises EOFError, ValueError, SchemaResolutionError...
            raise DecodeError(f"{model.__name__} body cannot be read: {type(exc).__name__}: {exc}") from None
        if not isinstance(record, dict):  # a record schema reads a record
            raise DecodeError(f"{model.__name__} body is not a record")
        return model, record

    def _writer_model(self, data: bytes) -> type[BaseModel]:
        if len(data) < 5 or data[:1] != CONFLUENT_MAGIC:
            raise DecodeError(f"not Confluent-framed Avro (starts with {data[:1].hex() or 'nothing'})")
        (schema_id,) = struct.unpack(">I", data[1:5])
        if schema_id not in self._models:
            with _registry_errors(f"looking up schema id {schema_id}"):
                schema_str = self._client.get_schema(schema_id).schema_str
                if schema_str is None:
                    raise DecodeError(f"schema id {schema_id} has no schema text in the registry")
                name = _record_name(schema_id, schema_str)
            # A name without a namespace is taken for ours; another namespace's record is not ours.
            model = self._by_name.get(name if "." in name else f"{NAMESPACE}.{name}")
            if model is None:
                raise DecodeError(f"schema id {schema_id} is {name or 'not a record'}, not a record this service reads")
            self._models[schema_id] = model
        return self._models[schema_id]


def _record_name(schema_id: int, schema_str: str) -> str:
    """The name of the Avro record schema the registry holds under the id; a schema of another kind
    (Protobuf and JSON Schema records share the magic byte) makes the record undecodable."""
    try:
        schema = json.loads(schema_str)
    except ValueError:
        schema = None
    if not isinstance(schema, dict) or not isinstance(schema.get("name", ""), str):
        raise DecodeError(f"schema id {schema_id} is not an Avro record schema")
    name: str = schema.get("name", "")
    namespace = schema.get("namespace")
    return f"{namespace}.{name}" if namespace and isinstance(namespace, str) and "." not in name else name


@contextmanager
def _registry_errors(doing: str) -> Iterator[None]:
    """A schema the registry does not have makes the record undecodable (dead-lettered); a registry
    that does not answer, answers 5xx, or refuses (401, 403: credentials or ACLs, which the operator
    must put right, and which dead-lettering would turn into every record lost) is an outage the
    work waits out."""
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    try:
        yield
    except SchemaRegistryError as exc:
        if exc.http_status_code == 404:
            raise DecodeError(f"{doing}: unknown to the schema registry ({exc})") from None
        raise Unavailable("schema-registry", f"{doing}: {exc}") from None
    except OSError as exc:
        raise Unavailable("schema-registry", f"{doing}: {type(exc).__name__}: {exc}") from None
    except Exception as exc:
        if type(exc).__module__.startswith("httpx"):  # the client's transport (httpx2 or httpx): no answer
            raise Unavailable("schema-registry", f"{doing}: {type(exc).__name__}: {exc}") from None
        raise


def codec_for(registry_url: str | None = None, subject_template: str = "{record}") -> Codec:
    """Single-object encoding unless a schema registry is configured."""
    return RegistryCodec(registry_url, subject_template=subject_template) if registry_url else SingleObjectCodec()
