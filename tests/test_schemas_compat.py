"""The backward-compatibility checker, cross-checked with fastavro's own schema resolution."""

from __future__ import annotations

import copy
import io
from dataclasses import dataclass
from typing import Any

import fastavro
import pytest

from schemas.avro import avro_schema
from schemas.compat import incompatibilities
from schemas.events.turn_requested import TurnRequested

PRIMITIVE_DATA: dict[str, Any] = {
    "null": None,
    "boolean": True,
    "int": 7,
    "long": 7,
    "float": 0.5,
    "double": 0.5,
    "bytes": b"xy",
    "string": "xy",
}
PROMOTIONS = {
    ("int", "long"), ("int", "float"), ("int", "double"), ("long", "float"), ("long", "double"),
    ("float", "double"), ("string", "bytes"), ("bytes", "string"),
}  # fmt: skip


def record(fields: list[dict[str, Any]], name: str = "Thing", **extra: Any) -> dict[str, Any]:
    return {"type": "record", "name": name, "namespace": "turnstream", "fields": fields, **extra}


def enum(symbols: list[str], **extra: Any) -> dict[str, Any]:
    return {"type": "enum", "name": "Colour", "symbols": symbols, **extra}


def fastavro_reads(writer: Any, reader: Any, datum: Any) -> bool:
    """Whether fastavro reads ``datum``, written with ``writer``, using ``reader``."""
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(writer), datum)
    out.seek(0)
    try:
        fastavro.schemaless_reader(
            out, fastavro.parse_schema(writer), fastavro.parse_schema(reader)
        )
    except fastavro.read.SchemaResolutionError:
        return False
    return True


@dataclass(frozen=True)
class Case:
    name: str
    writer: dict[str, Any]
    reader: dict[str, Any]
    datum: dict[str, Any]


ID = {"name": "id", "type": "string"}
COMPATIBLE = [
    Case("identical", record([ID]), record([ID]), {"id": "a"}),
    Case(
        "add optional field with null default",
        record([ID]),
        record([ID, {"name": "note", "type": ["null", "string"], "default": None}]),
        {"id": "a"},
    ),
    Case(
        "add field with a default",
        record([ID]),
        record([ID, {"name": "count", "type": "long", "default": 0}]),
        {"id": "a"},
    ),
    Case(
        "remove a field",
        record([ID, {"name": "x", "type": "int"}]),
        record([ID]),
        {"id": "a", "x": 1},
    ),
    Case(
        "promote int to long",
        record([{"name": "n", "type": "int"}]),
        record([{"name": "n", "type": "long"}]),
        {"n": 3},
    ),
    Case(
        "add an enum symbol",
        record([{"name": "c", "type": enum(["RED"])}]),
        record([{"name": "c", "type": enum(["RED", "BLUE"])}]),
        {"c": "RED"},
    ),
    Case(
        "enum symbol the reader lacks, reader enum has a default",
        record([{"name": "c", "type": enum(["RED", "BLUE"])}]),
        record([{"name": "c", "type": enum(["RED", "OTHER"], default="OTHER")}]),
        {"c": "BLUE"},
    ),
    Case(
        "widen a field to an optional union",
        record([ID]),
        record([{"name": "id", "type": ["null", "string"]}]),
        {"id": "a"},
    ),
    Case(
        "promote inside a union",
        record([{"name": "n", "type": ["null", "int"]}]),
        record([{"name": "n", "type": ["null", "long"]}]),
        {"n": 3},
    ),
    Case(
        "rename a field with an alias",
        record([ID]),
        record([{"name": "key", "type": "string", "aliases": ["id"]}]),
        {"id": "a"},
    ),
    Case(
        "rename a record with an alias",
        record([ID]),
        record([ID], name="Item", aliases=["Thing"]),
        {"id": "a"},
    ),
    Case(
        "nested record in an array gains a defaulted field",
        record([{"name": "xs", "type": {"type": "array", "items": record([ID], name="X")}}]),
        record(
            [
                {
                    "name": "xs",
                    "type": {
                        "type": "array",
                        "items": record(
                            [ID, {"name": "n", "type": "long", "default": 1}], name="X"
                        ),
                    },
                }
            ]
        ),
        {"xs": [{"id": "a"}]},
    ),
    Case(
        "promote map values",
        record([{"name": "m", "type": {"type": "map", "values": "int"}}]),
        record([{"name": "m", "type": {"type": "map", "values": "double"}}]),
        {"m": {"k": 1}},
    ),
    Case(
        "a named type referenced twice",
        record([{"name": "a", "type": enum(["RED"])}, {"name": "b", "type": "Colour"}]),
        record([{"name": "a", "type": enum(["RED", "BLUE"])}, {"name": "b", "type": "Colour"}]),
        {"a": "RED", "b": "RED"},
    ),
]
INCOMPATIBLE = [
    Case(
        "add field without default",
        record([ID]),
        record([ID, {"name": "count", "type": "long"}]),
        {"id": "a"},
    ),
    Case(
        "change string to int",
        record([{"name": "v", "type": "string"}]),
        record([{"name": "v", "type": "int"}]),
        {"v": "7"},
    ),
    Case(
        "demote long to int",
        record([{"name": "n", "type": "long"}]),
        record([{"name": "n", "type": "int"}]),
        {"n": 1},
    ),
    Case(
        "remove an enum symbol",
        record([{"name": "c", "type": enum(["RED", "BLUE"])}]),
        record([{"name": "c", "type": enum(["RED"])}]),
        {"c": "BLUE"},
    ),
    Case(
        "narrow an optional union",
        record([{"name": "v", "type": ["null", "string"]}]),
        record([{"name": "v", "type": "string"}]),
        {"v": None},
    ),
    Case(
        "nested record in an array gains a required field",
        record([{"name": "xs", "type": {"type": "array", "items": record([ID], name="X")}}]),
        record(
            [
                {
                    "name": "xs",
                    "type": {
                        "type": "array",
                        "items": record([ID, {"name": "n", "type": "long"}], name="X"),
                    },
                }
            ]
        ),
        {"xs": [{"id": "a"}]},
    ),
    Case("rename a record without alias", record([ID]), record([ID], name="Item"), {"id": "a"}),
    Case(
        "change map values string to long",
        record([{"name": "m", "type": {"type": "map", "values": "string"}}]),
        record([{"name": "m", "type": {"type": "map", "values": "long"}}]),
        {"m": {"k": "v"}},
    ),
    Case(
        "change array to map",
        record([{"name": "xs", "type": {"type": "array", "items": "string"}}]),
        record([{"name": "xs", "type": {"type": "map", "values": "string"}}]),
        {"xs": ["a"]},
    ),
    Case(
        "change a fixed size",
        record([{"name": "h", "type": {"type": "fixed", "name": "H", "size": 2}}]),
        record([{"name": "h", "type": {"type": "fixed", "name": "H", "size": 4}}]),
        {"h": b"ab"},
    ),
]


