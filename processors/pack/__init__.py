"""Agent packs: read a pack folder, report every problem with its file and line, load it.

See ``packs/FORMAT.md`` for the layout and :mod:`schemas.pack` for the models.
"""

from processors.pack.errors import PackError, PackValidationError, Severity
from processors.pack.loader import PackReport, check_pack, inspect_pack, load_pack, validate_pack

__all__ = [
    "PackError",
    "PackReport",
    "PackValidationError",
    "Severity",
    "check_pack",
    "inspect_pack",
    "load_pack",
    "validate_pack",
]
