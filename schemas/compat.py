"""Backward compatibility per the Avro schema-resolution rules.

A new (reader) schema is backward compatible with an old (writer) schema when every datum
written with the old one can be read with the new one. The rules, from the Avro
specification's "Schema Resolution" section:

- primitives must be equal or promotable: int to long, float or double; long to float or
  double; float to double; string to bytes and bytes to string (logical types are ignored);
- records and enums (and fixed) match by unqualified name or a reader alias;
- a reader field the writer lacks needs a default; writer fields the reader lacks are skipped;
- an enum symbol the writer may write and the reader lacks is an error unless the reader
  enum has a default;
- a writer union needs every branch readable; a reader union is matched, for a non-union
  writer, by its first branch of the same kind (or a promotion), then resolved recursively;
- arrays and maps resolve their items and values recursively; fixed sizes must be equal.
"""

from __future__ import annotations

from typing import Any

from fastavro import parse_schema

from schemas.avro import AvroSchema

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_PROMOTIONS: dict[str, frozenset[str]] = {
    "int": frozenset({"long", "float", "double"}),
    "long": frozenset({"float", "double"}),
    "float": frozenset({"double"}),
    "string": frozenset({"bytes"}),
    "bytes": frozenset({"string"}),
}
_NAMED = frozenset({"record", "enum", "fixed"})


def incompatibilities(reader: AvroSchema, writer: AvroSchema) -> list[str]:
    """Why data written with ``writer`` cannot be read with ``reader``; empty when it can.

    Each entry starts with the path to the problem, e.g. ``TurnRequested.input.channel: ...``.
    """
    return _Resolution(reader, writer).problems


def _kind(schema: AvroSchema) -> str:
    if isinstance(schema, list):
        return "union"
    if isinstance(schema, dict):
        return str(schema["type"])
    return schema


def _short(name: str) -> str:
    return name.rpartition(".")[2]


def _describe(schema: AvroSchema) -> str:
    if isinstance(schema, dict) and schema["type"] in _NAMED:
        return f"{schema['type']} {_short(schema['name'])}"
    return _kind(schema)


class _Resolution:
    """One reader/writer pair, walked together; collects every problem, not just the first."""

    def __init__(self, reader: AvroSchema, writer: AvroSchema) -> None:
        self._reader_names: dict[str, Any] = {}
        self._writer_names: dict[str, Any] = {}
        self._visited: set[tuple[str, str]] = set()
        self.problems: list[str] = []
        parsed_reader = parse_schema(reader, named_schemas=self._reader_names)
        parsed_writer = parse_schema(writer, named_schemas=self._writer_names)
        root = _short(parsed_writer["name"]) if isinstance(parsed_writer, dict) else "(root)"
        self._resolve(parsed_reader, parsed_writer, root)

    def _reader(self, schema: AvroSchema) -> AvroSchema:
        """A reference to a named type, replaced by its definition."""
        if isinstance(schema, str) and schema not in _PRIMITIVES:
            return self._reader_names[schema]  # type: ignore[no-any-return]
        return schema

    def _writer(self, schema: AvroSchema) -> AvroSchema:
        if isinstance(schema, str) and schema not in _PRIMITIVES:
            return self._writer_names[schema]  # type: ignore[no-any-return]
        return schema

    def _resolve(self, reader: AvroSchema, writer: AvroSchema, path: str) -> None:
        reader, writer = self._reader(reader), self._writer(writer)
        if isinstance(writer, list):
            for branch in writer:
                self._resolve(reader, branch, f"{path}<{_describe(self._writer(branch))}>")
            return
        if isinstance(reader, list):
            chosen = next((branch for branch in reader if self._matches(branch, writer)), None)
            if chosen is None:
                self._problem(path, f"no branch of the reader's union reads {_describe(writer)}")
            else:
                self._resolve(chosen, writer, path)
            return
        if not self._matches(reader, writer):
            self._problem(path, f"{_describe(writer)} cannot be read as {_describe(reader)}")
            return
        if not isinstance(reader, dict) or not isinstance(writer, dict):
            return  # matching primitives
        kind = writer["type"]
        if kind == "record":
            self._resolve_record(reader, writer, path)
        elif kind == "enum":
            lacking = [symbol for symbol in writer["symbols"] if symbol not in reader["symbols"]]
            if lacking and "default" not in reader:
                self._problem(path, f"the reader's enum lacks {lacking} and has no default")
        elif kind == "fixed" and reader["size"] != writer["size"]:
            self._problem(path, f"fixed size {writer['size']} read as size {reader['size']}")
        elif kind == "array":
            self._resolve(reader["items"], writer["items"], f"{path}[]")
        elif kind == "map":
            self._resolve(reader["values"], writer["values"], f"{path}{{}}")

    def _matches(self, reader: AvroSchema, writer: AvroSchema) -> bool:
        """The shallow test: same kind (and name, for named types) or a promotion. It is also
        how the first matching branch of a reader's union is chosen."""
        reader = self._reader(reader)
        writer_kind, reader_kind = _kind(writer), _kind(reader)
        if isinstance(reader, dict) and isinstance(writer, dict) and writer_kind in _NAMED:
            aliases = {_short(alias) for alias in reader.get("aliases", ())}
            names = {_short(reader["name"]), *aliases}
            return reader_kind == writer_kind and _short(writer["name"]) in names
        return reader_kind == writer_kind or reader_kind in _PROMOTIONS.get(writer_kind, ())

    def _resolve_record(self, reader: dict[str, Any], writer: dict[str, Any], path: str) -> None:
        pair = (writer["name"], reader["name"])
        if pair in self._visited:  # a recursive type: this pair is being resolved already
            return
        self._visited.add(pair)
        written = {field["name"]: field for field in writer["fields"]}
        for field in reader["fields"]:
            names = [field["name"], *field.get("aliases", ())]
            source = next((written[name] for name in names if name in written), None)
            where = f"{path}.{field['name']}"
            if source is not None:
                self._resolve(field["type"], source["type"], where)
            elif "default" not in field:
                self._problem(where, "added without a default")

    def _problem(self, path: str, what: str) -> None:
        self.problems.append(f"{path}: {what}")
