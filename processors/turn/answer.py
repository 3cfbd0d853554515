"""Stage 4 of a turn: P9 generation and P10 enforcement, and the loop between them.

P10 either passes the answer, sends the turn back to P9 with its violations as hints (the
stream topology does that through a topic, with the attempt counter on the envelope), or,
once ``max_generation_attempts`` are spent, replaces the answer with the pack's
POLICY_RESTRICTION fallback.
"""

from __future__ import annotations

from typing import Any

from processors.llm import call_budget_s
from processors.llm_calls import recording, with_calls
from processors.phases.enforcement import Decision, LlmRuleJudge, enforce
from processors.phases.generation import generate
from processors.phases.tools import bindings_due, customer_values, run_tools
from processors.turn.deps import TurnDeps
from processors.turn.timing import timed
from schemas.domain.enforcement import Violation
from schemas.domain.errors import TurnError
from schemas.domain.outcome import OutcomeCategory
from schemas.domain.phase import Phase
from schemas.domain.turn_context import TurnContext
from schemas.pack.agent_pack import AgentPack
from schemas.pack.common import ToolTiming
from schemas.settings import TaskMode

AFTER_RESPONSE = frozenset({ToolTiming.AFTER})
JUDGE_SLACK_S = 1.0
"""How much longer than the judge's own worst case (every attempt timing out) P10 waits."""


def turn_variables(context: TurnContext) -> dict[str, Any]:
    """Customer values plus the ``session_*`` variables: what templates and enforcement
    expressions read (``processors.expression_vars`` documents the names)."""
    store = context.customer_data
    values: dict[str, Any] = customer_values(store.variables) if store is not None else {}
    snapshot = context.snapshot
    session = context.session
    values.update(
        {
            "session_turn_count": (session.turn_count + 1) if session is not None else 1,
            "session_channel": context.input.channel.value,
            "session_language": snapshot.language if snapshot is not None else None,
            "session_intent": context.canonical_intent,
            "session_frustration_level": (
                snapshot.frustration_level.value if snapshot is not None else None
            ),
            "session_tools_called": sorted({c.tool for c in context.tool_calls if c.success}),
        }
    )
    return values


def _hints(context: TurnContext) -> list[Violation]:
    last = context.enforcement[-1] if context.enforcement else None
    return list(last.violations) if last is not None and not last.passed else []


async def generate_answer(context: TurnContext, pack: AgentPack, deps: TurnDeps) -> TurnContext:
    """P9 for the context's plan, with the last failed check's violations as hints."""
    if context.plan is None:
        raise ValueError("generation needs a planned context")
    phase = deps.settings_for(pack).phases.generation
    categories = (
        [OutcomeCategory.SYSTEM_ERROR] if any(not c.success for c in context.tool_calls) else []
    )
    timings = dict(context.timings_ms)
    llm = recording(deps.llm_for(Phase.GENERATION))
    with timed(timings, Phase.GENERATION, deps.timer):
        result = await generate(
            context.plan,
            turn_variables(context),
            pack,
            mode=phase.mode,
            channel=context.input.channel.value,
            categories=categories,
            hints=_hints(context),
            llm=llm,
            settings=phase,
        )
    errors = list(context.errors)
    if result.llm_error is not None:
        errors.append(
            TurnError(phase=Phase.GENERATION, code="llm.fallback", message=result.llm_error)
        )
    return context.model_copy(
        update={
            "response_text": result.text,
            "outcome": result.outcome,
            "token_usage": [*context.token_usage, *result.usage],
            "llm_calls": with_calls(context.llm_calls, llm),
            "timings_ms": timings,
            "errors": errors,
        }
    )


async def check_answer(
    context: TurnContext, pack: AgentPack, attempt: int, deps: TurnDeps
) -> tuple[TurnContext, Decision]:
    """P10 on attempt ``attempt``; on FALLBACK the context carries the fallback answer."""
    if context.plan is None or context.response_text is None or context.outcome is None:
        raise ValueError("enforcement needs a generated context")
    phase = deps.settings_for(pack).phases.enforcement
    llm = recording(deps.llm_for(Phase.ENFORCEMENT))
    judge = LlmRuleJudge(llm, phase) if llm is not None and phase.mode is TaskMode.LLM else None
    timings = dict(context.timings_ms)
    with timed(timings, Phase.ENFORCEMENT, deps.timer):
        checked = await enforce(
            context.response_text,
            context.plan,
            context.applied_rules,
            pack,
            turn_variables(context),
            attempt=attempt,
            max_attempts=deps.max_generation_attempts(pack),
            outcome=context.outcome,
            judge=judge,
            # a safety net over the port's own bounds, which give the judge's LlmError first
            judge_timeout_s=call_budget_s(phase, deps.settings.llm_backoff_s) + JUDGE_SLACK_S,
        )
    return (
        context.model_copy(
            update={
                "response_text": checked.text,
                "outcome": checked.outcome,
                "enforcement": [*context.enforcement, checked.result],
                # enforce() leaves Enforcement.usage empty: the judge's tokens are its own
                "token_usage": [
                    *context.token_usage,
                    *checked.usage,
                    *(judge.usage if judge is not None else []),
                ],
                "llm_calls": with_calls(context.llm_calls, llm),
                "timings_ms": timings,
            }
        ),
        checked.decision,
    )


async def after_response_tools(
    context: TurnContext, pack: AgentPack, deps: TurnDeps
) -> TurnContext:
    """Tools bound AFTER the answer (a handoff ticket, a confirmation mail), run once the
    answer is final; their calls join the turn's record."""
    due = bindings_due(pack, context.applied_rules, context.scenario_decisions, AFTER_RESPONSE)
    if not due or context.customer_data is None:
        return context
    phase = deps.settings_for(pack).phases.tools
    timings = dict(context.timings_ms)
    store = context.customer_data
    with timed(timings, Phase.TOOLS, deps.timer):
        tools = await run_tools(
            due, store.variables, pack, deps.tools(pack), phase, now=deps.clock()
        )
    if tools.variables:
        store = store.model_copy(update={"variables": {**store.variables, **tools.variables}})
    return context.model_copy(
        update={
            "customer_data": store,
            "tool_calls": [*context.tool_calls, *tools.calls],
            "timings_ms": timings,
        }
    )
