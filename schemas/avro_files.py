"""The committed Avro schemas: ``schemas/avro/<RecordName>.v<N>.avsc``, one per version.

Every released version stays committed: the codec reads data written with any of them, and
the compatibility check holds each new schema against all of them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.avro import NAMESPACE

AVRO_DIR = Path(__file__).parent / "avro"
_FILE_NAME = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)\.v(?P<version>[1-9][0-9]*)\.avsc$")


@dataclass(frozen=True)
class CommittedSchema:
    full_name: str
    version: int
    path: Path
    schema: dict[str, Any]


def schema_path(directory: Path, full_name: str, version: int) -> Path:
    return directory / f"{full_name.rpartition('.')[2]}.v{version}.avsc"


def schema_file_text(schema: dict[str, Any]) -> str:
    """How a schema is written to its file, so that regenerating it is byte-stable."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def committed_schemas(directory: Path = AVRO_DIR) -> dict[str, list[CommittedSchema]]:
    """Every committed schema by record full name, oldest version first.

    A ``.avsc`` file whose name does not follow the pattern, or whose record is not the one
    its name says, is an error: a misnamed file would be silently left out otherwise.
    """
    found: dict[str, list[CommittedSchema]] = {}
    for path in sorted(directory.glob("*.avsc")):
        match = _FILE_NAME.match(path.name)
        if match is None:
            raise ValueError(f"{path}: expected a name like TurnRequested.v1.avsc")
        schema = json.loads(path.read_text(encoding="utf-8"))
        full_name = f"{NAMESPACE}.{match['name']}"
        if f"{schema.get('namespace')}.{schema.get('name')}" != full_name:
            raise ValueError(f"{path}: holds no record named {full_name}")
        entry = CommittedSchema(full_name, int(match["version"]), path, schema)
        found.setdefault(full_name, []).append(entry)
    for versions in found.values():
        versions.sort(key=lambda entry: entry.version)
    return found
