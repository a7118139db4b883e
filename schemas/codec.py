"""Avro on the wire, with fastavro.

Default framing: Avro single-object encoding (marker C3 01, then the 8-byte little-endian
CRC-64-AVRO fingerprint of the writer schema's Parsing Canonical Form, then the binary body),
so every message says which schema wrote it and no schema registry is needed. Decoding looks
the fingerprint up among every known version and resolves it to the current reader schema.
With a registry URL, confluent-kafka's AvroSerializer and AvroDeserializer write and read the
Confluent framing (magic 0, 4-byte schema id) instead, registering each schema with its defaults.

Decimals, dates and timestamps travel as text: an invoice's "15.50" must come back as exactly
"15.50" (a fixed-scale Avro decimal would not keep the vendor's scale), and ISO 8601 text is
what the JSON contracts already say.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Iterable, Iterator
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
    InvoiceSubmitted,
    InvoiceWithdrawn,
    ReleaseRequested,
    RpaRequest,
    StatusChanged,
)
from rules.models import Invoice, PurchaseOrder, RpaCompletion, Verdict

SCHEMA_DIR = Path(__file__).with_name("avro")
NAMESPACE = "invoice_automation"
SINGLE_OBJECT_MARKER = b"\xc3\x01"
CONFLUENT_MAGIC = b"\x00"

MODELS: tuple[type[BaseModel], ...] = (
    Invoice, PurchaseOrder, Verdict, RpaCompletion, InvoiceSubmitted, InvoiceWithdrawn,
    ReleaseRequested, DispatchApproved, RpaRequest, StatusChanged,
)


class DecodeError(DataError):
    """Bytes that are not a record we know; the message says why."""


class Codec(Protocol):
    def encode(self, model: BaseModel) -> bytes: ...

    def decode(self, data: bytes) -> BaseModel: ...

    def kind(self, data: bytes) -> type[BaseModel] | None:
        """The record type the bytes hold, from the framing alone; None when unknown."""


@cache
def schema_for(name: str, folder: Path = SCHEMA_DIR) -> dict:
    """The parsed schema `invoice_automation.<name>`, named types resolved from the same folder."""
    return load_schema(str(folder / f"{NAMESPACE}.{name}.avsc"))


def fingerprint_of(schema: dict) -> bytes:
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


def _json_text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _json_value(text: str) -> Any:
    return json.loads(text, parse_float=Decimal)


def to_record(model: BaseModel) -> dict[str, Any]:
    """Free-form JSON (an invoice as received, valid or not) travels as JSON text."""
    record = model.model_dump(mode="json")
    if isinstance(model, InvoiceSubmitted):
        record["document"] = _json_text(record["document"])
    elif isinstance(model, Verdict) and record.get("audit") is not None:
        record["audit"]["invoice"] = _json_text(record["audit"]["invoice"])
    return record


def from_record(model_type: type[BaseModel], record: dict[str, Any]) -> BaseModel:
    if model_type is InvoiceSubmitted:
        record = {**record, "document": _json_value(record["document"])}
    elif model_type is Verdict and record.get("audit") is not None:
        record = {**record, "audit": {**record["audit"], "invoice": _json_value(record["audit"]["invoice"])}}
    try:
        return model_type.model_validate(record)
    except ValidationError as exc:
        raise DecodeError(f"{model_type.__name__} record breaks its model: {exc.errors(include_url=False)[0]}") from None


def _body(schema: dict, model: BaseModel) -> bytes:
    out = io.BytesIO()
    schemaless_writer(out, schema, to_record(model))
    return out.getvalue()


def _read(data: bytes, writer: dict, reader: dict, model_type: type[BaseModel]) -> BaseModel:
    try:
        record = schemaless_reader(io.BytesIO(data), writer, reader)
    except Exception as exc:  # fastavro raises EOFError, ValueError, SchemaResolutionError...
        raise DecodeError(f"{model_type.__name__} body cannot be read: {type(exc).__name__}: {exc}") from None
    return from_record(model_type, record)


@dataclass(frozen=True)
class _WriterVersion:
    schema: dict
    model: type[BaseModel]


class SingleObjectCodec:
    """Encodes with the current schema; decodes any known version of any known record type."""

    def __init__(self, models: Iterable[type[BaseModel]] = MODELS, older_versions: Iterable[tuple[type, dict]] = ()):
        self._current = {model: schema_for(model.__name__) for model in models}
        self._headers = {model: SINGLE_OBJECT_MARKER + fingerprint_of(s) for model, s in self._current.items()}
        self._writers = {fingerprint_of(s): _WriterVersion(s, model) for model, s in self._current.items()}
        for model, schema in older_versions:
            parsed = parse_schema(schema)
            self._writers[fingerprint_of(parsed)] = _WriterVersion(parsed, model)

    def encode(self, model: BaseModel) -> bytes:
        kind = type(model)
        if kind not in self._current:
            raise TypeError(f"no Avro schema for {kind.__name__}")
        return self._headers[kind] + _body(self._current[kind], model)

    def kind(self, data: bytes) -> type[BaseModel] | None:
        writer = self._writers.get(data[2:10]) if data[:2] == SINGLE_OBJECT_MARKER else None
        return writer.model if writer else None

    def decode(self, data: bytes) -> BaseModel:
        if len(data) < 10 or data[:2] != SINGLE_OBJECT_MARKER:
            raise DecodeError(f"not Avro single-object encoding (starts with {data[:2].hex() or 'nothing'})")
        writer = self._writers.get(data[2:10])
        if writer is None:
            raise DecodeError(f"unknown schema fingerprint {data[2:10].hex()}")
        return _read(data[10:], writer.schema, self._current[writer.model], writer.model)


def _registered_form(schema: dict) -> str:
    """The schema as JSON with every default, doc and named type kept (fastavro's own keys left
    out): what a registry needs to check compatibility. The Parsing Canonical Form would strip the
    defaults, and a registry's BACKWARD check then refuses the first field added."""

    def plain(node: Any) -> Any:
        if isinstance(node, dict):
            return {key: plain(value) for key, value in node.items() if not key.startswith("__")}
        if isinstance(node, list):
            return [plain(item) for item in node]
        return node

    return json.dumps(plain(schema))


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
        self._serializers = {model: AvroSerializer(self._client, _registered_form(schema), conf=conf)
                             for model, schema in self._current.items()}
        # One deserializer per record type, each resolving any writer version to the current schema.
        self._deserializers = {model: AvroDeserializer(self._client, _registered_form(schema))
                               for model, schema in self._current.items()}
        self._models: dict[int, type[BaseModel]] = {}

    def encode(self, model: BaseModel) -> bytes:
        kind = type(model)
        if kind not in self._serializers:
            raise TypeError(f"no Avro schema for {kind.__name__}")
        with _registry_errors("registering"):
            return self._serializers[kind](to_record(model), None)

    def kind(self, data: bytes) -> type[BaseModel] | None:
        try:
            return self._writer_model(data)
        except DecodeError:
            return None

    def decode(self, data: bytes) -> BaseModel:
        model = self._writer_model(data)
        try:
            record = self._deserializers[model](data, None)
        except Exception as exc:  # fastavro raises EOFError, ValueError, SchemaResolutionError...
            raise DecodeError(f"{model.__name__} body cannot be read: {type(exc).__name__}: {exc}") from None
        return from_record(model, record)

    def _writer_model(self, data: bytes) -> type[BaseModel]:
        if len(data) < 5 or data[:1] != CONFLUENT_MAGIC:
            raise DecodeError(f"not Confluent-framed Avro (starts with {data[:1].hex() or 'nothing'})")
        (schema_id,) = struct.unpack(">I", data[1:5])
        if schema_id not in self._models:
            with _registry_errors(f"looking up schema id {schema_id}"):
                name = json.loads(self._client.get_schema(schema_id).schema_str).get("name", "")
            model = self._by_name.get(name) or self._by_name.get(f"{NAMESPACE}.{name}")
            if model is None:
                raise DecodeError(f"schema id {schema_id} is {name or 'not a record'}, not a record this service reads")
            self._models[schema_id] = model
        return self._models[schema_id]


@contextmanager
def _registry_errors(doing: str) -> Iterator[None]:
    """A schema the registry does not have makes the record undecodable (dead-lettered); a registry
    that does not answer, or answers 5xx, is an outage the work waits out."""
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
