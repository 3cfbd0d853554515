"""Attach the agents and the join's deadline timer to the Faust app."""

from __future__ import annotations

from faust.types import TopicT

from processors.turn.answer import generate_answer
from processors.turn.decide import decide
from schemas.domain.phase import Phase
from schemas.domain.retrieval import RetrievalType
from streams.pipeline.base import Handler, Pipeline
from streams.pipeline.session_agent import WATCHDOG_TICK_S, SessionAgent
from streams.pipeline.stage_agents import (
    DEADLINE_TICK_S,
    EnforceAgent,
    JoinAgent,
    RetrievalAgent,
    StageAgent,
)
from streams.pipeline.topology import RAW
from streams.roles import Role, runs
from streams.topics import (
    RETRIEVAL_RESULTS,
    TURN_COMPLETED,
    TURN_CONTEXT,
    TURN_REQUESTED,
    TopicSpec,
)


def register(pipeline: Pipeline, concurrency: int, role: Role = Role.ALL) -> None:
    """The role's agents, each reading its topics with ``concurrency`` actors (the join with
    one: it is quick and keeps its table simple). Per-session order holds at any
    concurrency because the session agent decides a request's fate before its first await,
    and at most one turn per session is past it."""
    t = pipeline.topology
    app = t.app

    def channel(*specs: TopicSpec) -> TopicT:
        return app.topic(*(t.name(s) for s in specs), **RAW)

    if runs(role, Role.CONTEXT):
        session = SessionAgent(pipeline)
        app.agent(channel(TURN_REQUESTED, TURN_COMPLETED), name="session", concurrency=concurrency)(
            pipeline.guard("session", Phase.IDENTIFICATION, session.handle)
        )
        app.timer(WATCHDOG_TICK_S, name="stall-watchdog")(session.resume_stalled)
    if runs(role, Role.RETRIEVAL):
        for rtype in RetrievalType:
            retrieval = RetrievalAgent(pipeline, rtype)
            name = f"retrieval-{rtype.value}"
            app.agent(t.retrieval_requested[rtype], name=name, concurrency=concurrency)(
                pipeline.guard(name, Phase.RETRIEVAL, retrieval.handle)
            )
    stages: list[tuple[str, Phase, TopicT, Handler]] = []
    if runs(role, Role.DECIDE):
        joiner = JoinAgent(pipeline)
        app.agent(channel(TURN_CONTEXT, RETRIEVAL_RESULTS), name="join")(
            pipeline.guard("join", Phase.RETRIEVAL, joiner.handle)
        )
        app.timer(DEADLINE_TICK_S, name="join-deadlines")(joiner.tick)
        decider = StageAgent(pipeline, decide, t.planned, Phase.PLANNING)
        stages.append(("decide", Phase.RULE_SELECTION, t.retrieved, decider.handle))
    if runs(role, Role.ANSWER):
        generator = StageAgent(pipeline, generate_answer, t.generated, Phase.GENERATION)
        stages.append(("generate", Phase.GENERATION, t.planned, generator.handle))
        stages.append(("enforce", Phase.ENFORCEMENT, t.generated, EnforceAgent(pipeline).handle))
    for name, phase, topic, handler in stages:
        app.agent(topic, name=name, concurrency=concurrency)(pipeline.guard(name, phase, handler))
