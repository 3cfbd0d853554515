"""Read a pack's conversation tests (``tests/*.yaml``) and check them against the pack.

Errors name their file and line, like the pack validator's: a conversation that fails its
schema, or whose expectations name an intent, scenario, step, tool or field the pack does not
have, is reported and left out; the others still run. A typo in a test must not read as an
engine failure ("expected refund_requets, got refund_request").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from processors.pack.collect import Origin, is_yaml
from processors.pack.errors import PackError
from processors.pack.source import PackSource
from processors.pack.yaml_source import read_yaml, resolve
from schemas.pack import AgentPack
from schemas.pack.conversations import Conversation, TurnExpectation

TESTS_DIR = "tests"
_CODES = {"extra_forbidden": "unknown_key", "missing": "missing_key", "enum": "invalid_choice"}


@dataclass(frozen=True)
class LoadedConversation:
    """A conversation and where it was written."""

    file: str
    line: int
    conversation: Conversation


@dataclass(frozen=True)
class Suite:
    """A pack's conversations (file order, then order in the file) and the problems found."""

    conversations: tuple[LoadedConversation, ...]
    errors: tuple[PackError, ...]


def test_files(source: PackSource) -> list[str]:
    """``tests/*.yaml`` and ``tests/*.yml`` of the pack, sorted by name."""
    names = [f"{TESTS_DIR}/{name}" for name in source.entries(TESTS_DIR) if is_yaml(name)]
    return [file for file in names if source.is_file(file)]


def load_suite(source: PackSource, pack: AgentPack | None = None) -> Suite:
    """Every conversation of the pack's tests; with ``pack``, references are checked too."""
    conversations: list[LoadedConversation] = []
    errors: list[PackError] = []
    names: dict[str, str] = {}
    for file in test_files(source):
        doc, problems = read_yaml(source, file)
        errors.extend(problems)
        if doc is None:
            continue
        origin = Origin(file, doc.node)
        items = doc.data.get("conversations") if isinstance(doc.data, dict) else None
        if not isinstance(doc.data, dict) or set(doc.data) != {"conversations"}:
            errors.append(origin.at("bad_test_file", "expected one key: conversations"))
        if not isinstance(items, list):
            continue
        for n, item in enumerate(items):
            found = _conversation(item, origin, n, pack, errors)
            if found is None:
                continue
            line = resolve(doc.node, ("conversations", n))[0]
            where = f"{file}:{line}"
            if found.name in names:
                errors.append(
                    origin.at(
                        "duplicate_conversation",
                        f"conversation {found.name!r} is also at {names[found.name]}",
                        "conversations",
                        n,
                        "name",
                    )
                )
                continue
            names[found.name] = where
            conversations.append(LoadedConversation(file, line, found))
    return Suite(tuple(conversations), tuple(errors))


def _conversation(
    item: Any, origin: Origin, n: int, pack: AgentPack | None, errors: list[PackError]
) -> Conversation | None:
    try:
        found = Conversation.model_validate(item)
    except ValidationError as exc:
        name = item.get("name") if isinstance(item, dict) else None
        what = f"conversation {name!r}" if isinstance(name, str) else f"conversation #{n + 1}"
        for err in exc.errors(include_url=False):
            loc = tuple(err["loc"])
            path = ".".join(str(part) for part in loc)
            message = err["msg"].removeprefix("Value error, ")
            text = f"{what}: {path}: {message}" if path else f"{what}: {message}"
            code = _CODES.get(err["type"], "invalid_value")
            errors.append(origin.at(code, text, "conversations", n, *loc))
        return None
    if pack is None:
        return found
    unknown = [
        origin.at("unknown_reference", message, "conversations", n, "turns", t, "expect", key)
        for t, turn in enumerate(found.turns)
        for key, message in _unknown_references(turn.expect, pack)
    ]
    errors.extend(unknown)
    return None if unknown else found


def _unknown_references(expect: TurnExpectation, pack: AgentPack) -> Iterable[tuple[str, str]]:
    """(key, message) for every id the expectation names that the pack lacks."""
    intents = {i.id for i in pack.intents}
    scenarios = {s.id: s for s in pack.scenarios}
    tools = {t.id for t in pack.tools}
    fields = {f.key for f in pack.fields}
    if expect.intent is not None and expect.intent not in intents:
        yield "intent", f"no intent {expect.intent!r} in the pack"
    named = [expect.scenario] if expect.scenario else []
    for key in ("paused", "cancelled"):
        ids = getattr(expect, key) or []
        named += ids
        for sid in ids:
            if sid not in scenarios:
                yield key, f"no scenario {sid!r} in the pack"
    if expect.scenario is not None:
        scenario = scenarios.get(expect.scenario)
        if scenario is None:
            yield "scenario", f"no scenario {expect.scenario!r} in the pack"
        else:
            steps = {s.id for s in scenario.steps}
            for step in [expect.step] if expect.step else []:
                if step not in steps:
                    yield "step", f"scenario {scenario.id!r} has no step {step!r}"
            for step in expect.skipped or []:
                if step not in steps:
                    yield "skipped", f"scenario {scenario.id!r} has no step {step!r}"
    for key in ("tools", "failed_tools"):
        for tool in getattr(expect, key) or []:
            if tool not in tools:
                yield key, f"no tool {tool!r} in the pack"
    rules = {r.id for r in pack.rules}
    for rule in expect.violated or []:
        if rule not in rules:
            yield "violated", f"no rule {rule!r} in the pack"
    for field in expect.data or {}:
        if field not in fields:
            yield "data", f"no field {field!r} in the pack"
