"""HTTP tools: a pack's ``implementation.http`` calls, through the same guarded client path as
webhooks (:mod:`sinks.outbound_http`).

Before each request the URL's addresses are checked (:func:`sinks.webhooks.ssrf.check_url`),
and the session's resolver checks them again at connect time; redirects are not followed. A
refused target raises :class:`TargetRefusedError`, which P7 records as a failed call.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from processors.phases.tools import PackToolExecutor
from processors.tool_policy import ToolPolicy
from schemas.fields import json_text
from schemas.pack.tools import HttpMethod, Tool
from sinks.python_tools import PythonToolExecutor
from sinks.webhooks.ssrf import TargetRefusedError, check_url

MAX_RESPONSE_BYTES = 1024 * 1024
"""A tool's answer is a JSON object for one turn: a larger body is refused, not read."""


@dataclass
class HttpToolExecutor:
    """Sends the arguments as JSON (as query parameters for GET) and expects a JSON object;
    the tool's ``timeout_ms`` bounds the request. ``session`` comes from
    :func:`sinks.outbound_http.guarded_session`."""

    session: aiohttp.ClientSession
    allow_private: bool = False

    async def call(self, tool: Tool, arguments: dict[str, Any]) -> dict[str, Any]:
        http = tool.implementation.http
        if http is None:
            raise ValueError(f"tool {tool.id} has no http implementation")
        url = str(http.url)
        await check_url(url, allow_private=self.allow_private)
        timeout = aiohttp.ClientTimeout(total=tool.timeout_ms / 1000)
        if http.method is HttpMethod.GET:
            params = {k: v if isinstance(v, str) else json_text(v) for k, v in arguments.items()}
            request = self.session.get(url, params=params, timeout=timeout, allow_redirects=False)
        else:
            request = self.session.request(
                http.method.value, url, json=arguments, timeout=timeout, allow_redirects=False
            )
        try:
            async with request as response:
                response.raise_for_status()
                if response.status >= 300:
                    raise aiohttp.ClientError(f"HTTP {response.status}: redirects are not followed")
                body = await response.content.read(MAX_RESPONSE_BYTES + 1)
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, TargetRefusedError):
                raise exc.os_error from None
            raise
        if len(body) > MAX_RESPONSE_BYTES:
            raise ValueError(f"tool {tool.id} answered more than {MAX_RESPONSE_BYTES} bytes")
        result = json.loads(body)
        if not isinstance(result, dict):
            raise TypeError(f"tool {tool.id} answered {type(result).__name__}, not an object")
        return result


def pack_tool_executor(
    folder: Path, policy: ToolPolicy, session: aiohttp.ClientSession
) -> PackToolExecutor:
    """A pack's tool executor: its Python tools from ``folder`` under the operator's policy,
    its HTTP tools through the guarded ``session``. The worker, ``pack test`` and ``replay``
    all build theirs here."""
    http = HttpToolExecutor(session, allow_private=policy.allow_private_http)
    return PackToolExecutor(PythonToolExecutor(folder, policy), http)
