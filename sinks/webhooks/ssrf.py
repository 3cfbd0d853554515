"""The SSRF guard: webhooks reach the public internet only.

A subscription's URL must be ``http`` or ``https`` with a host. Its addresses, literal or
resolved, must be global unicast: loopback, private (RFC 1918, unique local), link-local
(cloud metadata at 169.254.169.254), shared, reserved, documentation, multicast and
unspecified addresses are refused, IPv4-mapped IPv6 included.
``TURNSTREAM_WEBHOOKS__ALLOW_PRIVATE_TARGETS=true`` allows all but multicast and unspecified
(tests and on-premises receivers).

The check runs before every attempt, and :class:`GuardedResolver` applies it again inside the
HTTP client to the very addresses it connects to, so a name that resolves to a public
address at check time and to a private one at connect time (DNS rebinding) is refused too.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
ALLOWED_SCHEMES = frozenset({"http", "https"})


class TargetRefusedError(OSError):
    """A webhook target the guard refuses; an ``OSError`` so that the HTTP client reports it
    as a connection failure."""


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def check_address(address: IPAddress | str, *, allow_private: bool) -> None:
    ip = _unmapped(ipaddress.ip_address(address) if isinstance(address, str) else address)
    if ip.is_multicast or ip.is_unspecified:
        raise TargetRefusedError(f"{ip} is a multicast or unspecified address")
    if allow_private:
        return
    if not ip.is_global or ip.is_loopback or ip.is_link_local or ip.is_private:
        raise TargetRefusedError(
            f"{ip} is not a public address (loopback, private, link-local or reserved)"
        )


def split_target(url: str) -> tuple[str, int]:
    """Host and port of an allowed URL, or :class:`TargetRefusedError`."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise TargetRefusedError(f"scheme {parts.scheme!r} refused: http or https only")
    host = parts.hostname
    if not host:
        raise TargetRefusedError("no host in the URL")
    try:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError:
        raise TargetRefusedError("invalid port") from None
    return host, port


async def check_url(url: str, *, allow_private: bool) -> list[str]:
    """Refuse a URL whose scheme or any of whose addresses is not allowed; its addresses."""
    host, port = split_target(url)
    try:
        return [str(_checked(ipaddress.ip_address(host), allow_private))]
    except ValueError:
        pass
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
