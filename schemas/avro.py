"""Avro schemas generated from the pydantic models: the models are the one description of the wire.

The mapping, one rule per type, for every model alike:

| model type | Avro |
|---|---|
| `str`, `int`, `bool` | `string`, `int`, `boolean` |
| `Decimal`, `date`, `datetime` | `string`: decimals as written (1), dates and times as ISO 8601 text |
| a `StrEnum` | an `enum` named after the class |
| a model | a `record` named after the class in the `invoice_automation` namespace (2) |
| `list[T]`, `dict[str, T]` | `array`, `map` |
| `T | None` | `["null", T]` |
| `Any`, `dict[str, Any]` | `string` holding JSON text: free-form JSON (an invoice as received, valid or not) |

(1) "15.50" comes back as exactly "15.50" (a fixed-scale Avro decimal would not keep the vendor's
scale); dates and times as the JSON contracts say. (2) Defined where first used and referred to by
name after.

A field's default becomes its Avro default (`[]`, `{}`, `null`, the value), so a reader of a newer
schema reads records written before the field was added. The schemas released before are kept
under `schemas/released/<version>/`, and those builds between releases wrote under
`<rules version>+<commit>/`: a model's change releases its schema in a new folder, never by an
edit of a released file (its records were dead-lettered after the upgrade, 'unknown schema
fingerprint'). `tests/unit/schemas` checks that every current schema is released, that no
released one changed, that each generated schema still reads what they wrote (BACKWARD
compatibility), and that the codec reads their data.
"""

from __future__ import annotations

import datetime as dt
import enum
import inspect
import types
import typing
from collections.abc import Callable
from decimal import Decimal
from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

NAMESPACE = "invoice_automation"
TEXT = (Decimal, dt.date, dt.datetime)


def _unwrap(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def is_free_json(annotation: Any) -> bool:
    """`Any` or `dict[str, Any]`: JSON whose shape the model does not fix."""
    annotation = _unwrap(annotation)
    if annotation is Any:
        return True
    return typing.get_origin(annotation) is dict and _unwrap(typing.get_args(annotation)[1]) is Any


def _optional(annotation: Any) -> Any | None:
    """T for `T | None`, else None."""
    annotation = _unwrap(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [member for member in typing.get_args(annotation) if member is not type(None)]
        if len(members) == 1 and len(typing.get_args(annotation)) == 2:
            return members[0]
        raise TypeError(f"no Avro mapping for the union {annotation}")
    return None


class _Builder:
    def __init__(self) -> None:
        self.defined: set[str] = set()

    def type_of(self, annotation: Any) -> Any:
        annotation = _unwrap(annotation)
        if is_free_json(annotation):
            return "string"
        inner = _optional(annotation)
        if inner is not None:
            return ["null", self.type_of(inner)]
        origin = typing.get_origin(annotation)
        if origin is list:
            return {"type": "array", "items": self.type_of(typing.get_args(annotation)[0])}
        if origin is dict:
            return {"type": "map", "values": self.type_of(typing.get_args(annotation)[1])}
        if annotation is bool:
            return "boolean"
        if annotation is int:
            return "int"
        if annotation is str or annotation in TEXT:
            return "string"
        if inspect.isclass(annotation) and issubclass(annotation, enum.Enum):
            return self.named(annotation.__name__, lambda: {
                "type": "enum", "name": annotation.__name__, "symbols": [member.value for member in annotation]})
        if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
            return self.record(annotation)
        raise TypeError(f"no Avro mapping for {annotation!r}")

    def named(self, name: str, define: Callable[[], Any]) -> Any:
        if name in self.defined:
            return f"{NAMESPACE}.{name}"
        self.defined.add(name)
        return define()

    def record(self, model: type[BaseModel]) -> Any:
        def define() -> dict[str, Any]:
            schema: dict[str, Any] = {"type": "record", "name": model.__name__, "namespace": NAMESPACE,
                                      "fields": [self.field(name, info) for name, info in model.model_fields.items()]}
            if model.__doc__:
                schema["doc"] = inspect.cleandoc(model.__doc__).split("\n\n")[0]
            return schema

        return self.named(model.__name__, define)

    def field(self, name: str, info: Any) -> dict[str, Any]:
        avro = self.type_of(info.annotation)
        entry: dict[str, Any] = {"name": name, "type": avro}
        default = _default(info)
        if default is not PydanticUndefined:
            if isinstance(avro, list) and default is not None:  # Avro: a union's default is of its first type
                entry["type"] = [avro[1], "null"]
            entry["default"] = default
        return entry


def _default(info: Any) -> Any:
    if info.default_factory is not None:
        return info.default_factory()
    value = info.default
    if value is PydanticUndefined or value is None:
        return value
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, TEXT):
        return value.isoformat() if isinstance(value, dt.date) else str(value)
    return value


@cache
def avro_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The record schema of a model, every named type it uses defined inside it."""
    schema = _Builder().record(model)
    assert isinstance(schema, dict)
    return schema


@cache
def free_json_paths(model: type[BaseModel]) -> tuple[tuple[str, ...], ...]:
    """Where in a record of this model free-form JSON sits, as paths of field names (it travels as
    JSON text there): `("document",)` for an invoice submitted, `("audit", "invoice")` for a verdict."""
    paths: list[tuple[str, ...]] = []
    for name, info in model.model_fields.items():
        annotation = _optional(info.annotation) or _unwrap(info.annotation)
        if is_free_json(info.annotation) or is_free_json(annotation):
            paths.append((name,))
        elif inspect.isclass(annotation) and issubclass(annotation, BaseModel):
            paths.extend((name, *inner) for inner in free_json_paths(annotation))
    return tuple(paths)
