"""Avro schemas derived from the pydantic models, which stay the one source of truth.

Mapping: a model is a ``record`` and a ``StrEnum`` an ``enum`` (symbols are the values),
both in namespace ``turnstream`` and each defined once per schema, then referenced by name;
``list`` is an ``array``, ``dict[str, T]`` a ``map``, ``T | None`` the union ``["null", T]``;
``str``/``bytes``/``bool`` map to themselves, ``int`` to ``long``, ``float`` to ``double``
and ``datetime`` to ``long`` with logical type ``timestamp-micros``. Field defaults are
carried over (``None`` becomes ``null``, empty-container factories ``[]`` and ``{}``), so a
field added with a default keeps the schema backward compatible. Anything else (other
unions, ``Any``, an optional field defaulting to something other than ``None``) is refused
with a ``TypeError`` naming the field: the model must change, not the mapping.
"""

from __future__ import annotations

import inspect
import re
import types
from datetime import datetime
from enum import Enum, StrEnum
from typing import Annotated, Any, Union, get_args, get_origin

from fastavro.schema import fingerprint, to_parsing_canonical_form
from pydantic import BaseModel
from pydantic.fields import FieldInfo

NAMESPACE = "turnstream"

AvroSchema = str | list[Any] | dict[str, Any]
"""A schema in its JSON form, as json.loads returns it."""

_PRIMITIVES: dict[type, AvroSchema] = {
    bool: "boolean",
    int: "long",
    float: "double",
    str: "string",
    bytes: "bytes",
    datetime: {"type": "long", "logicalType": "timestamp-micros"},
}
_SYMBOL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def full_name(model: type[BaseModel]) -> str:
    """The Avro full name of a model's record, e.g. ``turnstream.TurnRequested``."""
    return f"{NAMESPACE}.{model.__name__}"


def avro_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The self-contained Avro record schema of ``model``."""
    schema = _SchemaBuilder().record(model)
    assert isinstance(schema, dict)  # a builder's first use of a record defines it
    return {"type": "record", "name": schema["name"], "namespace": NAMESPACE, **schema}


def canonical_form(schema: AvroSchema) -> str:
    """The Parsing Canonical Form: what the fingerprint, and thus a schema's identity, covers."""
    return str(to_parsing_canonical_form(schema))


def schema_fingerprint(schema: AvroSchema) -> bytes:
    """The CRC-64-AVRO fingerprint, little-endian, as single-object encoding writes it."""
    return bytes.fromhex(fingerprint(canonical_form(schema), "CRC-64-AVRO"))


def _doc(cls: type) -> dict[str, str]:
    doc = cls.__dict__.get("__doc__")
    return {"doc": inspect.cleandoc(doc)} if doc else {}


def _strip_annotated(annotation: Any) -> Any:
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _default_value(value: Any) -> Any:
    """A Python default as Avro writes it in a schema's JSON."""
    if isinstance(value, Enum):
        return value.value
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list):
        return [_default_value(item) for item in value]
    if isinstance(value, dict):
        return {str(key): _default_value(item) for key, item in value.items()}
    raise TypeError(f"default {value!r} has no Avro form")


class _SchemaBuilder:
    """Builds one schema; defines each named type at its first use, references it after."""

    def __init__(self) -> None:
        self._defined: dict[str, type] = {}

    def record(self, model: type[BaseModel]) -> AvroSchema:
        if not self._first_use(model):
            return model.__name__
        fields = [self._field(model, name, info) for name, info in model.model_fields.items()]
        return {"type": "record", "name": model.__name__, **_doc(model), "fields": fields}

    def enum(self, enum: type[StrEnum]) -> AvroSchema:
        if not self._first_use(enum):
            return enum.__name__
        symbols = [member.value for member in enum]
        bad = [symbol for symbol in symbols if not _SYMBOL.match(symbol)]
        if bad:
            raise TypeError(f"{enum.__name__}: values {bad} are not Avro enum symbols")
        return {"type": "enum", "name": enum.__name__, **_doc(enum), "symbols": symbols}

    def _first_use(self, cls: type) -> bool:
        known = self._defined.get(cls.__name__)
        if known is None:
            self._defined[cls.__name__] = cls
            return True
        if known is not cls:
            raise TypeError(f"two types are named {cls.__name__}: {known!r} and {cls!r}")
        return False

    def _field(self, model: type[BaseModel], name: str, info: FieldInfo) -> dict[str, Any]:
        where = f"{model.__name__}.{name}"
        field: dict[str, Any] = {"name": name, "type": self.type_of(info.annotation, where)}
        if not info.is_required():
            default = info.get_default(call_default_factory=True)
            if default is not None and isinstance(field["type"], list):
                raise TypeError(f"{where}: an optional field must default to None")
            try:
                field["default"] = _default_value(default)
            except TypeError as exc:
                raise TypeError(f"{where}: {exc}") from None
        return field

    def type_of(self, annotation: Any, where: str) -> AvroSchema:
        annotation = _strip_annotated(annotation)
        origin, args = get_origin(annotation), get_args(annotation)
        if origin in (Union, types.UnionType):
            present = [arg for arg in args if arg is not type(None)]
            if len(args) != 2 or len(present) != 1:
                raise TypeError(f"{where}: only `T | None` unions map to Avro, not {annotation}")
            return ["null", self.type_of(present[0], where)]
        if origin is list:
            return {"type": "array", "items": self.type_of(args[0], where)}
        if origin is dict:
            if _strip_annotated(args[0]) is not str:
                raise TypeError(f"{where}: Avro map keys are strings, not {args[0]}")
            return {"type": "map", "values": self.type_of(args[1], where)}
        if isinstance(annotation, type) and origin is None:
            if issubclass(annotation, BaseModel):
                return self.record(annotation)
            if issubclass(annotation, StrEnum):
                return self.enum(annotation)
            if annotation in _PRIMITIVES:
                primitive = _PRIMITIVES[annotation]
                return dict(primitive) if isinstance(primitive, dict) else primitive
        raise TypeError(f"{where}: no Avro mapping for {annotation!r}")
