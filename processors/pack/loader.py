"""The entry points: inspect, validate or load a pack folder; check a pack built elsewhere."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from processors.pack.checks import check
from processors.pack.collect import Collected, Origin, collect
from processors.pack.errors import PackError, PackValidationError, Severity
from processors.tool_policy import ToolPolicy
from schemas.pack import SECTION_KEYS, AgentPack

PACK_SOURCE = "<pack>"


@dataclass(frozen=True)
class PackReport:
    """Every problem of a pack, sorted by file and line, and the pack when none is an error."""

    problems: list[PackError]
    pack: AgentPack | None


def _sorted(errors: list[PackError]) -> list[PackError]:
    return sorted(errors, key=lambda e: (e.file, e.line, e.column, e.code, e.message))


def inspect_pack(pack_dir: str | Path, policy: ToolPolicy | None = None) -> PackReport:
    """Read and check the pack at ``pack_dir`` once; never raises for a bad pack. ``policy``:
    the operator's tool policy (``ToolPolicy.of(settings.tools)``; default: the defaults)."""
    found = collect(Path(pack_dir))
    problems = _sorted(found.errors + check(found, policy or ToolPolicy()))
    failed = found.agent is None or any(p.severity is Severity.ERROR for p in problems)
    return PackReport(problems, None if failed else found.to_pack())


def validate_pack(pack_dir: str | Path, policy: ToolPolicy | None = None) -> list[PackError]:
    """Every problem of the pack (errors, warnings, infos); each one is a :class:`PackError`."""
    return inspect_pack(pack_dir, policy).problems


def load_pack(pack_dir: str | Path, policy: ToolPolicy | None = None) -> AgentPack:
    """The pack; raises :class:`PackValidationError` with every problem if it has an error
    (warnings do not stop it)."""
    report = inspect_pack(pack_dir, policy)
    if report.pack is None:
        raise PackValidationError(report.problems)
    return report.pack


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
