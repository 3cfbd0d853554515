"""Avro single-object encoding of the registered models, and its one error type.

Wire format (Avro specification, "Single-object encoding")::

    C3 01 | CRC-64-AVRO fingerprint of the writer schema, 8 bytes little-endian | Avro binary

The fingerprint names the writer schema exactly, so a consumer can read data written with
any committed version of a schema: :func:`decode` finds the writer schema among all of
them, resolves the data to the current schema and returns the current model. Schemas are
parsed once, when the codec is built.
"""

from __future__ import annotations

from collections.abc import Mapping
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
        self._headers: dict[type[BaseModel], tuple[bytes, Any]] = {}
        self._writers: dict[bytes, _WriterSchema] = {}
        for full_name, model in models.items():
            current = avro_schema(model)
            fingerprint = schema_fingerprint(current)
            parsed = parse_schema(current)
            self._headers[model] = (MARKER + fingerprint, parsed)
            self._writers[fingerprint] = _WriterSchema(model, parsed, None)
            for old in committed.get(full_name, ()):
                self._writers.setdefault(
                    schema_fingerprint(old.schema),
                    _WriterSchema(model, parse_schema(old.schema), parsed),
                )

    def encode(self, model: BaseModel) -> bytes:
        try:
            header, schema = self._headers[type(model)]
        except KeyError:
            raise CodecError(
                CodecErrorReason.UNREGISTERED_MODEL, f"{type(model).__name__} has no schema"
            ) from None
        out = BytesIO()
        out.write(header)
        try:
            schemaless_writer(out, schema, model.model_dump(warnings="error"))
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
