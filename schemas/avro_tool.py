"""Keep the committed Avro schemas in step with the models.

``python -m schemas.avro_tool write`` regenerates the schema files: a model whose schema
changed gets a new version file (``<RecordName>.v<N+1>.avsc``), a change that leaves the
canonical form alone (docs, defaults) rewrites the latest file, and nothing is written at
all when a new schema cannot read data written with every committed version (exit 1).

``python -m schemas.avro_tool check`` exits 1 when a generated schema differs from its
latest committed file, is not backward compatible with a committed version, or a committed
schema has no model any more; CI and the tests run it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from schemas.avro import avro_schema, canonical_form
from schemas.avro_files import (
    AVRO_DIR,
    CommittedSchema,
    committed_schemas,
    schema_file_text,
    schema_path,
)
from schemas.compat import incompatibilities
from schemas.registry import EVENT_MODELS


@dataclass(frozen=True)
class SchemaFile:
    path: Path
    text: str
    why: str


def _compatibility_problems(
    full_name: str, schema: dict[str, object], versions: Sequence[CommittedSchema]
) -> list[str]:
    return [
        f"{full_name} cannot read data written with v{old.version}: {problem}"
        for old in versions
        for problem in incompatibilities(schema, old.schema)
    ]


def plan_write(
    models: Mapping[str, type[BaseModel]], directory: Path
) -> tuple[list[SchemaFile], list[str]]:
    """The files ``write`` would write, and the compatibility problems that forbid it."""
    committed = committed_schemas(directory)
    files: list[SchemaFile] = []
    problems: list[str] = []
    for full_name, model in models.items():
        schema = avro_schema(model)
        versions = committed.get(full_name, [])
        problems += _compatibility_problems(full_name, schema, versions)
        if not versions:
            files.append(
                SchemaFile(schema_path(directory, full_name, 1), schema_file_text(schema), "new")
            )
            continue
        latest = versions[-1]
        if latest.schema == schema:
            continue
        if canonical_form(latest.schema) == canonical_form(schema):
            files.append(
                SchemaFile(latest.path, schema_file_text(schema), "docs or defaults changed")
            )
        else:
            path = schema_path(directory, full_name, latest.version + 1)
            files.append(SchemaFile(path, schema_file_text(schema), f"after v{latest.version}"))
    return files, problems


def check(models: Mapping[str, type[BaseModel]], directory: Path) -> list[str]:
    """Everything that makes ``check`` fail; empty when the committed schemas are current."""
    committed = committed_schemas(directory)
    problems = [
        f"{full_name}: committed but no model in the registry has this name"
        for full_name in committed.keys() - models.keys()
    ]
    for full_name, model in models.items():
        schema = avro_schema(model)
        versions = committed.get(full_name, [])
        if not versions:
            problems.append(f"{full_name}: no committed schema")
        elif versions[-1].schema != schema:
            problems.append(f"{full_name}: generated schema differs from {versions[-1].path.name}")
        problems += _compatibility_problems(full_name, schema, versions)
    return problems


def main(
    argv: Sequence[str] | None = None, models: Mapping[str, type[BaseModel]] = EVENT_MODELS
) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m schemas.avro_tool", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("command", choices=["write", "check"])
    parser.add_argument(
        "--dir", type=Path, default=AVRO_DIR, help="schema folder (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    if args.command == "check":
        problems = check(models, args.dir)
        for problem in problems:
            print(problem, file=sys.stderr)
        if problems:
            print(
                "run `python -m schemas.avro_tool write` after a compatible change", file=sys.stderr
            )
            return 1
        print(f"{len(models)} schemas match the committed files")
        return 0
    files, problems = plan_write(models, args.dir)
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        print("refusing to write: the new schemas are not backward compatible", file=sys.stderr)
        return 1
    args.dir.mkdir(parents=True, exist_ok=True)
    for file in files:
        file.path.write_text(file.text, encoding="utf-8")
        print(f"wrote {file.path.name} ({file.why})")
    if not files:
        print("schemas up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
