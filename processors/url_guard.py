"""Which addresses a pack's outbound HTTP may reach: the public internet only.

The one address policy for every outbound call a pack can cause (webhooks and HTTP tools):
``http`` or ``https`` with a host, and addresses, literal or resolved, that are global
unicast. Loopback, private (RFC 1918, unique local), link-local (cloud metadata at
169.254.169.254), shared, reserved, documentation, multicast and unspecified addresses are
refused, IPv4-mapped IPv6 included. ``allow_private`` (an operator's opt-in, for tests and
on-premises services) allows all but multicast and unspecified.

Plain Python: no resolution here. :mod:`sinks.webhooks.ssrf` applies this policy to resolved
addresses, before each call and again inside the HTTP client; :func:`refused_before_resolving`
is what can be judged from the URL alone (the pack validator uses it).
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
ALLOWED_SCHEMES = frozenset({"http", "https"})
LOOPBACK_NAMES = ("localhost", "localhost.localdomain")


class TargetRefusedError(OSError):
    """A target the guard refuses; an ``OSError`` so that an HTTP client reports it as a
    connection failure."""


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def check_address(address: IPAddress | str, *, allow_private: bool) -> None:
    """Refuse (``TargetRefusedError``) an address outside the policy."""
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
    """Host and port of a URL with an allowed scheme, or :class:`TargetRefusedError`."""
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


def literal_address(host: str) -> IPAddress | None:
    """The address a host names literally (``127.0.0.1``, ``[::1]``), else None."""
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None


def _loopback_name(host: str) -> bool:
    name = host.lower().rstrip(".")
    return any(name == known or name.endswith("." + known) for known in LOOPBACK_NAMES)


def refused_before_resolving(url: str, *, allow_private: bool) -> str | None:
    """Why the URL is refused without resolving it (scheme, literal address, a loopback
    name), or None: a host name may still be refused at call time by what it resolves to."""
    try:
        host, _ = split_target(url)
        address = literal_address(host)
        if address is not None:
            check_address(address, allow_private=allow_private)
        elif not allow_private and _loopback_name(host):
            raise TargetRefusedError(f"{host} names the loopback interface")
    except TargetRefusedError as exc:
        return str(exc)
    return None
