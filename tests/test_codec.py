"""Single-object encoding: round trips, every way bytes can be wrong, and schema evolution."""

from __future__ import annotations

import contextlib
import io
import json
import struct
from pathlib import Path
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from schemas.avro import avro_schema, schema_fingerprint
from schemas.avro_files import schema_file_text
from schemas.codec import (
    MARKER,
    Codec,
    CodecError,
    CodecErrorReason,
    decode,
    decode_as,
    encode,
)
from schemas.events.turn_requested import TurnRequested
from schemas.events.turn_response import TurnResponse
from schemas.registry import EVENT_MODELS
from schemas.samples import T0, sample_events, turn_input

SAMPLES = sample_events()
REQUEST = TurnRequested(turn_id="turn-1", input=turn_input(), sent_at=T0)


def single_object(schema: dict[str, Any], datum: dict[str, Any]) -> bytes:
    """What another producer writing with ``schema`` would put on the wire."""
    out = io.BytesIO()
    out.write(MARKER + schema_fingerprint(schema))
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), datum)
    return out.getvalue()


def reason_of(data: bytes) -> CodecErrorReason:
    with pytest.raises(CodecError) as caught:
        decode(data)
    return caught.value.reason


@pytest.mark.parametrize("event", SAMPLES, ids=lambda event: type(event).__name__)
def test_every_sample_round_trips_equal(event: BaseModel) -> None:
    decoded = decode(encode(event))

    assert type(decoded) is type(event)
    assert decoded == event


def test_header_is_marker_then_little_endian_fingerprint_of_the_schema() -> None:
    data = encode(REQUEST)

    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == schema_fingerprint(avro_schema(TurnRequested))


def test_fingerprint_matches_the_avro_reference_value() -> None:
    # CRC-64-AVRO of the canonical form "null", from the Avro reference implementation.
    assert schema_fingerprint("null") == struct.pack("<q", 7195948357588979594)


def test_decode_as_returns_the_requested_type() -> None:
    decoded: TurnRequested = decode_as(encode(REQUEST), TurnRequested)

    assert decoded == REQUEST


def test_decode_as_rejects_another_type() -> None:
    with pytest.raises(CodecError) as caught:
        decode_as(encode(REQUEST), TurnResponse)

    assert caught.value.reason is CodecErrorReason.UNEXPECTED_TYPE


def test_encode_rejects_unregistered_model() -> None:
    with pytest.raises(CodecError) as caught:
        encode(turn_input())

    assert caught.value.reason is CodecErrorReason.UNREGISTERED_MODEL


def test_encode_rejects_value_that_skipped_validation() -> None:
    broken = REQUEST.model_copy(update={"sent_at": "yesterday"})

    with pytest.raises(CodecError) as caught:
        encode(broken)

    assert caught.value.reason is CodecErrorReason.INVALID_VALUE


def test_codec_error_is_a_value_error_with_reason_in_message() -> None:
    with pytest.raises(ValueError, match=r"^bad_marker: "):
        decode(b'{"json": true}')


@pytest.mark.parametrize("data", [b"", b"\xc3"], ids=["empty", "half_marker"])
def test_rejects_bytes_shorter_than_the_marker_as_truncated(data: bytes) -> None:
    assert reason_of(data) is CodecErrorReason.TRUNCATED


def test_rejects_cut_header_as_truncated() -> None:
    assert reason_of(encode(REQUEST)[:6]) is CodecErrorReason.TRUNCATED


@pytest.mark.parametrize("cut", [1, 2, 10])
def test_rejects_cut_body_as_truncated(cut: int) -> None:
    assert reason_of(encode(REQUEST)[:-cut]) is CodecErrorReason.TRUNCATED


@pytest.mark.parametrize("data", [b"\x00\x01", b"\xc3\x00" + bytes(8), b'{"turn_id": 1}'])
def test_rejects_wrong_marker(data: bytes) -> None:
    assert reason_of(data) is CodecErrorReason.BAD_MARKER


def test_rejects_unknown_fingerprint() -> None:
    data = encode(REQUEST)
    assert reason_of(data[:2] + bytes(8) + data[10:]) is CodecErrorReason.UNKNOWN_FINGERPRINT


def test_rejects_trailing_bytes() -> None:
    assert reason_of(encode(REQUEST) + b"\x00") is CodecErrorReason.TRAILING_BYTES


def test_rejects_malformed_body() -> None:
    # turn_id is the first field: a 2-byte string that is not UTF-8.
    header = encode(REQUEST)[:10]
    assert reason_of(header + b"\x04\xff\xfe") is CodecErrorReason.MALFORMED_BODY


def test_rejects_well_formed_body_that_fails_validation() -> None:
    datum = REQUEST.model_dump()
    datum["turn_id"] = ""  # Avro has no length constraint; the model has

    data = single_object(avro_schema(TurnRequested), datum)

    assert reason_of(data) is CodecErrorReason.INVALID_VALUE


HEADERS = [MARKER + schema_fingerprint(avro_schema(model)) for model in EVENT_MODELS.values()]


@settings(max_examples=500, deadline=None)
@given(header=st.sampled_from([b"", *HEADERS]), body=st.binary(max_size=256))
def test_random_bytes_raise_only_codec_error(header: bytes, body: bytes) -> None:
    with contextlib.suppress(CodecError):
        decode(header + body)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_corrupted_encodings_raise_only_codec_error(data: st.DataObject) -> None:
    encoded = bytearray(encode(data.draw(st.sampled_from(SAMPLES))))
    position = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
    encoded[position] = data.draw(st.integers(min_value=0, max_value=255))
    with contextlib.suppress(CodecError):
        decode(bytes(encoded))


def test_decodes_data_written_with_an_older_committed_version(tmp_path: Path) -> None:
    current = avro_schema(TurnRequested)
    old = json.loads(json.dumps(current))
    old_input = next(field for field in old["fields"] if field["name"] == "input")["type"]
    # v1 had no metadata and no session_id yet, and a field that v2 dropped.
    old_input["fields"] = [
        field for field in old_input["fields"] if field["name"] not in {"metadata", "session_id"}
    ] + [{"name": "dropped_in_v2", "type": "long"}]
    (tmp_path / "TurnRequested.v1.avsc").write_text(schema_file_text(old))
    (tmp_path / "TurnRequested.v2.avsc").write_text(schema_file_text(current))
    codec = Codec({"turnstream.TurnRequested": TurnRequested}, tmp_path)
    datum = REQUEST.model_dump()
    datum["input"]["dropped_in_v2"] = 3

    decoded = codec.decode(single_object(old, datum))

    expected_input = REQUEST.input.model_copy(update={"metadata": {}, "session_id": None})
    assert decoded == REQUEST.model_copy(update={"input": expected_input})
    assert codec.encode(decoded)[2:10] == schema_fingerprint(current)


def test_data_of_a_version_that_was_never_committed_is_unknown(tmp_path: Path) -> None:
    codec = Codec({"turnstream.TurnRequested": TurnRequested}, tmp_path)
    other = avro_schema(TurnRequested) | {"doc": "changed"}
    other["fields"] = [*other["fields"], {"name": "extra", "type": "long", "default": 0}]

    with pytest.raises(CodecError) as caught:
        codec.decode(single_object(other, REQUEST.model_dump() | {"extra": 1}))

    assert caught.value.reason is CodecErrorReason.UNKNOWN_FINGERPRINT
