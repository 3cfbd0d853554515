"""The one client path for outbound HTTP a pack can cause: webhook deliveries and HTTP tools.

Both open their session with :func:`guarded_session` and call :func:`sinks.webhooks.ssrf.check_url`
before every request, so the same SSRF policy (:mod:`processors.url_guard`) holds for both:
the URL's addresses are checked before the request, and :class:`GuardedResolver` checks them
again inside the client, at connect time (DNS rebinding). The session ignores proxy variables
(``trust_env=False``: a proxy would connect on our behalf, past the resolver), and callers do
not follow redirects (a redirect could lead past the check).
"""

from __future__ import annotations

import aiohttp

from sinks.webhooks.ssrf import GuardedResolver


def guarded_session(*, allow_private: bool, limit: int = 100) -> aiohttp.ClientSession:
    """An aiohttp session whose every connection goes through the SSRF guard; ``limit`` is
    the connector's connection cap (0: none)."""
    connector = aiohttp.TCPConnector(
        resolver=GuardedResolver(allow_private=allow_private),
        limit=limit,
        limit_per_host=0,
    )
    return aiohttp.ClientSession(connector=connector, trust_env=False)
