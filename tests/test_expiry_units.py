"""What the idle-state sweeper deletes (``processors.turn.expiry``): plain functions of
the stored values and the clock, no broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from processors.turn.expiry import (
    idle_longer,
    join_expired,
    last_activity,
    session_expired,
    ttl_of,
    turn_pending,
)
from processors.turn.gate import admit, release
from processors.turn.join import step
from schemas.domain.phase import Phase
from schemas.domain.retrieval import RetrievalSelection, RetrievalType, SelectionStrategy
from schemas.domain.turn_context import TurnContext
from schemas.events.pipeline_state import RetrievalJoin, SessionGate
from schemas.events.retrieval import RetrievalResult
from schemas.events.turn_envelope import TurnEnvelope
from schemas.events.turn_requested import TurnRequested
from schemas.samples import turn_input

NOW = datetime(2026, 6, 1, tzinfo=UTC)
TTL = timedelta(days=7)


def request(turn_id: str) -> TurnRequested:
    return TurnRequested(turn_id=turn_id, input=turn_input(), sent_at=NOW)


def test_an_idle_session_past_its_ttl_expires_and_a_recent_one_does_not() -> None:
    gate = SessionGate(customer_id="c1", sessions={"support": "s1"})
    assert session_expired(gate, NOW - TTL - timedelta(seconds=1), NOW, TTL)
    assert not session_expired(gate, NOW - TTL + timedelta(seconds=1), NOW, TTL)


def test_a_session_with_a_turn_in_flight_or_waiting_never_expires() -> None:
    in_flight = admit(SessionGate(), [request("t1")], [], NOW - 30 * TTL)
    waiting = in_flight.model_copy(update={"waiting": [request("t2")]})
    long_ago = NOW - 100 * TTL
    for gate in (in_flight, waiting):
        assert turn_pending(gate)
        assert not session_expired(gate, long_ago, NOW, TTL)
        assert not session_expired(gate, None, NOW, TTL)
    released = release(in_flight, NOW).gate  # answered and opened: it may expire again
    assert not turn_pending(released)
    assert session_expired(released, long_ago, NOW, TTL)


def test_a_gate_with_no_trace_of_activity_and_nothing_pending_expires() -> None:
    assert session_expired(SessionGate(), None, NOW, TTL)
    assert session_expired(None, None, NOW, TTL)


def test_a_ttl_of_zero_never_expires_anything() -> None:
    never = ttl_of(0)
    assert never is None
    assert not session_expired(SessionGate(), None, NOW, never)
    assert not idle_longer(NOW - 1000 * TTL, NOW, never)
    assert ttl_of(60) == timedelta(seconds=60)


def test_the_last_activity_is_the_latest_known_time() -> None:
    assert last_activity([None, NOW - TTL, NOW - 2 * TTL, None]) == NOW - TTL
    assert last_activity([None]) is None


def test_a_finished_join_keeps_its_deadline_and_expires_after_the_ttl() -> None:
    given = turn_input()
    envelope = TurnEnvelope(
        turn_id="t1",
        session_key=given.session_key,
        phase=Phase.CUSTOMER_DATA,
        context=TurnContext(input=given, received_at=NOW),
        emitted_at=NOW,
    )
    outcome = step(None, "t1", envelope, None, 5.0)
    for rtype in RetrievalType:
        selection = RetrievalSelection(
            retrieval_type=rtype, strategy=SelectionStrategy.FIXED_K, latency_ms=1.0
        )
        result = RetrievalResult(
            turn_id="t1", session_key=given.session_key, selection=selection, completed_at=NOW
        )
        outcome = step(outcome.state, "t1", None, result, 5.0)
    finished = outcome.state
    assert outcome.ready is not None and finished is not None and finished.done
    assert finished.deadline == NOW + timedelta(seconds=5)
    assert not join_expired(finished, NOW + timedelta(days=1), TTL)
    assert join_expired(finished, NOW + TTL + timedelta(days=1), TTL)
    unfinished = RetrievalJoin(turn_id="t", deadline=NOW)
    assert not join_expired(unfinished, NOW + 100 * TTL, TTL)  # its deadline timer ends it
