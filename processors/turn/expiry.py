"""Which idle state the sweeper deletes: plain functions of the stored values and the clock
(the sweeper in ``streams.pipeline.sweeper`` only reads the tables and deletes what these
say).

A **session** here is one channel identity's gate (``tenant:channel:channel_id``) with what
hangs off it: the session state of each agent it opened, its last response and its
retrieval join. It expires when no turn is in flight or waiting and its last activity (its
last response, or the last update of one of its session states) is older than the idle TTL;
a gate with no trace of activity and no turn in flight has nothing worth keeping. Answered
turn ids (the seen-turns table) are not per session: they are kept for the request topic's
retention whatever the session does, so a resent request is still dropped after its session
expired.

**Customer data** is per customer, not per session, and has its own TTL (its
``updated_at``); a customer with a turn in flight on this worker is never expired.

A TTL of ``None`` never expires anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from schemas.events.pipeline_state import RetrievalJoin, SessionGate


def ttl_of(seconds: float) -> timedelta | None:
    """A TTL setting in seconds, where 0 means never."""
    return timedelta(seconds=seconds) if seconds > 0 else None


def last_activity(times: Iterable[datetime | None]) -> datetime | None:
    """The latest of the known activity times of a session."""
    known = [t for t in times if t is not None]
    return max(known) if known else None


def turn_pending(gate: SessionGate | None) -> bool:
    """Whether the gate has a turn in flight or requests waiting for one."""
    return gate is not None and (gate.in_flight is not None or bool(gate.waiting))


def idle_longer(at: datetime | None, now: datetime, ttl: timedelta | None) -> bool:
    """Whether something last active ``at`` (``None``: no trace) is past ``ttl``."""
    return ttl is not None and (at is None or now - at > ttl)


def session_expired(
    gate: SessionGate | None, active_at: datetime | None, now: datetime, ttl: timedelta | None
) -> bool:
    """Whether the session of ``gate`` (last active ``active_at``) is deleted now."""
    return not turn_pending(gate) and idle_longer(active_at, now, ttl)


def join_expired(join: RetrievalJoin, now: datetime, ttl: timedelta | None) -> bool:
    """A finished join whose deadline is older than the TTL (an unfinished one is ended by
    the join's own deadline timer first)."""
    return join.done and idle_longer(join.deadline, now, ttl)
