"""Agent packs: read a pack's files, report every problem with its file and line, build it.

The files come through the :class:`PackSource` port; a folder on disk is
:class:`sinks.pack_files.PackFiles`, whose module also holds ``load_pack(dir)``,
``validate_pack(dir)`` and ``inspect_pack(dir)``. See ``packs/FORMAT.md`` for the layout and
:mod:`schemas.pack` for the models.
"""

from processors.pack.errors import PackError, PackValidationError, Severity
from processors.pack.loader import PackReport, check_pack, read_pack
from processors.pack.source import PackSource

__all__ = [
    "PackError",
    "PackReport",
    "PackSource",
    "PackValidationError",
    "Severity",
    "check_pack",
    "read_pack",
]
