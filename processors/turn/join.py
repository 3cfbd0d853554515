"""The P4 join as plain functions: a turn's context and its four retrieval results meet,
in any order, and the turn goes on exactly once: when every type answered, or when the
deadline ticks turned the missing types into timeout results.

:func:`step` takes the stored join and one arrival and returns what to write and whether
the turn is ready; :func:`given_up` says which missing types a deadline tick gives up. The
join agent only reads and writes its table and sends what these say, so the "one outcome"
promise is checked here without Kafka (``tests/test_join_properties.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from schemas.domain.retrieval import RetrievalType
from schemas.events.pipeline_state import RetrievalJoin
from schemas.events.retrieval import RetrievalResult
from schemas.events.turn_envelope import TurnEnvelope


@dataclass(frozen=True)
class JoinStep:
    """``state``: the join to write (None: the arrival changes nothing). ``ready``: the
    context and the first result of each type, when this arrival completed the join."""

    state: RetrievalJoin | None
    ready: tuple[TurnEnvelope, list[RetrievalResult]] | None = None


def step(
    stored: RetrievalJoin | None,
    turn_id: str,
    envelope: TurnEnvelope | None,
    result: RetrievalResult | None,
    timeout_s: float,
) -> JoinStep:
    """One arrival (the context ``envelope`` or one ``result``) of the turn ``turn_id``,
    which the caller checked is its session's turn in flight.

    A join of another turn is replaced. A finished join ignores late and duplicate results;
    a context arriving after it finished is the turn driven again, and starts a new join.
    The first result of each type counts: a timeout result is only sent for a type given up,
    so a real one before it is already in."""
    state = stored
    if state is None or state.turn_id != turn_id or (state.done and envelope is not None):
        state = RetrievalJoin(turn_id=turn_id)
    if state.done:
        return JoinStep(None)
    if envelope is not None and state.envelope is None:
        deadline = envelope.emitted_at + timedelta(seconds=timeout_s)
        state = state.model_copy(update={"envelope": envelope, "deadline": deadline})
    if result is not None and result.selection.retrieval_type not in _types(state):
        state = state.model_copy(update={"results": [*state.results, result]})
    if state.envelope is None or _types(state) != set(RetrievalType):
        return JoinStep(state)
    finished = RetrievalJoin(turn_id=turn_id, done=True, deadline=state.deadline)  # its age
    return JoinStep(finished, (state.envelope, state.results))


def missing(state: RetrievalJoin) -> list[RetrievalType]:
    """The types the join still waits for, in catalog order."""
    have = _types(state)
    return [rtype for rtype in RetrievalType if rtype not in have]


def given_up(
    state: RetrievalJoin,
    now: datetime,
    taken_up: Mapping[RetrievalType, datetime],
    timeout: timedelta,
    queue_wait: timedelta,
) -> list[RetrievalType]:
    """The missing types a deadline tick at ``now`` gives up (each then gets a timeout
    result): ``timeout`` after its consumer took it up (``taken_up``), or, never taken up,
    ``queue_wait`` past the join's deadline. None before the deadline, or when done."""
    if state.done or state.deadline is None or state.deadline > now:
        return []
    late = []
    for rtype in missing(state):
        taken = taken_up.get(rtype)
        if taken is not None:
            if now - taken > timeout:
                late.append(rtype)
        elif now - state.deadline > queue_wait:
            late.append(rtype)
    return late


def _types(state: RetrievalJoin) -> set[RetrievalType]:
    return {r.selection.retrieval_type for r in state.results}
