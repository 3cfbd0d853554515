"""The entry points: read and check a pack from its source; check a pack built elsewhere."""

from __future__ import annotations

from dataclasses import dataclass

from processors.pack.checks import check
from processors.pack.collect import Collected, Origin, collect
from processors.pack.errors import PackError, Severity
from processors.pack.source import PackSource
from processors.tool_policy import ToolPolicy, ToolResolver
from schemas.pack import SECTION_KEYS, AgentPack

PACK_SOURCE = "<pack>"


@dataclass(frozen=True)
class PackReport:
    """Every problem of a pack, sorted by file and line, and the pack when none is an error."""

    problems: list[PackError]
    pack: AgentPack | None


def _sorted(errors: list[PackError]) -> list[PackError]:
    return sorted(errors, key=lambda e: (e.file, e.line, e.column, e.code, e.message))


def read_pack(
    source: PackSource, policy: ToolPolicy, resolve_tool: ToolResolver | None = None
) -> PackReport:
    """Read and check the pack ``source`` holds once; never raises for a bad pack. ``policy``:
    the operator's tool policy; ``resolve_tool``: how an allowed Python tool is resolved
    (without it, tools are judged by the policy alone). The folder entry points are
    :mod:`sinks.pack_files`'s ``inspect_pack``, ``validate_pack`` and ``load_pack``."""
    found = collect(source)
    problems = _sorted(found.errors + check(found, policy, resolve_tool))
    failed = found.agent is None or any(p.severity is Severity.ERROR for p in problems)
    return PackReport(problems, None if failed else found.to_pack())


def check_pack(pack: AgentPack, policy: ToolPolicy | None = None) -> list[PackError]:
    """The cross-object checks for a pack that did not come from YAML (e.g. one received as
    JSON); problems name the section and have no line. Tool implementations are judged only
    with a ``policy``: a worker accepts the pack and refuses each forbidden call instead, so
    a tightened policy costs an agent its refused tools, not its pack."""
    found = Collected(agent=pack.agent)
    for section in SECTION_KEYS:
        for obj in getattr(pack, section):
            found.add(section, obj, Origin(f"{PACK_SOURCE}/{section}"))
    return _sorted(check(found, policy))
