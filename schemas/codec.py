"""Avro single-object encoding of the registered models, and its one error type.

Wire format (Avro specification, "Single-object encoding")::

    C3 01 | CRC-64-AVRO fingerprint of the writer schema, 8 bytes little-endian | Avro binary

The fingerprint names the writer schema exactly, so a consumer can read data written with
any committed version of a schema: :func:`decode` finds the writer schema among all of
them, resolves the data to the current schema and returns the current model. Schemas are
parsed once, when the codec is built.

Encoding names the branch of every optional record or enum (``["null", Record]``) with
fastavro's tuple notation: without it fastavro picks a union's branch by validating the
value against each branch, which for a record validates its whole subtree, again at every
level of nesting (a quarter of the time of encoding a turn envelope). The bytes are the same.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from io import BytesIO
from pathlib import Path
from typing import Any, TypeVar

from fastavro import _read_py, parse_schema, schemaless_reader, schemaless_writer
from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticSerializationError

from schemas.avro import avro_schema, schema_fingerprint
from schemas.avro_files import AVRO_DIR, committed_schemas
from schemas.registry import EVENT_MODELS

MARKER = b"\xc3\x01"
HEADER_SIZE = len(MARKER) + 8

M = TypeVar("M", bound=BaseModel)
Shaper = Callable[[Any], Any]
_NAMED = ("record", "enum", "fixed", "error")


class CodecErrorReason(StrEnum):
    TRUNCATED = "truncated"
    BAD_MARKER = "bad_marker"
    UNKNOWN_FINGERPRINT = "unknown_fingerprint"
    MALFORMED_BODY = "malformed_body"
    TRAILING_BYTES = "trailing_bytes"
    INVALID_VALUE = "invalid_value"
    UNEXPECTED_TYPE = "unexpected_type"
    UNREGISTERED_MODEL = "unregistered_model"


class CodecError(ValueError):
    """Any failure to encode or decode; ``reason`` is stable enough for a dead-letter code."""

    def __init__(self, reason: CodecErrorReason, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


@dataclass(frozen=True)
class _WriterSchema:
    """A schema data may have been written with, and how to read it today."""

    model: type[BaseModel]
    schema: Any
    reader_schema: Any  # None when the writer schema is the current one: nothing to resolve


class Codec:
    """Encodes the current schema of each model; decodes every committed version of it."""

    def __init__(self, models: Mapping[str, type[BaseModel]], schema_dir: Path) -> None:
        committed = committed_schemas(schema_dir)
        self._headers: dict[type[BaseModel], tuple[bytes, Any, Shaper | None]] = {}
        self._writers: dict[bytes, _WriterSchema] = {}
        for full_name, model in models.items():
            current = avro_schema(model)
            fingerprint = schema_fingerprint(current)
            parsed = parse_schema(current)
            self._headers[model] = (MARKER + fingerprint, parsed, union_shaper(parsed))
            self._writers[fingerprint] = _WriterSchema(model, parsed, None)
            for old in committed.get(full_name, ()):
                self._writers.setdefault(
                    schema_fingerprint(old.schema),
                    _WriterSchema(model, parse_schema(old.schema), parsed),
                )

    def encode(self, model: BaseModel) -> bytes:
        try:
            header, schema, shaper = self._headers[type(model)]
        except KeyError:
            raise CodecError(
                CodecErrorReason.UNREGISTERED_MODEL, f"{type(model).__name__} has no schema"
            ) from None
        out = BytesIO()
        out.write(header)
        try:
            datum = model.model_dump(warnings="error")
            schemaless_writer(out, schema, datum if shaper is None else shaper(datum))
        except (PydanticSerializationError, TypeError, ValueError, OverflowError) as exc:
            # Only reachable for a model changed without validation (model_copy(update=...)).
            raise CodecError(CodecErrorReason.INVALID_VALUE, str(exc)) from None
        return out.getvalue()

    def decode(self, data: bytes) -> BaseModel:
        return self._decode(data, None)

    def decode_as(self, data: bytes, model_type: type[M]) -> M:
        decoded = self._decode(data, model_type)
        assert isinstance(decoded, model_type)
        return decoded

    def _decode(self, data: bytes, expected: type[BaseModel] | None) -> BaseModel:
        data = _as_bytes(data)
        if data[: len(MARKER)] != MARKER:
            if MARKER.startswith(data):
                raise CodecError(CodecErrorReason.TRUNCATED, f"{len(data)} bytes, no header")
            raise CodecError(CodecErrorReason.BAD_MARKER, f"starts with {data[:2].hex()}")
        if len(data) < HEADER_SIZE:
            raise CodecError(CodecErrorReason.TRUNCATED, f"{len(data)} bytes, header cut short")
        fingerprint = data[len(MARKER) : HEADER_SIZE]
        writer = self._writers.get(fingerprint)
        if writer is None:
            raise CodecError(
                CodecErrorReason.UNKNOWN_FINGERPRINT,
                f"no schema has fingerprint {fingerprint.hex()}",
            )
        if expected is not None and writer.model is not expected:
            raise CodecError(
                CodecErrorReason.UNEXPECTED_TYPE,
                f"holds {writer.model.__name__}, expected {expected.__name__}",
            )
        body = BytesIO(data)
        body.seek(HEADER_SIZE)
        try:
            record = schemaless_reader(body, writer.schema, writer.reader_schema)
        except Exception:  # fastavro raises many types on bad bytes; see _body_error
            raise _body_error(data, writer) from None
        if body.tell() != len(data):
            raise CodecError(
                CodecErrorReason.TRAILING_BYTES, f"{len(data) - body.tell()} bytes after the body"
            )
        try:
            return writer.model.model_validate(record)
        except ValidationError as exc:
            raise CodecError(CodecErrorReason.INVALID_VALUE, str(exc)) from None


def union_shaper(parsed: Any) -> Shaper | None:
    """A function that rewrites a ``model_dump`` of ``parsed``'s model in place so that every
    non-null value of a ``["null", named type]`` union is ``(type name, value)``: fastavro's
    tuple notation, which names the branch instead of letting fastavro find it by validating
    the value against each branch. ``None`` when the schema has no such union. Only the
    paths that lead to one are walked."""
    named: Mapping[str, Any] = parsed.get("__named_schemas", {})
    built: dict[str, Shaper | None] = {}

    def resolve(schema: Any) -> Any:
        return named.get(schema, schema) if isinstance(schema, str) else schema

    def build(schema: Any) -> Shaper | None:
        schema = resolve(schema)
        if isinstance(schema, list):
            return _union(schema)
        if not isinstance(schema, dict):
            return None
        kind = schema["type"]
        if kind == "record":
            name = schema["name"]
            if name not in built:
                built[name] = None  # a recursive reference needs no more than the first visit
                built[name] = _record(schema)
            return built[name]
        if kind == "array":
            items = build(schema["items"])
            return None if items is None else (lambda value: [items(v) for v in value])
        if kind == "map":
            values = build(schema["values"])
            return None if values is None else (lambda m: {k: values(v) for k, v in m.items()})
        return None

    def _union(branches: list[Any]) -> Shaper | None:
        others = [resolve(b) for b in branches if b != "null"]
        if len(branches) != 2 or len(others) != 1:
            return None  # not an optional value: left to fastavro
        branch = others[0]
        inner = build(branch)
        if not (isinstance(branch, dict) and branch.get("type") in _NAMED):
            return None if inner is None else (lambda v: v if v is None else inner(v))
        name = branch["name"]
        if inner is None:
            return lambda v: v if v is None else (name, v)
        return lambda v: v if v is None else (name, inner(v))

    def _record(schema: dict[str, Any]) -> Shaper | None:
        fields = [(f["name"], build(f["type"])) for f in schema["fields"]]
        shaped = [(name, shaper) for name, shaper in fields if shaper is not None]
        if not shaped:
            return None

        def record(value: Any) -> Any:
            for name, shaper in shaped:
                value[name] = shaper(value[name])
            return value

        return record

    return build(parsed)


def _as_bytes(data: object) -> bytes:
    """``bytes`` of any bytes-like value (a ``bytearray`` or ``memoryview`` from a client
    library would otherwise fail as an unhashable fingerprint); a record without a value (a
    tombstone, ``None``) or a value that is not bytes at all is a :class:`CodecError`."""
    if isinstance(data, bytes):
        return data
    if data is None:
        raise CodecError(CodecErrorReason.TRUNCATED, "no value (a tombstone?)")
    try:
        return bytes(memoryview(data))  # type: ignore[arg-type]  # any buffer, else TypeError
    except TypeError:
        raise CodecError(
            CodecErrorReason.BAD_MARKER, f"not bytes but {type(data).__name__}"
        ) from None


def _body_error(data: bytes, writer: _WriterSchema) -> CodecError:
    """Tell a body cut short from a garbled one.

    fastavro's compiled reader reports reading past the end in several ways (``EOFError``,
    ``IndexError``); its pure-Python reader always raises ``EOFError``. Reading again with
    the latter costs nothing on the happy path and gives a precise reason on the error path.
    """
    body = BytesIO(data)
    body.seek(HEADER_SIZE)
    try:
        _read_py.schemaless_reader(body, writer.schema, writer.reader_schema)
    except EOFError as exc:
        return CodecError(CodecErrorReason.TRUNCATED, f"body cut short: {exc}")
    except Exception as exc:
        return CodecError(CodecErrorReason.MALFORMED_BODY, f"{type(exc).__name__}: {exc}")
    return CodecError(CodecErrorReason.MALFORMED_BODY, "rejected by fastavro's compiled reader")


@cache
def default_codec() -> Codec:
    """The codec of :data:`~schemas.registry.EVENT_MODELS` and the committed schemas."""
    return Codec(EVENT_MODELS, AVRO_DIR)


def encode(model: BaseModel) -> bytes:
    """Single-object encoding of a registered model, with its current schema."""
    return default_codec().encode(model)


def decode(data: bytes) -> BaseModel:
    """The model a single-object encoded record holds; raises :class:`CodecError`."""
    return default_codec().decode(data)


def decode_as(data: bytes, model_type: type[M]) -> M:
    """Like :func:`decode`, and the record must hold a ``model_type``."""
    return default_codec().decode_as(data, model_type)