@pytest.mark.parametrize("case", COMPATIBLE, ids=lambda case: case.name)
def test_checker_accepts_compatible_change_and_fastavro_agrees(case: Case) -> None:
    assert incompatibilities(case.reader, case.writer) == []
    assert fastavro_reads(case.writer, case.reader, case.datum)


@pytest.mark.parametrize("case", INCOMPATIBLE, ids=lambda case: case.name)
def test_checker_flags_incompatible_change_and_fastavro_agrees(case: Case) -> None:
    assert incompatibilities(case.reader, case.writer) != []
    assert not fastavro_reads(case.writer, case.reader, case.datum)


@pytest.mark.parametrize("reader_type", list(PRIMITIVE_DATA))
@pytest.mark.parametrize("writer_type", list(PRIMITIVE_DATA))
def test_checker_follows_the_primitive_promotion_table_like_fastavro(
    writer_type: str, reader_type: str
) -> None:
    writer = record([{"name": "v", "type": writer_type}])
    reader = record([{"name": "v", "type": reader_type}])
    expected = writer_type == reader_type or (writer_type, reader_type) in PROMOTIONS
    assert (incompatibilities(reader, writer) == []) is expected
    assert fastavro_reads(writer, reader, {"v": PRIMITIVE_DATA[writer_type]}) is expected


def test_problem_names_the_path_to_the_incompatible_field() -> None:
    old = avro_schema(TurnRequested)
    new = copy.deepcopy(old)
    turn_input = next(field for field in new["fields"] if field["name"] == "input")["type"]
    turn_input["fields"].append({"name": "priority", "type": "long"})
    channel = next(field for field in turn_input["fields"] if field["name"] == "channel")["type"]
    channel["symbols"].remove("sms")

    problems = incompatibilities(new, old)

    assert problems == [
        "TurnRequested.input.channel: the reader's enum lacks ['sms'] and has no default",
        "TurnRequested.input.priority: added without a default",
    ]


def test_writer_union_needs_every_branch_readable() -> None:
    writer = record([{"name": "v", "type": ["null", "string", "long"]}])
    reader = record([{"name": "v", "type": ["null", "string"]}])

    assert incompatibilities(reader, writer) == [
        "Thing.v<long>: no branch of the reader's union reads long"
    ]
    assert incompatibilities(writer, reader) == []


def test_recursive_records_terminate() -> None:
    node = record([ID, {"name": "next", "type": ["null", "turnstream.Thing"], "default": None}])
    assert incompatibilities(node, node) == []
