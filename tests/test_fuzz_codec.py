"""Hostile bytes for the codec: whatever arrives, ``decode`` returns a model or raises
``CodecError`` with a reason, never anything else, and never allocates what a forged length
asks for.

``tests/test_codec.py`` already throws random bodies after every header and single-byte
corruptions at it; this file adds every cut of every sample, inserted and deleted bytes,
forged length prefixes, huge but well-formed strings, broken UTF-8 and values that are not
``bytes``.
"""

from __future__ import annotations

import contextlib
import io
import tracemalloc
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from schemas.avro import avro_schema, schema_fingerprint
from schemas.codec import MARKER, CodecError, CodecErrorReason, decode, encode
from schemas.events.turn_requested import TurnRequested
from schemas.samples import T0, sample_events, turn_input

SAMPLES = sample_events()
REQUEST = TurnRequested(turn_id="turn-1", input=turn_input(), sent_at=T0)
HEADER = MARKER + schema_fingerprint(avro_schema(TurnRequested))
TEN_MB = 10 * 1024 * 1024


def _zigzag(value: int) -> bytes:
    """An Avro ``long``: zig-zag, then a little-endian base-128 varint."""
    n = (value << 1) ^ (value >> 63)
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _well_formed(datum: dict[str, Any]) -> bytes:
    """What a producer that skips validation writes: a valid Avro body for ``datum``."""
    out = io.BytesIO()
    out.write(HEADER)
    fastavro.schemaless_writer(out, fastavro.parse_schema(avro_schema(TurnRequested)), datum)
    return out.getvalue()


def _reason(data: object) -> CodecErrorReason:
    with pytest.raises(CodecError) as caught:
        decode(data)  # type: ignore[arg-type]  # hostile callers pass anything
    return caught.value.reason


@pytest.mark.parametrize("event", SAMPLES, ids=lambda event: type(event).__name__)
def test_every_cut_of_every_sample_is_reported_as_truncated(event: BaseModel) -> None:
    data = encode(event)
    reasons = {cut: _reason(data[:cut]) for cut in range(len(data))}
    assert set(reasons.values()) == {CodecErrorReason.TRUNCATED}


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_inserted_and_deleted_bytes_raise_only_codec_error(data: st.DataObject) -> None:
    encoded = encode(data.draw(st.sampled_from(SAMPLES)))
    start = data.draw(st.integers(min_value=0, max_value=len(encoded)))
    deleted = data.draw(st.integers(min_value=0, max_value=8))
    inserted = data.draw(st.binary(max_size=8))
    mutated = encoded[:start] + inserted + encoded[start + deleted :]
    with contextlib.suppress(CodecError):
        decoded = decode(mutated)
        assert type(decoded) in {type(sample) for sample in SAMPLES}


@settings(max_examples=300, deadline=None)
@given(
    length=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    rest=st.binary(max_size=64),
)
def test_forged_length_prefixes_raise_only_codec_error(length: int, rest: bytes) -> None:
    """turn_id is the body's first field: its length prefix is whatever the sender says."""
    with contextlib.suppress(CodecError):
        decode(HEADER + _zigzag(length) + rest)


@pytest.mark.parametrize("length", [2**31, 2**40, 2**62, 2**63 - 1, -1, -(2**63)])
def test_a_length_far_beyond_the_record_is_refused_without_allocating_it(length: int) -> None:
    tracemalloc.start()
    try:
        reason = _reason(HEADER + _zigzag(length) + b"abc")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert reason is CodecErrorReason.TRUNCATED
    assert peak < 1024 * 1024


@pytest.mark.parametrize(
    "body",
    [
        b"\x06\xed\xa0\x80",  # a UTF-16 surrogate encoded as UTF-8 (CESU-8)
        b"\x04\xc0\x80",  # an overlong NUL
        b"\x02\xff",  # never valid in UTF-8
        b"\x04\xe2\x82",  # a multi-byte sequence cut short
        b"\x08\xf4\x90\x80\x80",  # above U+10FFFF
    ],
)
def test_strings_that_are_not_utf8_are_malformed(body: bytes) -> None:
    assert _reason(HEADER + body + bytes(64)) is CodecErrorReason.MALFORMED_BODY


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(min_size=1, max_size=24))
def test_any_string_bytes_in_a_string_field_decode_or_raise_codec_error(raw: bytes) -> None:
    with contextlib.suppress(CodecError):
        decode(HEADER + _zigzag(len(raw)) + raw + bytes(64))


def _with(path: tuple[str, ...], value: object) -> dict[str, Any]:
    datum = REQUEST.model_dump()
    target = datum
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return datum


HUGE_FIELDS = [
    ("turn_id",),
    ("input", "tenant_id"),
    ("input", "channel_id"),
    ("input", "message"),
]


@pytest.mark.parametrize("path", HUGE_FIELDS, ids=".".join)
def test_a_10_mb_string_on_the_wire_is_an_invalid_value_with_a_short_reason(
    path: tuple[str, ...],
) -> None:
    data = _well_formed(_with(path, "x" * TEN_MB))
    assert len(data) > TEN_MB

    with pytest.raises(CodecError) as caught:
        decode(data)

    assert caught.value.reason is CodecErrorReason.INVALID_VALUE
    assert ".".join(path) in str(caught.value)
    assert len(str(caught.value)) < 2000  # the value itself is not repeated back


def test_a_10_mb_metadata_map_on_the_wire_is_an_invalid_value() -> None:
    metadata = {f"k{i}": "v" * 100 for i in range(TEN_MB // 100)}
    with pytest.raises(CodecError) as caught:
        decode(_well_formed(_with(("input", "metadata"), metadata)))
    assert caught.value.reason is CodecErrorReason.INVALID_VALUE
    assert len(str(caught.value)) < 2000


@pytest.mark.parametrize("kind", [bytearray, memoryview])
def test_bytes_like_values_decode_like_bytes(kind: type[Any]) -> None:
    for event in SAMPLES:
        assert decode(kind(encode(event))) == event


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, CodecErrorReason.TRUNCATED),  # a tombstone
        ("\xc3\x01 text", CodecErrorReason.BAD_MARKER),
        (12, CodecErrorReason.BAD_MARKER),
        (bytearray(b"\xc3"), CodecErrorReason.TRUNCATED),
    ],
)
def test_values_that_are_not_bytes_are_codec_errors(value: object, reason: str) -> None:
    assert _reason(value) is reason
