"""Attach the agents and the join's deadline timer to the Faust app."""

from __future__ import annotations

from faust.types import TopicT

from schemas.domain.phase import Phase
from schemas.domain.retrieval import RetrievalType
from streams.pipeline.base import Pipeline
from streams.pipeline.session_agent import SessionAgent
from streams.pipeline.stage_agents import (
    DEADLINE_TICK_S,
    DecideAgent,
    EnforceAgent,
    GenerateAgent,
    JoinAgent,
    RetrievalAgent,
)
from streams.pipeline.topology import RAW
from streams.topics import (
    RETRIEVAL_RESULTS,
    TURN_COMPLETED,
    TURN_CONTEXT,
    TURN_REQUESTED,
    TopicSpec,
)


def register(pipeline: Pipeline, concurrency: int) -> None:
    """Every agent reads its topics with ``concurrency`` actors (the join with one: it is
    quick and keeps the table simple). Per-session order holds at any concurrency because
    the session agent decides a request's fate before its first await, and at most one turn
    per session is past it."""
    t = pipeline.topology
    app = t.app

    def channel(*specs: TopicSpec) -> TopicT:
        return app.topic(*(t.name(s) for s in specs), **RAW)

    session = SessionAgent(pipeline)
    app.agent(
        channel(TURN_REQUESTED, TURN_COMPLETED),
        name="session",
        concurrency=concurrency,
    )(pipeline.guard("session", Phase.IDENTIFICATION, session.handle))
    for rtype in RetrievalType:
        retrieval = RetrievalAgent(pipeline, rtype)
        app.agent(
            t.retrieval_requested[rtype], name=f"retrieval-{rtype.value}", concurrency=concurrency
        )(pipeline.guard(f"retrieval-{rtype.value}", Phase.RETRIEVAL, retrieval.handle))
    joiner = JoinAgent(pipeline)
    app.agent(channel(TURN_CONTEXT, RETRIEVAL_RESULTS), name="join")(
        pipeline.guard("join", Phase.RETRIEVAL, joiner.handle)
    )
    app.timer(DEADLINE_TICK_S, name="join-deadlines")(joiner.tick)
    for name, phase, topic, handler in (
        ("decide", Phase.RULE_SELECTION, t.retrieved, DecideAgent(pipeline).handle),
        ("generate", Phase.GENERATION, t.planned, GenerateAgent(pipeline).handle),
        ("enforce", Phase.ENFORCEMENT, t.generated, EnforceAgent(pipeline).handle),
    ):
        app.agent(topic, name=name, concurrency=concurrency)(pipeline.guard(name, phase, handler))
