"""The SSRF guard: webhooks and HTTP tools reach the public internet only.

The policy (which schemes and addresses) is :mod:`processors.url_guard`; this module applies
it to the addresses a URL resolves to. ``TURNSTREAM_WEBHOOKS__ALLOW_PRIVATE_TARGETS=true`` and
``TURNSTREAM_TOOLS__ALLOW_PRIVATE_TARGETS=true`` allow all but multicast and unspecified
(tests and on-premises receivers). :mod:`sinks.outbound_http` builds the one HTTP client
session both go through.

The check runs before every attempt, and :class:`GuardedResolver` applies it again inside the
HTTP client to the very addresses it connects to, so a name that resolves to a public
address at check time and to a private one at connect time (DNS rebinding) is refused too.
"""

from __future__ import annotations

import asyncio
import socket

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

from processors.url_guard import (
    IPAddress,
    TargetRefusedError,
    check_address,
    literal_address,
    split_target,
)

__all__ = ["GuardedResolver", "TargetRefusedError", "check_address", "check_url", "split_target"]


async def check_url(url: str, *, allow_private: bool) -> list[str]:
    """Refuse a URL whose scheme or any of whose addresses is not allowed; its addresses."""
    host, port = split_target(url)
    literal = literal_address(host)
    if literal is not None:
        return [str(_checked(literal, allow_private))]
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise OSError(f"cannot resolve {host}: {exc}") from None
    addresses = sorted({str(info[4][0]) for info in infos})
    for address in addresses:
        check_address(address.split("%", 1)[0], allow_private=allow_private)
    return addresses


def _checked(ip: IPAddress, allow_private: bool) -> IPAddress:
    check_address(ip, allow_private=allow_private)
    return ip


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver with the guard applied to every address it returns."""

    def __init__(self, *, allow_private: bool) -> None:
        self._allow_private = allow_private
        self._inner = ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for result in results:
            check_address(result["host"].split("%", 1)[0], allow_private=self._allow_private)
        return results

    async def close(self) -> None:
        await self._inner.close()
