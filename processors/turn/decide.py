"""Stage 3 of a turn: P5 rule selection, P6 scenarios, P7 tools and P8 planning.

They run in one agent after the retrieval join because each needs the previous one's
output and the session's scenario state, and none of them waits on a model in heuristic
mode; an LLM rule filter is the only call that can be slow here.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import datetime

from processors.llm_calls import recording, with_calls
from processors.phases.customer_data import apply_values, customer_variables
from processors.phases.dialogue import (
    ANSWERS,
    TurnReading,
    is_confirmation,
    read_turn,
    waiting_step,
)
from processors.phases.lexicon import affirmation
from processors.phases.planning import plan_response
from processors.phases.rule_selection import ScenarioScope, record_fires, select_rules_async
from processors.phases.scenarios import ask_for_missing_inputs, orchestrate
from processors.phases.tools import bindings_due, run_tools
from processors.retrieval.intent import canonical_intent
from processors.retrieval.model import Retrieved
from processors.turn.deps import TurnDeps
from processors.turn.retrieval_stage import selected
from processors.turn.timing import timed
from schemas.domain.customer_data import CustomerDataStore, VariableScope, VariableSource
from schemas.domain.errors import TurnError
from schemas.domain.outcome import OutcomeCategory
from schemas.domain.phase import Phase
from schemas.domain.retrieval import RetrievalType
from schemas.domain.rules import AppliedRule
from schemas.domain.scenario import ScenarioAction, ScenarioDecision
from schemas.domain.session import ScenarioStatus, SessionState
from schemas.domain.snapshot import FrustrationLevel
from schemas.domain.tools import ToolCall
from schemas.domain.turn_context import TurnContext
from schemas.pack.agent_pack import AgentPack

MAX_SCENARIO_ROUNDS = 3
"""P6 and P7 alternate while tools add data: a tool called for a step (an eligibility check)
can complete it, and the scenario moves on in the same turn instead of waiting for the
customer to write again. Bounded, and each tool runs at most once per turn."""


def _starts_case(session: SessionState, decisions: Sequence[ScenarioDecision]) -> bool:
    """Whether a scenario that was not open (ACTIVE or PAUSED) moves this turn: a new case,
    however far it gets in the turn (a start can complete a whole flow at once)."""
    open_ids = {
        s.scenario_id
        for s in session.scenarios
        if s.status in (ScenarioStatus.ACTIVE, ScenarioStatus.PAUSED)
    }
    return any(
        d.scenario_id not in open_ids and d.action is not ScenarioAction.CANCEL for d in decisions
    )


def new_case(
    store: CustomerDataStore,
    since: datetime,
    said_now: Collection[str],
    keep: Collection[str] = (),
) -> CustomerDataStore:
    """The store for a scenario that starts: CASE-scope values from before this turn belong
    to an earlier case (a refund of another order) and are dropped; what the customer said
    in this very message (``said_now``, even if equal to an old value), what was set since
    the turn began, and the fields of scenarios still open (``keep``: a paused scenario
    resumes with what it collected) stay. Returns ``store`` itself when nothing is dropped."""
    kept = {
        key: entry
        for key, entry in store.variables.items()
        if entry.scope is not VariableScope.CASE
        or entry.last_updated_at >= since
        or key in said_now
        or key in keep
    }
    if len(kept) == len(store.variables):
        return store
    return store.model_copy(update={"variables": kept})


def _retracted(store: CustomerDataStore, keys: Collection[str], since: datetime) -> set[str]:
    """Of ``keys``, the values a correction makes stale: CASE or SESSION values a tool
    computed, or that this very message set (its yes/no to a confirmation); what the customer
    said earlier and identity or business data stay."""
    return {
        key
        for key in keys
        if (entry := store.variables.get(key)) is not None
        and entry.scope in (VariableScope.CASE, VariableScope.SESSION)
        and (entry.source is VariableSource.TOOL or entry.last_updated_at >= since)
    }


def _set_since(store: CustomerDataStore, since: datetime) -> list[str]:
    """Keys the customer's words set during this turn (P3 or the pack's yes/no words)."""
    return [
        key
        for key, entry in store.variables.items()
        if entry.source is VariableSource.USER and entry.last_updated_at >= since
    ]


def open_case_fields(session: SessionState, pack: AgentPack) -> set[str]:
    """Fields the scenarios open before this turn (ACTIVE or PAUSED) hold: what their steps
    collect and what their bound tools return."""
    open_ids = {
        s.scenario_id
        for s in session.scenarios
        if s.status in (ScenarioStatus.ACTIVE, ScenarioStatus.PAUSED)
    }
    outputs = {tool.id: tool.outputs for tool in pack.tools}
    found: set[str] = set()
    for scenario in pack.scenarios:
        if scenario.id not in open_ids:
            continue
        for step in scenario.steps:
            found.update(step.collects)
            for binding in step.tool_bindings:
                found.update(outputs.get(binding.tool_id, []))
    return found


def with_pack_yes_no(
    context: TurnContext, pack: AgentPack, store: CustomerDataStore, now: datetime
) -> CustomerDataStore:
    """The store with the waiting confirmation's answer read with the pack's own
    ``dialogue.affirm`` / ``deny`` words too (the sensor knows only the built-in lexicon);
    a pack word decides where the built-in words say nothing or the opposite."""
    if context.session is None:
        return store
    waiting = waiting_step(context.session, pack)
    options = pack.agent.dialogue
    if waiting is None or not is_confirmation(waiting[1], pack):
        return store
    if not options.affirm and not options.deny:
        return store
    said = affirmation(context.input.message, options.affirm, options.deny)
    if said is None or said == affirmation(context.input.message):
        return store
    values = dict.fromkeys(waiting[1].collects, said)
    return apply_values(
        store, pack.fields, values, now, source=VariableSource.USER, confidence=0.8
    ).store


def read_dialogue(
    context: TurnContext,
    pack: AgentPack,
    store: CustomerDataStore,
    applied: Sequence[AppliedRule] = (),
) -> TurnReading:
    """P6's dialogue reading for the context (``processors.phases.dialogue``): the fused
    confidence of the canonical intent and the values the message gave (after P3)."""
    if context.session is None or context.snapshot is None:
        raise ValueError("the dialogue reading needs a context that went through P1-P3")
    label, confidence, _ = canonical_intent(
        context.input.message, pack, _selected_of(context, RetrievalType.INTENTS)
    )
    if label != context.canonical_intent:
        confidence = 0.0  # the join settled on another label: no confidence to claim for it
    answering = {r.id for r in pack.rules if r.says_action_text and r.enabled}
    answer_score = max(
        (a.score for a in applied if a.rule_id in answering and a.via_relationship is None),
        default=0.0,
    )
    values = customer_variables(store)
    given = {*context.snapshot.candidate_variables, *_set_since(store, context.received_at)}
    said = {key: values[key] for key in given if key in values}
    changed = [
        key
        for key in said
        if store.variables[key].last_updated_at >= context.received_at
        and store.variables[key].history
    ]
    return read_turn(
        context.session,
        pack,
        context.canonical_intent,
        confidence,
        _selected_of(context, RetrievalType.SCENARIOS),
        said,
        changed,
        answer_score,
        context.input.message,
    )


def _merge_decisions(
    earlier: list[ScenarioDecision], later: list[ScenarioDecision]
) -> list[ScenarioDecision]:
    """One decision per scenario for the turn: a later round continues what an earlier one
    started, so the action and skipped steps of the first round are kept, the contribution
    is the last round's, and so is the step entered unless the last round entered none."""
    merged = {d.scenario_id: d for d in earlier}
    for decision in later:
        first = merged.get(decision.scenario_id)
        if first is None:
            merged[decision.scenario_id] = decision
            continue
        merged[decision.scenario_id] = decision.model_copy(
            update={
                "action": first.action
                if decision.action is ScenarioAction.CONTINUE
                else decision.action,
                "from_step_id": first.from_step_id,
                "entered_step_id": decision.entered_step_id or first.entered_step_id,
                "skipped_step_ids": list(
                    dict.fromkeys([*first.skipped_step_ids, *decision.skipped_step_ids])
                ),
            }
        )
    return list(merged.values())


