"""Read a pack file by file (through its :class:`PackSource`) and validate each object on its own.

Objects are validated one by one, not file by file, so that one broken rule neither hides the
errors of the others nor keeps the valid ones out of the cross-reference checks. The ids of
broken objects are remembered so those checks do not report references to them as unknown.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core.core_schema import ErrorType

from processors.pack.errors import PackError, Severity
from processors.pack.source import PackSource
from processors.pack.yaml_source import YamlDocument, read_text, read_yaml, resolve
from schemas.pack import SECTION_KEYS, AgentPack, AgentSettings

AGENT_FILE = "agent.yaml"
SCENARIO_DIR = "scenarios"
DATA_DIR = "data"
#: file -> the sections (top-level keys) it may hold
SECTION_FILES: dict[str, tuple[str, ...]] = {
    "fields.yaml": ("fields",),
    "glossary.yaml": ("glossary",),
    "intents.yaml": ("intents",),
    "rules.yaml": ("rules", "relationships"),
    "scenarios.yaml": ("scenarios",),
    "tools.yaml": ("tools",),
    "templates.yaml": ("templates",),
    "webhooks.yaml": ("webhooks",),
}
_ERROR_CODES = {
    "missing": "missing_key",
    "extra_forbidden": "unknown_key",
    "enum": "invalid_choice",
    "literal_error": "invalid_choice",
    "string_pattern_mismatch": "invalid_format",
}
_PYDANTIC_TYPES = frozenset(get_args(ErrorType))
#: the key holding an object's id, where it is not ``id`` (relationships have none)
ID_KEYS = {"fields": "key", "glossary": "term"}


@dataclass(frozen=True)
class Origin:
    """Where an object was written: its file and YAML node (``None`` when not from YAML)."""

    file: str
    node: yaml.Node | None = None

    def at(
        self, code: str, message: str, *loc: str | int, severity: Severity = Severity.ERROR
    ) -> PackError:
        """An error about ``loc`` inside this object."""
        line, column, _ = resolve(self.node, loc)
        return PackError(self.file, line, code, message, column, severity)


@dataclass
class Collected:
    """The valid objects of a pack, where each came from, and the errors found so far.
    ``broken`` holds ids of objects that failed validation, ``unreadable`` the sections of files
    that did not parse: references into either are not reported as unknown."""

    agent: AgentSettings | None = None
    objects: dict[str, list[Any]] = field(default_factory=lambda: {s: [] for s in SECTION_KEYS})
    origins: dict[str, list[Origin]] = field(default_factory=lambda: {s: [] for s in SECTION_KEYS})
    broken: dict[str, set[str]] = field(default_factory=lambda: {s: set() for s in SECTION_KEYS})
    unreadable: set[str] = field(default_factory=set)
    errors: list[PackError] = field(default_factory=list)

    def add(self, section: str, obj: BaseModel, origin: Origin) -> None:
        self.objects[section].append(obj)
        self.origins[section].append(origin)

    def to_pack(self) -> AgentPack:
        assert self.agent is not None
        return AgentPack(agent=self.agent, **self.objects)


def item_model(section: str) -> type[BaseModel]:
    """The model of one item of ``section``, read off :class:`AgentPack` (one source of truth)."""
    model: type[BaseModel] = get_args(AgentPack.model_fields[section].annotation)[0]
    return model


def collect(source: PackSource) -> Collected:
    """Read every file of the pack; see the module docstring."""
    found = Collected()
    if not source.is_pack():
        message = f"{source.location} is not a folder"
        found.errors.append(PackError(".", 0, "missing_pack", message))
        return found
    _read_agent(source, found)
    for name in _yaml_files(source, ""):
        if name == AGENT_FILE:
            continue
        if name not in SECTION_FILES:
            known = ", ".join([AGENT_FILE, *SECTION_FILES])
            found.errors.append(
                PackError(
                    name,
                    0,
                    "unknown_file",
                    f"ignored; the pack reads {known}",
                    severity=Severity.WARNING,
                )
            )
            continue
        doc, errors = read_yaml(source, name)
        found.errors.extend(errors)
        if doc is None:
            found.unreadable.update(SECTION_FILES[name])
        else:
            _read_sections(doc, found)
    for name in _yaml_files(source, SCENARIO_DIR):
        doc, errors = read_yaml(source, f"{SCENARIO_DIR}/{name}")
        found.errors.extend(errors)
        if doc is None:
            found.unreadable.add("scenarios")
        else:
            _validate_item(doc.data, "scenarios", Origin(doc.file, doc.node), found)
    for name in source.entries(DATA_DIR):
        if name.endswith(".json"):
            _check_json(source, f"{DATA_DIR}/{name}", found)
    return found


def _yaml_files(source: PackSource, folder: str) -> list[str]:
    """The names in ``folder`` with a YAML suffix, sorted."""
    return [name for name in source.entries(folder) if is_yaml(name)]


def is_yaml(name: str) -> bool:
    return PurePosixPath(name).suffix in (".yaml", ".yml")


def _read_agent(source: PackSource, found: Collected) -> None:
    if not source.is_file(AGENT_FILE):
        found.errors.append(PackError(AGENT_FILE, 0, "missing_file", "the pack needs agent.yaml"))
        return
    doc, errors = read_yaml(source, AGENT_FILE)
    found.errors.extend(errors)
    if doc is None:
        return
    origin = Origin(AGENT_FILE, doc.node)
    try:
        agent = found.agent = AgentSettings.model_validate(doc.data)
    except ValidationError as exc:
        found.errors.extend(_schema_errors(exc, "agent settings", origin))
        return
    if source.place() != (agent.tenant_id, agent.agent_id):
        message = (
            f"packs live in <tenant_id>/<agent_id>/; expected the folder to end with "
            f"{agent.tenant_id}/{agent.agent_id}"
        )
        found.errors.append(
            origin.at("folder_mismatch", message, "agent_id", severity=Severity.WARNING)
        )


def _read_sections(doc: YamlDocument, found: Collected) -> None:
    allowed = SECTION_FILES[doc.file]
    whole = Origin(doc.file, doc.node)
    if doc.data is None:
        return
    if not isinstance(doc.data, dict):
        message = f"expected a mapping with {' and '.join(allowed)}"
        found.errors.append(whole.at("bad_structure", message))
        return
    for section, items in doc.data.items():
        if section not in allowed:
            message = f"unknown section {section!r}; {doc.file} holds {', '.join(allowed)}"
            found.errors.append(whole.at("unknown_section", message, str(section)))
            continue
        if items is None:
            continue
        if not isinstance(items, list):
            found.errors.append(whole.at("bad_structure", f"{section} must be a list", section))
            continue
        _, _, list_node = resolve(doc.node, (section,))
        for index, item in enumerate(items):
            _, _, item_node = resolve(list_node, (index,))
            _validate_item(item, section, Origin(doc.file, item_node), found)


def _validate_item(data: Any, section: str, origin: Origin, found: Collected) -> None:
    try:
        obj = item_model(section).model_validate(data)
    except ValidationError as exc:
        ident = _id_of(data, section)
        what = SECTION_KEYS[section][0] + (f" {ident}" if ident else "")
        found.errors.extend(_schema_errors(exc, what, origin))
        if ident:
            found.broken[section].add(ident)
        return
    found.add(section, obj, origin)


def _id_of(data: Any, section: str) -> str | None:
    ident = data.get(ID_KEYS.get(section, "id")) if isinstance(data, dict) else None
    return ident if isinstance(ident, str) else None


def _schema_errors(exc: ValidationError, what: str, origin: Origin) -> list[PackError]:
    errors = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        path = ".".join(str(part) for part in loc)
        message = err["msg"].removeprefix("Value error, ")
        text = f"{what}: {path}: {message}" if path else f"{what}: {message}"
        errors.append(origin.at(_error_code(err["type"]), text, *loc))
    return errors


def _error_code(pydantic_type: str) -> str:
    """A small stable set of codes for pydantic's many types; the models' own
    ``PydanticCustomError`` codes (``bad_import_path``, ``secret_in_pack``, ...) pass through."""
    if pydantic_type not in _PYDANTIC_TYPES:
        return pydantic_type
    if pydantic_type.endswith(("_type", "_parsing")):
        return "invalid_type"
    return _ERROR_CODES.get(pydantic_type, "invalid_value")


def _check_json(source: PackSource, file: str, found: Collected) -> None:
    """Data files back the pack's tools: a syntax error there is an error of the pack."""
    text, problem = read_text(source, file)
    if problem:
        found.errors.append(problem)
    if text is None:
        return
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        found.errors.append(PackError(file, exc.lineno, "json_syntax", exc.msg, exc.colno))
