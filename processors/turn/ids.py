"""Deterministic ids for new customers and sessions.

A replayed request must resolve to the same customer and session as the first time, so new
ids are derived from what identifies them rather than drawn at random.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:24]


@dataclass(frozen=True)
class TurnIds:
    """The ``IdSource`` of P1 for one turn."""

    turn_id: str
    tenant_id: str
    channel: str
    channel_id: str

    def new_customer_id(self) -> str:
        return f"cus-{_digest(self.tenant_id, self.channel, self.channel_id)}"

    def new_session_id(self) -> str:
        return f"ses-{_digest(self.tenant_id, self.channel, self.channel_id, self.turn_id)}"
