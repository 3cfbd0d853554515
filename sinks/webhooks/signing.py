"""Webhook signatures: HMAC-SHA256 over ``<timestamp>.<body>``, and stable delivery ids.

Every request carries::

    Turnstream-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, f"{t}.".encode() + body)>
    Turnstream-Delivery: <delivery id>     (the same on every attempt: deduplicate on it)
    Turnstream-Event: <event type>
    Turnstream-Attempt: <n>

A receiver recomputes the HMAC over the raw body with the shared secret, compares it in
constant time and refuses a timestamp older than a few minutes (replays). :func:`verify`
does exactly that and is what the README's recipe shows.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "Turnstream-Signature"
DELIVERY_HEADER = "Turnstream-Delivery"
EVENT_HEADER = "Turnstream-Event"
ATTEMPT_HEADER = "Turnstream-Attempt"
SCHEME = "v1"
DEFAULT_TOLERANCE_S = 300


class SignatureError(ValueError):
    """A signature header that is missing, malformed, stale or wrong."""


def signature(secret: bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(secret: bytes, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},{SCHEME}={signature(secret, timestamp, body)}"


def verify(
    secret: bytes,
    header: str | None,
    body: bytes,
    *,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> int:
    """Check a ``Turnstream-Signature`` header; the signed timestamp, or SignatureError."""
    if not header:
        raise SignatureError("no signature header")
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise SignatureError("malformed signature header")
        fields.setdefault(key, []).append(value)
    try:
        timestamp = int(fields["t"][0])
    except (KeyError, ValueError):
        raise SignatureError("no timestamp in the signature header") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        raise SignatureError("timestamp outside the tolerance")
    expected = signature(secret, timestamp, body)
    if not any(hmac.compare_digest(expected, given) for given in fields.get(SCHEME, [])):
        raise SignatureError("signature does not match")
    return timestamp


def delivery_id(tenant_id: str, agent_id: str, subscription_id: str, event_id: str) -> str:
    """Stable across retries, replays and restarts: derived from the event and the
    subscription only."""
    digest = hashlib.sha256(
        "\x1f".join((tenant_id, agent_id, subscription_id, event_id)).encode()
    ).hexdigest()
    return f"dlv_{digest[:32]}"
