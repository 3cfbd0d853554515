"""Python tools: a pack's ``implementation.python`` calls, importing the operator-allowed module.

Importing a module runs its code, so this is where a tool's code enters the worker: the
operator's :class:`~processors.tool_policy.ToolPolicy` is asked first, and a refused module is
never imported (naming ``os:system`` or ``this`` runs nothing). The pack validator resolves
tools through :func:`import_tool` too, so ``pack validate`` and the worker agree on what runs.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from processors.tool_policy import ToolImportError, ToolPolicy, ToolRefusedError
from schemas.pack.tools import Tool

__all__ = ["PythonToolExecutor", "import_tool"]


def import_tool(policy: ToolPolicy, path: str) -> Callable[..., Any]:
    """The function ``module:function`` names: :class:`ToolRefusedError` before any import
    when ``policy`` does not allow the module, :class:`ToolImportError` when it does not
    resolve to a callable."""
    refusal = policy.python_refusal(path)
    if refusal is not None:
        raise ToolRefusedError(refusal)
    module_name, _, name = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # a module's import may raise anything
        raise ToolImportError(f"cannot import {module_name!r}: {exc}") from exc
    function = getattr(module, name, None)
    if function is None:
        raise ToolImportError(f"module {module_name!r} has no {name!r}")
    if not callable(function):
        raise ToolImportError(f"{path} is not callable")
    return function  # type: ignore[no-any-return]


@dataclass
class PythonToolExecutor:
    """Calls ``implementation.python`` (``module:function``) as
    ``function(arguments, *, config, pack_dir)``; sync functions run in a worker thread so a
    slow tool cannot block the event loop (a timed-out thread finishes on its own). Only
    modules the operator's ``policy`` allows are imported; any other call fails with
    :class:`ToolRefusedError` before anything is imported."""

    pack_dir: Path
    policy: ToolPolicy = field(default_factory=ToolPolicy)
    _functions: dict[str, Callable[..., Any]] = field(default_factory=dict, init=False)

    def _function(self, path: str) -> Callable[..., Any]:
        if path not in self._functions:
            self._functions[path] = import_tool(self.policy, path)
        return self._functions[path]

    async def call(self, tool: Tool, arguments: dict[str, Any]) -> dict[str, Any]:
        path = tool.implementation.python
        if path is None:
            raise ValueError(f"tool {tool.id} has no python implementation")
        function = self._function(path)
        config = dict(tool.config)
        if inspect.iscoroutinefunction(function):
            result = await function(arguments, config=config, pack_dir=self.pack_dir)
        else:
            result = await asyncio.to_thread(
                function, arguments, config=config, pack_dir=self.pack_dir
            )
        if not isinstance(result, dict):
            raise TypeError(f"tool {tool.id} returned {type(result).__name__}, not an object")
        return result