def _selected_of(context: TurnContext, rtype: RetrievalType) -> list[Retrieved]:
    for selection in context.retrievals:
        if selection.retrieval_type is rtype:
            return selected(selection)
    return []


async def decide(context: TurnContext, pack: AgentPack, deps: TurnDeps) -> TurnContext:
    """P5-P8 on a joined context; the session in the result carries the rule fires and
    scenario state of this turn (persisted by P11)."""
    if context.session is None or context.customer_data is None or context.snapshot is None:
        raise ValueError("decide needs a context that went through P1-P3")
    settings = deps.settings_for(pack)
    now = deps.clock()
    timings = dict(context.timings_ms)
    session = context.session
    turn = session.turn_count + 1
    llm = recording(deps.llm_for(Phase.RULE_SELECTION))
    with timed(timings, Phase.RULE_SELECTION, deps.timer):
        rules = await select_rules_async(
            _selected_of(context, RetrievalType.RULES),
            pack,
            session,
            ScenarioScope.of(session),
            settings.phases.rule_selection,
            llm,
            message=context.input.message,
        )
        session = record_fires(session, rules.applied, turn)
    store = with_pack_yes_no(context, pack, context.customer_data, now)
    reading = read_dialogue(context, pack, store, rules.applied)
    stale = _retracted(store, reading.retract, context.received_at)
    if stale:
        store = store.model_copy(
            update={"variables": {k: v for k, v in store.variables.items() if k not in stale}}
        )
    intent = context.canonical_intent
    if reading.reading.kind in ANSWERS and reading.walk_intent is None:
        intent = None  # a reply to the waiting step, not a new intent ("yes please" ≠ goodbye)
    keep = open_case_fields(session, pack)
    options = pack.agent.dialogue
    asked = affirmation(context.input.message, options.affirm, options.deny) is True
    decisions: list[ScenarioDecision] = []
    calls: list[ToolCall] = []
    categories: list[OutcomeCategory] = []
    for round_ in range(MAX_SCENARIO_ROUNDS):
        with timed(timings, Phase.SCENARIOS, deps.timer):
            scenarios = orchestrate(
                session,
                pack,
                intent,
                store,
                rules.applied,
                now,
                reading=reading,
                retry_writes=asked,
            )
            if round_ == 0 and _starts_case(session, scenarios.decisions):
                said_now = context.snapshot.candidate_variables.keys()
                fresh = new_case(store, context.received_at, said_now, keep)
                if fresh is not store:
                    store = fresh
                    scenarios = orchestrate(
                        session,
                        pack,
                        intent,
                        store,
                        rules.applied,
                        now,
                        reading=reading,
                        retry_writes=asked,
                    )
            session = scenarios.session
            decisions = _merge_decisions(decisions, scenarios.decisions)
            reading = replace(reading, rewind_to=None)  # once: later rounds walk on
        with timed(timings, Phase.TOOLS, deps.timer):
            due = bindings_due(pack, rules.applied if not calls else [], scenarios.decisions)
            due = [d for d in due if d.tool_id not in {c.tool for c in calls}]
            tools = await run_tools(
                due, store.variables, pack, deps.tools(pack), settings.phases.tools, now=now
            )
        calls += tools.calls
        categories += [c for c in tools.categories if c not in categories]
        if not tools.variables:
            break
        store = store.model_copy(
            update={"variables": {**store.variables, **tools.variables}, "updated_at": now}
        )
    decisions, blocked = ask_for_missing_inputs(decisions, pack, customer_variables(store))
    tools_by_id = {tool.id: tool for tool in pack.tools}
    escalate = context.snapshot.frustration_level is FrustrationLevel.HIGH or any(
        call.success and tools_by_id[call.tool].escalates
        for call in calls
        if call.tool in tools_by_id
    )
    with timed(timings, Phase.PLANNING, deps.timer):
        plan = plan_response(
            [d.contribution for d in decisions if d.contribution is not None],
            rules.applied,
            pack,
            calls,
            categories,
            escalate=escalate,
            intent=intent,
            paused=reading.leave,
            blocked=blocked,
        )
    errors = list(context.errors)
    if rules.llm_error is not None:
        errors.append(
            TurnError(phase=Phase.RULE_SELECTION, code="llm.fallback", message=rules.llm_error)
        )
    return context.model_copy(
        update={
            "errors": errors,
            "token_usage": [*context.token_usage, *rules.usage],
            "llm_calls": with_calls(context.llm_calls, llm),
            "session": session,
            "customer_data": store,
            "applied_rules": rules.applied,
            "scenario_decisions": decisions,
            "dialogue": reading.reading,
            "canonical_intent": intent,
            "tool_calls": [*context.tool_calls, *calls],
            "plan": plan,
            "timings_ms": timings,
        }
    )
