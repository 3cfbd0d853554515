"""Naming the branch of optional records (fastavro tuple notation) changes no byte."""

from __future__ import annotations

import io
from typing import Any

import fastavro
import pytest
from pydantic import BaseModel

from schemas.avro import avro_schema
from schemas.codec import HEADER_SIZE, encode, union_shaper
from schemas.events.turn_envelope import TurnEnvelope
from schemas.samples import sample_events


def plain_body(model: BaseModel) -> bytes:
    """fastavro's own union resolution, without tuple notation."""
    out = io.BytesIO()
    schema = fastavro.parse_schema(avro_schema(type(model)))
    fastavro.schemaless_writer(out, schema, model.model_dump(warnings="error"))
    return out.getvalue()


@pytest.mark.parametrize("event", sample_events(), ids=lambda e: type(e).__name__)
def test_shaped_encoding_is_byte_for_byte_fastavro_s_own(event: BaseModel) -> None:
    assert encode(event)[HEADER_SIZE:] == plain_body(event)


def test_every_optional_record_of_a_turn_envelope_is_named() -> None:
    envelope = next(e for e in sample_events() if isinstance(e, TurnEnvelope))
    shaper = union_shaper(fastavro.parse_schema(avro_schema(TurnEnvelope)))
    assert shaper is not None
    shaped = shaper(envelope.model_dump(warnings="error"))
    named: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
            named.append(value[0])
            walk(value[1])
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(shaped)
    assert named and all(name.startswith("turnstream.") for name in named)


def test_a_schema_without_optional_records_needs_no_shaping() -> None:
    flat = {"type": "record", "name": "Flat", "fields": [{"name": "a", "type": ["null", "string"]}]}
    assert union_shaper(fastavro.parse_schema(flat)) is None
