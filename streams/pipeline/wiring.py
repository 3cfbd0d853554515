"""Attach the agents and the join's deadline timer to the Faust app."""

from __future__ import annotations

from faust.types import TopicT

from processors.turn.answer import generate_answer
from processors.turn.decide import decide
from schemas.domain.phase import Phase
from schemas.domain.retrieval import RetrievalType
from streams.pipeline.base import FailInFlight, Handler, Pipeline
from streams.pipeline.session_agent import SEEN_SWEEP_S, WATCHDOG_TICK_S, SessionAgent
from streams.pipeline.stage_agents import (
    DEADLINE_TICK_S,
    EnforceAgent,
    JoinAgent,
    RetrievalAgent,
    StageAgent,
    TakenUp,
)
from streams.pipeline.sweeper import Sweeper
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
    and at most one turn per session is past it.

    The stages that may wait on the LLM (session for P2, decide for P5, generate, enforce)
    get ``llm_stage_concurrency`` actors when an LLM endpoint is configured: a turn waiting
    on its model holds an actor but no CPU, and the LLM port bounds the requests in flight
    per endpoint (``llm_max_in_flight``). Retrieval keeps ``concurrency``: it is CPU work.
    Every handler runs under the watchdog's heartbeat (:meth:`Pipeline.working`)."""
    t = pipeline.topology
    app = t.app
    settings = t.settings
    waits = settings.llm_stage_concurrency if settings.llm_base_url else concurrency
    llm_concurrency = max(concurrency, waits)
    taken = TakenUp()  # shared by this worker's retrieval consumers and its join

    def channel(*specs: TopicSpec) -> TopicT:
        return app.topic(*(t.name(s) for s in specs), **RAW)

    fail: FailInFlight | None = None  # a crash ends the turn in flight where the gate is
    if runs(role, Role.CONTEXT):
        session = SessionAgent(pipeline)
        fail = session.fail_in_flight
        app.agent(
            channel(TURN_REQUESTED, TURN_COMPLETED), name="session", concurrency=llm_concurrency
        )(pipeline.guard("session", Phase.IDENTIFICATION, pipeline.working(session.handle), fail))
        app.timer(WATCHDOG_TICK_S, name="stall-watchdog")(session.resume_stalled)
        app.timer(SEEN_SWEEP_S, name="seen-sweep")(session.sweep_seen)
    if runs(role, Role.RETRIEVAL):
        for rtype in RetrievalType:
            retrieval = RetrievalAgent(pipeline, rtype, taken)
            name = f"retrieval-{rtype.value}"
            app.agent(t.retrieval_requested[rtype], name=name, concurrency=concurrency)(
                pipeline.guard(name, Phase.RETRIEVAL, pipeline.working(retrieval.handle), fail)
            )
    stages: list[tuple[str, Phase, TopicT, Handler]] = []
    if runs(role, Role.DECIDE):
        joiner = JoinAgent(pipeline, taken)
        app.agent(channel(TURN_CONTEXT, RETRIEVAL_RESULTS), name="join")(
            pipeline.guard("join", Phase.RETRIEVAL, pipeline.working(joiner.handle), fail)
        )
        app.timer(DEADLINE_TICK_S, name="join-deadlines")(joiner.tick)
        decider = StageAgent(pipeline, decide, t.planned, Phase.PLANNING)
        stages.append(("decide", Phase.RULE_SELECTION, t.retrieved, decider.handle))
    if runs(role, Role.CONTEXT) or runs(role, Role.DECIDE):  # the tables that grow per session
        sweeper = Sweeper(pipeline, joiner.joins if runs(role, Role.DECIDE) else None)
        app.timer(sweeper.interval, name="idle-state-sweep")(sweeper.sweep)
    if runs(role, Role.ANSWER):
        generator = StageAgent(pipeline, generate_answer, t.generated, Phase.GENERATION)
        stages.append(("generate", Phase.GENERATION, t.planned, generator.handle))
        stages.append(("enforce", Phase.ENFORCEMENT, t.generated, EnforceAgent(pipeline).handle))
    for name, phase, topic, handler in stages:
        app.agent(topic, name=name, concurrency=llm_concurrency)(
            pipeline.guard(name, phase, pipeline.working(handler), fail)
        )
