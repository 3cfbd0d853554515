"""A pack folder on disk, read through the :class:`~processors.pack.source.PackSource` port,
and the entry points that read, check or load the pack in a folder.

``pack validate``, ``pack test``, the worker's publisher, replay and the benches all read packs
here; :mod:`processors.pack` parses and checks the text. Python tools are resolved by
:func:`sinks.python_tools.import_tool` under the operator's policy, as the worker resolves them.
"""

from __future__ import annotations

from pathlib import Path

from processors.pack import PackError, PackReport, PackValidationError, read_pack
from processors.tool_policy import ToolPolicy
from schemas.pack import AgentPack
from sinks.python_tools import import_tool

__all__ = ["PackFiles", "inspect_pack", "load_pack", "validate_pack"]


class PackFiles:
    """The files under ``root``; a file name is its path relative to ``root``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    @property
    def location(self) -> str:
        return str(self.root)

    def is_pack(self) -> bool:
        return self.root.is_dir()

    def place(self) -> tuple[str, str]:
        folder = self.root.resolve()
        return folder.parent.name, folder.name

    def entries(self, folder: str) -> list[str]:
        return sorted(path.name for path in (self.root / folder).glob("*"))

    def is_file(self, file: str) -> bool:
        return (self.root / file).is_file()

    def size(self, file: str) -> int:
        return (self.root / file).stat().st_size

    def read(self, file: str) -> str:
        return (self.root / file).read_text(encoding="utf-8")


def inspect_pack(pack_dir: str | Path, policy: ToolPolicy | None = None) -> PackReport:
    """Read and check the pack at ``pack_dir`` once; never raises for a bad pack. ``policy``:
    the operator's tool policy (``ToolPolicy.of(settings.tools)``; default: the defaults)."""
    policy = policy or ToolPolicy()
    return read_pack(PackFiles(pack_dir), policy, lambda path: import_tool(policy, path))


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
