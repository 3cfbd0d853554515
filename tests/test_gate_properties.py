"""The session gate's promises, checked on the plain functions of ``processors.turn.gate``
with no broker: whatever the interleaving of requests, replays of requests, completions
(on time, replayed, stale), restarts and crashes that lose the release, a session has one
turn in flight, admits its requests in the order they were sent, coalesces what waited,
and answers every request exactly once."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.turn.gate import (
    BACKLOG_FULL,
    Admitted,
    Queued,
    Refused,
    Seen,
    admit,
    in_gate,
    is_in_flight,
    may_answer,
    on_request,
    release,
)
from schemas.codec import encode
from schemas.events.pipeline_state import MAX_WAITING, SessionGate
from schemas.events.turn_requested import TurnRequested
from schemas.fields import MAX_MESSAGE_CHARS
from schemas.samples import turn_input

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def request(turn_id: str, chars: int = 5) -> TurnRequested:
    return TurnRequested(
        turn_id=turn_id, input=turn_input().model_copy(update={"message": "m" * chars}), sent_at=NOW
    )


@dataclass
class Session:
    """What the session agent does with the gate's decisions, over plain dicts: the gate
    table, the seen-turns table and the responses (the last one, and a count per turn id,
    a coalesced id counting as answered by its turn's response)."""

    gate: SessionGate = field(default_factory=SessionGate)
    seen: set[str] = field(default_factory=set)
    last_response: str | None = None
    answered: Counter[str] = field(default_factory=Counter)
    started: list[tuple[str, ...]] = field(default_factory=list)
    left_waiting: list[tuple[str, ...]] = field(default_factory=list)
    """Per started turn: the requests still waiting right after its admission."""
    refused: set[str] = field(default_factory=set)

    def on_request(self, r: TurnRequested) -> None:
        decision = on_request(self.gate, r, r.turn_id in self.seen, NOW)
        if isinstance(decision, Admitted):
            ids = tuple(x.turn_id for x in decision.batch)
            if decision.again:
                assert self.gate.in_flight is not None and ids[0] == self.gate.in_flight.turn_id
            else:
                assert self.gate.in_flight is None, (
                    "a second turn was admitted while one is in flight"
                )
                self.started.append(ids)
                self.left_waiting.append(tuple(w.turn_id for w in decision.gate.waiting))
            self.gate = decision.gate
        elif isinstance(decision, Queued):
            assert self.gate.in_flight is not None
            self.gate = decision.gate
        elif isinstance(decision, Refused):
            assert decision.reason == BACKLOG_FULL and len(self.gate.waiting) == MAX_WAITING
            self.refused.add(r.turn_id)
        else:
            assert isinstance(decision, Seen)

    def on_completed(self, turn_id: str, lose_release: bool = False) -> None:
        if not is_in_flight(self.gate, turn_id):
            return  # a stale or replayed completion
        if not (self.last_response == turn_id or turn_id in self.seen):
            self.last_response = turn_id
            self.answered.update([turn_id, *self.gate.in_flight_coalesced])
        waiting = [w.turn_id for w in self.gate.waiting]
        released = release(self.gate, NOW)
        self.seen.update(released.finished)
        if lose_release:
            return  # crashed after the seen ids, before the gate write: the completion replays
        self.gate = released.gate
        if released.next is not None:
            batch = tuple(r.turn_id for r in released.next.batch)
            assert batch == tuple(waiting[: len(batch)]), "the next turn is the waiting prefix"
            self.started.append(batch)
            self.left_waiting.append(tuple(w.turn_id for w in released.next.gate.waiting))

    def drain(self) -> None:
        while self.gate.in_flight is not None:
            self.on_completed(self.gate.in_flight.turn_id)


@st.composite
def histories(draw: st.DrawFn) -> list[tuple[str, int, int]]:
    """(move, n, chars) moves: send a new request of ``chars`` characters, replay the n-th
    request, complete the turn in flight (or lose its release), a stale completion of the
    n-th request, or a restart (the watchdog drives the turn in flight again)."""
    moves = st.sampled_from(
        ["send", "send", "send", "replay", "complete", "lose", "stale", "restart"]
    )
    chars = st.one_of(st.integers(1, 40), st.integers(4_000, 9_000))
    return draw(st.lists(st.tuples(moves, st.integers(0, 10_000), chars), max_size=120))


def run(history: list[tuple[str, int, int]]) -> tuple[Session, list[TurnRequested]]:
    session = Session()
    sent: list[TurnRequested] = []
    for move, n, chars in history:
        if move == "send":
            sent.append(request(f"t-{len(sent)}", chars))
            session.on_request(sent[-1])
        elif move == "replay" and sent:
            session.on_request(sent[n % len(sent)])
        elif move in ("complete", "lose") and session.gate.in_flight is not None:
            session.on_completed(session.gate.in_flight.turn_id, lose_release=move == "lose")
        elif move == "stale" and sent:
            session.on_completed(sent[n % len(sent)].turn_id)
        elif move == "restart" and session.gate.in_flight is not None:
            session.on_request(session.gate.in_flight)
        check_gate(session)
    return session, sent


def check_gate(session: Session) -> None:
    gate = session.gate
    held = [r.turn_id for r in gate.waiting]
    if gate.in_flight is not None:
        held += [gate.in_flight.turn_id, *gate.in_flight_coalesced]
        assert [r.turn_id for r in gate.in_flight_later] == gate.in_flight_coalesced
    else:
        assert not gate.waiting and not gate.in_flight_coalesced, "requests wait only behind a turn"
    assert len(held) == len(set(held)), "a request is held twice"
    started = [turn_id for batch in session.started for turn_id in batch]
    assert len(started) == len(set(started)), "a request was started in two turns"


@settings(max_examples=300, deadline=None)
@given(histories())
def test_any_interleaving_keeps_one_turn_in_flight_in_order_and_answers_each_request_once(
    history: list[tuple[str, int, int]],
) -> None:
    session, sent = run(history)
    session.drain()
    accepted = [r.turn_id for r in sent if r.turn_id not in session.refused]
    started = [turn_id for batch in session.started for turn_id in batch]
    assert started == accepted, "admitted in the order sent, each once"
    assert session.answered == Counter(accepted), "every request answered exactly once"


@settings(max_examples=200, deadline=None)
@given(histories())
def test_what_waited_is_coalesced_into_the_next_turn_as_far_as_it_fits(
    history: list[tuple[str, int, int]],
) -> None:
    session, sent = run(history)
    session.drain()
    chars = {r.turn_id: len(r.input.message) for r in sent}
    for batch, left in zip(session.started, session.left_waiting, strict=True):
        joined = sum(chars[t] for t in batch) + len(batch) - 1
        assert len(batch) == 1 or joined <= MAX_MESSAGE_CHARS, "a coalesced turn fits"
        if left:  # it stopped short of a waiting request only because that one did not fit
            assert joined + 1 + chars[left[0]] > MAX_MESSAGE_CHARS


def test_requests_that_waited_behind_a_turn_become_one_turn() -> None:
    session = Session()
    for n in range(4):
        session.on_request(request(f"t-{n}"))
    session.on_completed("t-0")
    assert session.started == [("t-0",), ("t-1", "t-2", "t-3")]
    assert session.gate.in_flight_coalesced == ["t-2", "t-3"]


def test_a_full_backlog_refuses_the_request_and_keeps_the_rest() -> None:
    session = Session()
    for n in range(MAX_WAITING + 2):
        session.on_request(request(f"t-{n}"))
    assert session.refused == {f"t-{MAX_WAITING + 1}"}
    assert len(session.gate.waiting) == MAX_WAITING


def test_a_request_answered_long_ago_is_dropped_by_the_seen_table_not_the_gate() -> None:
    session = Session()
    for n in range(200):
        session.on_request(request(f"t-{n}"))
        session.on_completed(f"t-{n}")
    session.on_request(request("t-3"))
    assert session.gate.in_flight is None and session.answered["t-3"] == 1
    after_one = Session()
    after_one.on_request(request("t-0"))
    after_one.on_completed("t-0")
    assert len(encode(session.gate)) == len(encode(after_one.gate)), "the gate does not grow"


def test_a_rejection_is_never_answered_under_an_admitted_or_answered_turn_id() -> None:
    gate = admit(SessionGate(), [request("t-1"), request("t-2")], [request("t-3")], NOW)
    for turn_id in ("t-1", "t-2", "t-3"):
        assert in_gate(gate, turn_id) and not may_answer(gate, turn_id, seen=False)
    assert not may_answer(SessionGate(), "t-0", seen=True)
    assert may_answer(gate, "t-4", seen=False)
