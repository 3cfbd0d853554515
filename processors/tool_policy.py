"""What a pack's tools may run and reach: the operator's policy, checked by the pack
validator and again at every call in the worker.

A pack is tenant-written, and a Python tool runs inside the shared worker, so it names code
the *operator* has allowed: ``implementation.python`` must be a module under one of
``python_prefixes`` (``TURNSTREAM_TOOLS__PYTHON_ALLOWED_PREFIXES``; default
:data:`DEFAULT_PYTHON_PREFIXES`, the built-in tool modules). A prefix is a package: ``a.b``
allows ``a.b`` and ``a.b.c``, never ``a.bc``. A refused module is never imported (the import
is :func:`sinks.python_tools.import_tool`'s, after this policy said yes), so naming
``os:system`` or ``this`` runs nothing. HTTP tools follow the outbound policy of
:mod:`processors.url_guard` unless ``allow_private_http`` (an operator opt-in for
development and tests).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from schemas.settings import DEFAULT_PYTHON_PREFIXES, ToolSettings, normal_prefix


class ToolRefusedError(PermissionError):
    """A call the operator's policy forbids; the call fails, nothing runs."""


class ToolImportError(ImportError):
    """An allowed tool path that does not resolve to a callable."""


ToolResolver = Callable[[str], object]
"""Resolves an allowed ``module:function`` to its callable, raising :class:`ToolImportError`
when it does not resolve (``sinks.python_tools.import_tool`` under a policy): the port the
pack validator checks Python tools through."""


@dataclass(frozen=True)
class ToolPolicy:
    python_prefixes: tuple[str, ...] = DEFAULT_PYTHON_PREFIXES
    allow_private_http: bool = False

    @classmethod
    def of(cls, tools: ToolSettings) -> ToolPolicy:
        """The policy an operator configured (``TURNSTREAM_TOOLS__*``)."""
        return cls(tuple(tools.python_allowed_prefixes), tools.allow_private_targets)

    def python_refusal(self, path: str) -> str | None:
        """Why ``module:function`` may not run here, or None when its module is allowed."""
        module = path.partition(":")[0]
        prefixes = [normal_prefix(p) for p in self.python_prefixes]
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return None
        allowed = ", ".join(prefixes) or "none"
        return (
            f"module {module!r} is not under an allowed tool prefix ({allowed}); "
            "the operator sets TURNSTREAM_TOOLS__PYTHON_ALLOWED_PREFIXES"
        )
