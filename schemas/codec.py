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

Splicing: a record decoded with the current schema is remembered with the bytes it came from
(by identity, for as long as the object lives, and only for models that are a top-level field
of another registered model, e.g. the envelope and the results in a ``RetrievalJoin``). When
such an object is a top-level field (or an item of a top-level list) of a model being
encoded, its bytes are copied instead of encoded again: the retrieval join re-encoded the
whole envelope for its changelog at each of a turn's five events. Spliced bytes are bytes
that decoded and validated to this very object (or that this codec encoded from it), so
decoding them again gives an equal object.

Recent records: the codec keeps the models of the last ``recent_bytes`` (8 MiB) of records
it encoded or decoded, by their bytes, and at most ``recent_entries`` (10,000) of them: ~200
turns (a turn's ~25 records are ~40 KB, the envelope ~5.5 KB of it), several seconds of a
busy worker, longer than a record's trip through the broker. The count bound matters for
small records: a model costs ten times its bytes and more, and 8 MiB of 71-byte session
gates was 100k models (``bench/state_growth.py``: the stall watchdog's scan of the gates
after a recovery kept every session's gate). A whole-table scan decodes with ``keep=False``:
it reads each value once, and would only push out the records of the turns in flight.

A stage reading a record that a stage of the same process wrote (every hop of a session
stays in the process that owns its partitions) gets the model the bytes were made from
instead of parsing and validating them again, which was half of the codec's time. Models are
frozen and equal bytes come from equal field values, so the reader sees what a full decode
would give; the one difference is a value set without validation
(``model_copy(update=...)``) in a type the schema widens (an ``int`` in a ``float`` field),
which the reader then gets as set. Bytes not seen lately (another process, an older schema,
anything garbled) take the full decode.
"""

from __future__ import annotations

import weakref
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


@dataclass(frozen=True)
class _Field:
    """How to write one top-level field when its record is encoded field by field."""

    name: str
    schema: Any  # a parsed one-field record: it encodes as exactly the field's encoding
    shaper: Shaper | None
    model: type[BaseModel] | None  # a registered model that can be spliced in
    kind: str  # "plain", "model", "optional" (["null", model]) or "list" (array of model)
    item_schema: Any = None  # not "plain": a parsed one-field record of one model
    item_shaper: Shaper | None = None


class Codec:
    """Encodes the current schema of each model; decodes every committed version of it."""

    def __init__(
        self,
        models: Mapping[str, type[BaseModel]],
        schema_dir: Path,
        recent_bytes: int = 8 * 1024 * 1024,
        recent_entries: int = 10_000,
    ) -> None:
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
        by_name = {parsed["name"]: model for model, (_, parsed, _) in self._headers.items()}
        self._layouts: dict[type[BaseModel], list[_Field]] = {}
        for model, (_, parsed, _) in self._headers.items():
            layout = _layout(parsed, by_name)
            if layout is not None:
                self._layouts[model] = layout
        self._spliceable = {f.model for fields in self._layouts.values() for f in fields} - {None}
        self._bodies: dict[int, tuple[weakref.ref[BaseModel], bytes]] = {}
        self._recent = _Recent(recent_bytes, recent_entries)

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
            layout = self._layouts.get(type(model))
            if layout is None or not self._splice(out, model, layout):
                datum = model.model_dump(warnings="error")
                schemaless_writer(out, schema, datum if shaper is None else shaper(datum))
        except (PydanticSerializationError, TypeError, ValueError, OverflowError) as exc:
            # Only reachable for a model changed without validation (model_copy(update=...)).
            raise CodecError(CodecErrorReason.INVALID_VALUE, str(exc)) from None
        data = out.getvalue()
        self._keep(model, data)
        return data

    def _body(self, value: object) -> bytes | None:
        """The bytes ``value`` was decoded from (header included), if it is remembered."""
        entry = self._bodies.get(id(value))
        if entry is None or entry[0]() is not value:
            return None
        return entry[1]

    def _remember(self, model: BaseModel, data: bytes) -> None:
        if len(self._bodies) >= MAX_REMEMBERED:
            self._bodies.clear()  # the weakref callbacks of dropped entries then pop nothing
        key, bodies = id(model), self._bodies

        def forget(_: object) -> None:
            bodies.pop(key, None)

        bodies[key] = (weakref.ref(model, forget), data)

    def _splice(self, out: BytesIO, model: BaseModel, layout: list[_Field]) -> bool:
        """Write ``model`` field by field, copying the bytes of remembered field values;
        ``False`` (nothing written) when no field value is remembered."""
        values = [getattr(model, f.name) for f in layout]
        if not any(
            self._body(value) is not None
            or (f.kind == "list" and any(self._body(item) is not None for item in value))
            for f, value in zip(layout, values, strict=True)
            if f.kind != "plain"
        ):
            return False
        plain = model.model_dump(
            warnings="error", include={f.name for f in layout if f.kind == "plain"}
        )
        for f, value in zip(layout, values, strict=True):
            if f.kind == "plain":
                _write_one(out, f.schema, f.shaper, plain[f.name])
            elif f.kind == "list":
                if value:
                    out.write(_long(len(value)))
                    for item in value:
                        self._write_record(out, f, item)
                out.write(b"\x00")
            elif value is None:  # "optional"
                out.write(b"\x00")  # branch 0: null
            else:
                if f.kind == "optional":
                    out.write(b"\x02")  # branch 1: the record
                self._write_record(out, f, value)
        return True

    def _write_record(self, out: BytesIO, f: _Field, value: BaseModel) -> None:
        """One record of a field: its remembered bytes when there are some, else encoded."""
        body = self._body(value)
        if body is not None:
            out.write(memoryview(body)[HEADER_SIZE:])
        else:
            _write_one(out, f.item_schema, f.item_shaper, value.model_dump(warnings="error"))

    def decode(self, data: bytes) -> BaseModel:
        return self._decode(data, None)

    def decode_as(self, data: bytes, model_type: type[M], *, keep: bool = True) -> M:
        """``keep=False``: not remembered among the recent records (a whole-table scan)."""
        decoded = self._decode(data, model_type, keep=keep)
        assert isinstance(decoded, model_type)
        return decoded

    def _decode(
        self, data: bytes, expected: type[BaseModel] | None, *, keep: bool = True
    ) -> BaseModel:
        data = _as_bytes(data)
        seen = self._recent.get(data)
        if seen is not None and (expected is None or type(seen) is expected):
            return seen
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
            model = writer.model.model_validate(record)
        except ValidationError as exc:
            raise CodecError(CodecErrorReason.INVALID_VALUE, str(exc)) from None
        if keep and writer.reader_schema is None:
            self._keep(model, data)
        return model

    def _keep(self, model: BaseModel, data: bytes) -> None:
        """``data`` is ``model`` in the current schema: later decodes of it skip the parsing,
        and later encodes of a record holding ``model`` copy it (splicing)."""
        self._recent.put(data, model)
        if type(model) in self._spliceable:
            self._remember(model, data)


class _Recent:
    """Models by the bytes they encode to, the oldest dropped past ``max_bytes`` of bytes or
    ``max_entries`` models."""

    def __init__(self, max_bytes: int, max_entries: int) -> None:
        self._max = max_bytes
        self._max_entries = max_entries
        self._size = 0
        self._models: dict[bytes, BaseModel] = {}

    def get(self, data: bytes) -> BaseModel | None:
        return self._models.get(data)

    def put(self, data: bytes, model: BaseModel) -> None:
        if data in self._models:
            return
        self._models[data] = model
        self._size += len(data)
        while self._size > self._max or len(self._models) > self._max_entries:
            oldest = next(iter(self._models))
            del self._models[oldest]
            self._size -= len(oldest)


MAX_REMEMBERED = 50_000
"""Most decoded objects remembered for splicing (each entry lives only as long as its object)."""


def _long(value: int) -> bytes:
    """Avro's zig-zag varint of a non-negative ``long`` (an array block's item count)."""
    value <<= 1
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _write_one(out: BytesIO, schema: Any, shaper: Shaper | None, datum: Any) -> None:
    """Write ``datum`` with a one-field record schema from :func:`_one_field`: the bytes of
    the field's value alone."""
    if shaper is not None:
        datum = shaper({"v": datum})["v"]
    schemaless_writer(out, schema, {"v": datum})


def _one_field(parent: Any, field_type: Any) -> tuple[Any, Shaper | None]:
    """A parsed record with one field ``v`` of ``field_type`` (a type of ``parent``, which
    may name types defined elsewhere in ``parent``), and its union shaper."""
    named = parent["__named_schemas"]
    record = {
        "type": "record",
        "name": f"{parent['name']}.__field",
        "fields": [{"name": "v", "type": field_type}],
        "__fastavro_parsed": True,
        "__named_schemas": named,
    }
    return record, union_shaper(record)


def _layout(parsed: Any, models: Mapping[str, type[BaseModel]]) -> list[_Field] | None:
    """How to write a record of ``parsed`` field by field, or ``None`` when none of its
    top-level fields holds a registered model (nothing to splice)."""
    named = parsed["__named_schemas"]

    def name_of(schema: Any) -> str | None:
        if isinstance(schema, str):
            return schema if schema in models else None
        if isinstance(schema, dict) and schema.get("type") == "record":
            return schema["name"] if schema["name"] in models else None
        return None

    fields: list[_Field] = []
    for field in parsed["fields"]:
        ftype, name = field["type"], field["name"]
        schema, shaper = _one_field(parsed, ftype)
        kind, inner = "plain", None
        if name_of(ftype):
            kind, inner = "model", ftype
        elif (
            isinstance(ftype, list) and len(ftype) == 2 and ftype[0] == "null" and name_of(ftype[1])
        ):
            kind, inner = "optional", ftype[1]
        elif isinstance(ftype, dict) and ftype.get("type") == "array" and name_of(ftype["items"]):
            kind, inner = "list", ftype["items"]
        if inner is None:
            fields.append(_Field(name, schema, shaper, None, kind))
            continue
        model_name = name_of(inner)
        assert model_name is not None
        item_schema, item_shaper = _one_field(
            parsed, named.get(model_name, inner) if isinstance(inner, str) else inner
        )
        fields.append(
            _Field(name, schema, shaper, models[model_name], kind, item_schema, item_shaper)
        )
    if all(f.kind == "plain" for f in fields):
        return None
    return fields


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


def decode_as(data: bytes, model_type: type[M], *, keep: bool = True) -> M:
    """Like :func:`decode`, and the record must hold a ``model_type``; ``keep=False``: not
    remembered among the recent records (see the module's docstring)."""
    return default_codec().decode_as(data, model_type, keep=keep)
