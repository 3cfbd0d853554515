"""The P4 join's promise, checked on the plain functions of ``processors.turn.join`` with
no broker: whatever the order of the context and the four results, duplicates among them,
and deadline ticks (whose timeout results arrive later, interleaved with the rest), the
turn goes on exactly once, with one result per type, a real result counting over a
timeout that came after it."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from processors.turn.join import given_up, missing, step
from processors.turn.retrieval_stage import timeout_result
from schemas.domain.phase import Phase
from schemas.domain.retrieval import RetrievalType
from schemas.events.pipeline_state import RetrievalJoin
from schemas.events.retrieval import RetrievalResult
from schemas.events.turn_envelope import TurnEnvelope
from schemas.samples import SESSION_KEY, turn_context

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TURN = "turn-1"
TIMEOUT_S = 2.0
QUEUE_WAIT = timedelta(seconds=1)
TYPES = list(RetrievalType)


def context(emitted_at: datetime = T0) -> TurnEnvelope:
    return TurnEnvelope(
        turn_id=TURN,
        session_key=SESSION_KEY,
        phase=Phase.CUSTOMER_DATA,
        context=turn_context(),
        emitted_at=emitted_at,
    )


def real(rtype: RetrievalType, turn_id: str = TURN) -> RetrievalResult:
    """A retrieval that answered (an empty selection, no error)."""
    return timeout_result(turn_id, SESSION_KEY, rtype, T0).model_copy(update={"error": None})


class Join:
    """What the join agent does with the join's decisions, over one stored value."""

    def __init__(self) -> None:
        self.stored: RetrievalJoin | None = None
        self.outcomes: list[list[RetrievalResult]] = []
        self.first: dict[RetrievalType, RetrievalResult] = {}
        """The first result of each type to arrive (after the context)."""

    def arrive(self, envelope: TurnEnvelope | None, result: RetrievalResult | None) -> None:
        turn_id = envelope.turn_id if envelope is not None else TURN
        if result is not None:
            turn_id = result.turn_id
            self.first.setdefault(result.selection.retrieval_type, result)
        outcome = step(self.stored, turn_id, envelope, result, TIMEOUT_S)
        if outcome.state is not None:
            self.stored = outcome.state
        if outcome.ready is not None:
            self.outcomes.append(outcome.ready[1])

    def tick(self, now: datetime) -> list[RetrievalResult]:
        if self.stored is None:
            return []
        late = given_up(self.stored, now, {}, timedelta(seconds=TIMEOUT_S), QUEUE_WAIT)
        return [timeout_result(TURN, SESSION_KEY, rtype, now) for rtype in late]


Arrival = tuple[str, int]


@st.composite
def arrivals(draw: st.DrawFn) -> list[Arrival]:
    """The context once, some of the four results (each possibly duplicated), and ticks
    of the deadline clock (``("tick", seconds since the context)``), in any order."""
    present = draw(st.lists(st.sampled_from(range(len(TYPES))), unique=True))
    copies = [("result", i) for i in present for _ in range(draw(st.integers(1, 3)))]
    ticks = [("tick", s) for s in draw(st.lists(st.integers(0, 8), max_size=6))]
    order = draw(st.permutations([("context", 0), *copies, *ticks]))
    return [*order, ("tick", 100), ("flush", 0)]


@settings(max_examples=400, deadline=None)
@given(arrivals(), st.randoms(use_true_random=False))
def test_any_order_of_results_duplicates_and_ticks_goes_on_exactly_once(
    order: list[Arrival], rnd: random.Random
) -> None:
    join = Join()
    sent_timeouts: list[RetrievalResult] = []  # in flight on the results topic
    for kind, n in order:
        if kind == "context":
            join.arrive(context(), None)
        elif kind == "result":
            join.arrive(None, real(TYPES[n]))
        elif kind == "tick":
            sent_timeouts += join.tick(T0 + timedelta(seconds=n))
        if sent_timeouts and (kind == "flush" or rnd.random() < 0.5):
            for late in sent_timeouts:
                join.arrive(None, late)
            sent_timeouts = []
    assert len(join.outcomes) == 1, "the turn goes on exactly once"
    (results,) = join.outcomes
    assert sorted(r.selection.retrieval_type for r in results) == sorted(TYPES)
    first = [join.first[r.selection.retrieval_type] for r in results]
    assert results == first, "the first result of each type counts"
    assert all(r.error is None for r in results if r.selection.retrieval_type in real_types(order))


def real_types(order: list[Arrival]) -> set[RetrievalType]:
    """Types whose real result came before any tick could give them up."""
    first_tick = next((i for i, (kind, _) in enumerate(order) if kind == "tick"), len(order))
    return {TYPES[n] for kind, n in order[:first_tick] if kind == "result"}


def test_a_tick_before_the_deadline_gives_nothing_up() -> None:
    join = Join()
    join.arrive(context(), None)
    assert join.tick(T0 + timedelta(seconds=TIMEOUT_S - 0.1)) == []
    assert len(join.tick(T0 + timedelta(seconds=TIMEOUT_S) + QUEUE_WAIT * 2)) == len(TYPES)


def test_a_type_taken_up_is_waited_for_its_own_timeout_from_the_take_up() -> None:
    state = step(None, TURN, context(), None, TIMEOUT_S).state
    assert state is not None
    taken = {RetrievalType.RULES: T0 + timedelta(seconds=5)}
    late = given_up(
        state, T0 + timedelta(seconds=6), taken, timedelta(seconds=TIMEOUT_S), QUEUE_WAIT
    )
    assert RetrievalType.RULES not in late and set(late) == set(TYPES) - {RetrievalType.RULES}


def test_results_of_another_turn_replace_a_stale_join() -> None:
    join = Join()
    join.arrive(None, real(TYPES[0], turn_id="turn-0"))
    join.arrive(context(), None)
    assert join.stored is not None and join.stored.turn_id == TURN
    assert missing(join.stored) == TYPES


def test_a_context_after_the_join_finished_is_the_turn_driven_again() -> None:
    join = Join()
    join.arrive(context(), None)
    for rtype in TYPES:
        join.arrive(None, real(rtype))
    join.arrive(None, real(TYPES[0]))  # a late duplicate: nothing
    assert len(join.outcomes) == 1
    join.arrive(context(), None)  # the watchdog drove the turn again: a new join
    for rtype in TYPES:
        join.arrive(None, real(rtype))
    assert len(join.outcomes) == 2
