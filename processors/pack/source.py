"""The port the pack reader reads through: a pack's files by their names inside the pack.

The validator parses and checks text it is given; where that text comes from (a folder on
disk: :class:`sinks.pack_files.PackFiles`) is an adapter's business. Files are named by their
path inside the pack (``rules.yaml``, ``scenarios/refund.yaml``), the names every
:class:`~processors.pack.errors.PackError` carries.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["PackSource"]


class PackSource(Protocol):
    """Read access to one pack. ``size`` and ``read`` raise ``OSError`` (or
    ``UnicodeDecodeError``) for a file that cannot be read; the reader reports it as a
    problem of that file."""

    @property
    def location(self) -> str:
        """Where the pack is, as the operator named it (for messages)."""
        ...

    def is_pack(self) -> bool:
        """The pack's folder exists."""
        ...

    def place(self) -> tuple[str, str]:
        """The names of the pack's parent folder and its own folder, as they resolve
        (packs live in ``<tenant_id>/<agent_id>/``)."""
        ...

    def entries(self, folder: str) -> list[str]:
        """The names of everything directly in ``folder`` (``""``: the pack's own folder),
        hidden names and subfolders included, sorted; empty when it is not a folder."""
        ...

    def is_file(self, file: str) -> bool: ...

    def size(self, file: str) -> int:
        """The file's size in bytes, asked before it is read (big files are refused)."""
        ...

    def read(self, file: str) -> str:
        """The file's text, decoded as UTF-8."""
        ...
