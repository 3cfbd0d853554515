"""P6 scenario orchestration: move each scenario of the session on by one turn.

Why a walk: a customer often answers more than the current question ("order A-10023, it
arrived broken"), so a scenario may pass several steps in one turn. Each step is *complete*
when its ``completion_condition`` holds, or, without one, when every field it ``collects``
is known in customer data (:func:`step_complete`). Conditions are evaluated with
:mod:`processors.expressions` over the customer variables plus ``session_intent``,
``session_turn_count``, ``session_scenario_id`` and ``session_step_id``; an expression
error counts as "does not hold".

Per turn, in this order, after the dialogue reading of :mod:`processors.phases.dialogue`
(which says whether the turn answers the waiting step, cancels, or switches topic, weighing
retrieval score, canonical intent and the fields the message gave):

1. **CANCEL** — the reading is CANCEL: every open scenario is cancelled.
   A farewell while a step waited (the reading's ``leave``): every ACTIVE scenario is
   paused (**PAUSE**) and nothing else moves this turn, nothing resumes either.
2. **START** — the reading names a scenario to start (NEW_TOPIC or SWITCH with a candidate
   at or above the pack's ``dialogue.start_threshold``); not when it is already ACTIVE; a
   PAUSED one is resumed instead (CONTINUE). Starting pauses the other ACTIVE scenarios
   (**PAUSE**) unless ``pause_others=False`` (then several stay active). An answer to the
   waiting step never starts anything without clearly stronger evidence (``switch_margin``).
3. **CONTINUE / COMPLETE** for every ACTIVE scenario, by the walk:
   from the current step, while the step is complete take the highest-priority transition
   (declaration order on ties) whose ``on_intent`` (if any) equals the intent and whose
   ``condition`` (if any) holds. A transition with ``on_intent`` may also leave a step that
   is not complete: the customer redirected the flow. Steps entered this turn and found
   complete are **skipped** (recorded); the step the turn started on is **completed**.
   A LOGIC step with a template stops the walk when entered (its text is said this turn).
   A complete step without outgoing transitions ends the scenario: **COMPLETE**. A complete
   step whose transitions all fail waits (CONTINUE, same step). The walk never revisits a
   step in one turn. An ACTION step the scenario already waited on and that is still not
   complete (its tool failed) is *entered again*, so its tools run again when the customer
   writes again; one that binds a NON_IDEMPOTENT_WRITE tool only when the caller says the
   customer asked for it (``retry_writes``: the message is a yes), since a failed call may
   still have done its write.
4. When no scenario is ACTIVE afterwards, the most recently paused one resumes (CONTINUE).

Without a reading from the caller (unit tests of this module), the reading is made here with
the canonical intent at full confidence and no fields said.

Contributions, from the step the walk stopped on: QUESTION -> ASK for its missing fields
(CONFIRM when they are all BOOLEAN: a yes/no question confirms); ACTION -> ACTION_HINT
(text names the bound tools); LOGIC -> INFORM. The step's template id is passed on.
A completed scenario contributes its last step's template as INFORM when it has one.

**Missing tool inputs** (:func:`ask_for_missing_inputs`, after P7): an ACTION step the walk
stopped on whose bound tool needs an input nobody has (not in customer data, not an output
of another tool of the step) cannot move. Instead of an ACTION_HINT that says nothing (which
used to end as a KNOWLEDGE_GAP answer), it asks for the input when the customer may give it
(a pack field that is not ``protected``) and a QUESTION step of the pack collects it: ASK,
with that step's template (the pack's own wording for the question). An input the customer
may not state (``protected``: identity, set by the gateway or a tool) blocks the step: the
caller plans the CAPABILITY_GAP answer. A step whose tools did run and still cannot move
(they found nothing for the inputs given: another customer's order number) asks again for
its askable inputs the same way. :func:`expected_fields` lists the askable inputs of
a waiting ACTION step, so the sensor reads the reply for them; the step runs its tools again
on that reply (step 3's retry).

``applied_rules`` are accepted for the pipeline's signature and are not used by this
heuristic (rules scoped to steps are P5's business).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from processors.expressions import CompiledExpression, ExpressionError, holds, parse
from processors.phases.customer_data import customer_variables
from processors.phases.dialogue import TurnReading, read_turn
from processors.retrieval.model import Retrieved
from schemas.domain.customer_data import CustomerDataStore, VariableType
from schemas.domain.dialogue import ReadingKind
from schemas.domain.rules import AppliedRule
from schemas.domain.scenario import (
    ContributionKind,
    ScenarioAction,
    ScenarioContribution,
    ScenarioDecision,
)
from schemas.domain.session import ActiveScenario, ScenarioStatus, SessionState
from schemas.pack.agent_pack import AgentPack
from schemas.pack.dialogue import DEFAULT_CANCEL_INTENTS
from schemas.pack.fields import CustomerDataField
from schemas.pack.scenarios import Scenario, Step, StepKind, Transition
from schemas.pack.tools import SideEffect

__all__ = [
    "DEFAULT_CANCEL_INTENTS",
    "ScenarioOrchestration",
    "ask_for_missing_inputs",
    "expected_fields",
    "orchestrate",
    "step_complete",
]

_OPEN = (ScenarioStatus.ACTIVE, ScenarioStatus.PAUSED)


@dataclass(frozen=True)
class ScenarioOrchestration:
    """P6's result: the decisions of this turn and the session with the new scenario state."""

    decisions: list[ScenarioDecision]
    session: SessionState

    @property
    def contributions(self) -> list[ScenarioContribution]:
        return [d.contribution for d in self.decisions if d.contribution is not None]


@lru_cache(maxsize=512)
def _compiled(source: str) -> CompiledExpression:
    return parse(source)


def _holds(source: str, variables: Mapping[str, object]) -> bool:
    try:
        return holds(_compiled(source), variables)
    except ExpressionError:
        return False


def step_complete(step: Step, variables: Mapping[str, object]) -> bool:
    """Whether ``step`` is done with the data known (module docstring)."""
    if step.completion_condition is not None:
        return _holds(step.completion_condition, variables)
    return all(variables.get(key) is not None for key in step.collects)


def expected_fields(session: SessionState, pack: AgentPack) -> set[str]:
    """Fields the ACTIVE scenarios (without one, the most recently PAUSED) wait for: the
    sensor's ``expected_fields``. That is every
    field the current step collects (a bare "yes" answers it), and the fields earlier steps
    of the scenario collected that are neither BOOLEAN nor free text (a correction: "no, the
    Plus plan"); on an ACTION step, the inputs of its tools the customer may give (module
    docstring, missing tool inputs)."""
    steps = {(s.id, step.id): step for s in pack.scenarios for step in s.steps}
    by_key = {f.key: f for f in pack.fields}
    wanted: set[str] = set()
    listening = [a for a in session.scenarios if a.status is ScenarioStatus.ACTIVE]
    if not listening:  # the flow that resumes (step 4) waits, as in the dialogue reading
        listening = [a for a in session.scenarios if a.status is ScenarioStatus.PAUSED][-1:]
    for active in listening:
        step = steps.get((active.scenario_id, active.current_step_id))
        if step is None:
            continue
        wanted.update(step.collects)
        if step.kind is StepKind.ACTION:
            wanted.update(
                key
                for key in _missing_inputs(step, pack, {})
                if key in by_key and not by_key[key].protected
            )
        for done in (*active.completed_step_ids, *active.skipped_step_ids):
            earlier = steps.get((active.scenario_id, done))
            for key in earlier.collects if earlier is not None else ():
                found = by_key.get(key)
                if (
                    found is not None
                    and found.type is not VariableType.BOOLEAN
                    and not found.extraction.free_text
                ):
                    wanted.add(key)
    return wanted


def _missing_inputs(step: Step, pack: AgentPack, known: Mapping[str, object]) -> list[str]:
    """Required inputs of the step's tools that nobody has (module docstring)."""
    tools = {t.id: t for t in pack.tools}
    bound = [tools[b.tool_id] for b in step.tool_bindings if b.tool_id in tools]
    provided = {name for tool in bound for name in tool.outputs}
    return list(
        dict.fromkeys(
            name
            for tool in bound
            for name in tool.required_inputs
            if known.get(name) is None and name not in provided
        )
    )


def _asking_steps(pack: AgentPack) -> dict[str, Step]:
    """Per field, the first QUESTION step of the pack (scenario order) that collects it and
    has a template."""
    found: dict[str, Step] = {}
    for scenario in pack.scenarios:
        for step in scenario.steps:
            if step.kind is StepKind.QUESTION and step.template_id is not None:
                for key in step.collects:
                    found.setdefault(key, step)
    return found


def ask_for_missing_inputs(
    decisions: Sequence[ScenarioDecision], pack: AgentPack, known: Mapping[str, object]
) -> tuple[list[ScenarioDecision], bool]:
    """The decisions with each ACTION_HINT of a step that lacks a tool input turned into the
    question for it, and whether some step is blocked on an input the customer may not give
    (module docstring)."""
    scenarios = {s.id: s for s in pack.scenarios}
    fields = {f.key: f for f in pack.fields}
    asking = _asking_steps(pack)
    out: list[ScenarioDecision] = []
    blocked = False
    for decision in decisions:
        contribution = decision.contribution
        scenario = scenarios.get(decision.scenario_id)
        if (
            contribution is None
            or contribution.kind is not ContributionKind.ACTION_HINT
            or scenario is None
        ):
            out.append(decision)
            continue
        step = next(s for s in scenario.steps if s.id == contribution.step_id)
        missing = _missing_inputs(step, pack, known)
        # nothing missing, yet the step is still not done: its tools found nothing for the
        # inputs they were given (an order number of someone else), so ask for those again
        asked_for = missing or _missing_inputs(step, pack, {})
        askable = [k for k in asked_for if k in fields and not fields[k].protected and k in asking]
        if askable:
            question = asking[askable[0]]
            contribution = contribution.model_copy(
                update={
                    "kind": ContributionKind.ASK,
                    "template_id": question.template_id,
                    "text": None,
                    "field_keys": askable,
                }
            )
            decision = decision.model_copy(update={"contribution": contribution})
        elif missing:
            blocked = True
        out.append(decision)
    return out, blocked


def orchestrate(
    session: SessionState,
    pack: AgentPack,
    canonical_intent: str | None,
    customer_data: CustomerDataStore | None,
    applied_rules: Sequence[AppliedRule],
    now: datetime,
    *,
    retrieved_scenarios: Sequence[Retrieved] = (),
    reading: TurnReading | None = None,
    pause_others: bool = True,
    retry_writes: bool = True,
) -> ScenarioOrchestration:
    """P6 by the rules of the module docstring; ``now`` stamps the session. ``reading`` is
    the dialogue reading of the turn (:func:`processors.phases.dialogue.read_turn`)."""
    del applied_rules  # see the module docstring
    scenarios = {s.id: s for s in pack.scenarios}
    fields = {f.key: f for f in pack.fields}
    customer = customer_variables(customer_data)
    state: dict[str, ActiveScenario] = {s.scenario_id: s for s in session.scenarios}
    order = [s.scenario_id for s in session.scenarios]
    decisions: list[ScenarioDecision] = []
    turn = session.turn_count + 1

    def put(active: ActiveScenario) -> None:
        if active.scenario_id not in state:
            order.append(active.scenario_id)
        state[active.scenario_id] = active

    def open_ids(status: ScenarioStatus) -> list[str]:
        return [i for i in order if state[i].status is status and i in scenarios]

    if reading is None:
        reading = read_turn(session, pack, canonical_intent, 1.0, retrieved_scenarios, {}, ())
    intent = reading.walk_intent
    if reading.reading.kind is ReadingKind.CANCEL:
        for sid in open_ids(ScenarioStatus.ACTIVE) + open_ids(ScenarioStatus.PAUSED):
            put(state[sid].model_copy(update={"status": ScenarioStatus.CANCELLED}))
            decisions.append(_decision(state[sid], ScenarioAction.CANCEL))
        return _result(session, state, order, decisions, now)

    if reading.leave:
        for sid in open_ids(ScenarioStatus.ACTIVE):
            put(state[sid].model_copy(update={"status": ScenarioStatus.PAUSED}))
            decisions.append(_decision(state[sid], ScenarioAction.PAUSE))
        return _result(session, state, order, decisions, now)

    corrected = reading.reading.scenario_id
    if reading.rewind_to is not None and corrected is not None and corrected in state:
        # a correction: walk on again from the step that collected the corrected field
        put(state[corrected].model_copy(update={"current_step_id": reading.rewind_to}))
    started = scenarios.get(reading.start or "")
    walked: set[str] = set()
    if (
        started is not None
        and state.get(started.id) is not None
        and (state[started.id].status is ScenarioStatus.ACTIVE)
    ):
        started = None  # already running: it just continues
    if started is not None:
        if pause_others:
            for sid in open_ids(ScenarioStatus.ACTIVE):
                put(state[sid].model_copy(update={"status": ScenarioStatus.PAUSED}))
                decisions.append(_decision(state[sid], ScenarioAction.PAUSE))
        previous = state.get(started.id)
        if previous is not None and previous.status is ScenarioStatus.PAUSED:
            put(previous.model_copy(update={"status": ScenarioStatus.ACTIVE}))
            decision, active = _walk(
                started, state[started.id], fields, customer, intent, turn, False
            )
        else:
            fresh = ActiveScenario(
                scenario_id=started.id,
                scenario_version=started.version,
                current_step_id=started.entry_step_id,
                status=ScenarioStatus.ACTIVE,
            )
            decision, active = _walk(started, fresh, fields, customer, intent, turn, True)
            if decision.action is ScenarioAction.CONTINUE:
                decision = decision.model_copy(
                    update={"action": ScenarioAction.START, "from_step_id": None}
                )
        put(active)
        decisions.append(decision)
        walked.add(started.id)

    for sid in open_ids(ScenarioStatus.ACTIVE):
        if sid in walked:
            continue
        decision, active = _walk(scenarios[sid], state[sid], fields, customer, intent, turn, False)
        put(active)
        decisions.append(decision)

    if not retry_writes:
        decisions = _without_write_retries(decisions, scenarios, pack)
    paused = open_ids(ScenarioStatus.PAUSED)
    if not open_ids(ScenarioStatus.ACTIVE) and paused:
        sid = paused[-1]
        resumed = state[sid].model_copy(update={"status": ScenarioStatus.ACTIVE})
        decision, active = _walk(scenarios[sid], resumed, fields, customer, intent, turn, False)
        put(active)
        decisions.append(decision)
    return _result(session, state, order, decisions, now)


def _variables(
    customer: Mapping[str, object], intent: str | None, turn: int, scenario_id: str, step_id: str
) -> dict[str, object]:
    return {
        **customer,
        "session_intent": intent,
        "session_turn_count": turn,
        "session_scenario_id": scenario_id,
        "session_step_id": step_id,
    }


def _transition(
    scenario: Scenario,
    step_id: str,
    complete: bool,
    intent: str | None,
    variables: Mapping[str, object],
) -> Transition | None:
    outgoing = [t for t in scenario.transitions if t.from_step == step_id]
    ranked = sorted(enumerate(outgoing), key=lambda pair: (-pair[1].priority, pair[0]))
    for _, transition in ranked:
        if transition.on_intent is not None and transition.on_intent != intent:
            continue
        if not complete and transition.on_intent is None:
            continue
        if transition.condition is not None and not _holds(transition.condition, variables):
            continue
        return transition
    return None


def _walk(
    scenario: Scenario,
    active: ActiveScenario,
    fields: Mapping[str, CustomerDataField],
    customer: Mapping[str, object],
    intent: str | None,
    turn: int,
    entering: bool,
) -> tuple[ScenarioDecision, ActiveScenario]:
    """Move ``active`` on as far as the known data allows (module docstring, step 3)."""
    steps = {step.id: step for step in scenario.steps}
    entered_first = entering
    start_step = active.current_step_id
    step = steps[start_step]
    retry = (
        not entering
        and step.kind is StepKind.ACTION
        and not step_complete(step, _variables(customer, intent, turn, scenario.id, step.id))
    )
    completed = list(active.completed_step_ids)
    skipped_now: list[str] = []
    visited = {step.id}
    finished = False
    while True:
        variables = _variables(customer, intent, turn, scenario.id, step.id)
        complete = step_complete(step, variables)
        if entering and step.kind is StepKind.LOGIC and step.template_id is not None:
            if not any(t.from_step == step.id for t in scenario.transitions):
                completed.append(step.id)
                finished = True
            break
        transition = _transition(scenario, step.id, complete, intent, variables)
        has_outgoing = any(t.from_step == step.id for t in scenario.transitions)
        if complete and not has_outgoing:
            completed.append(step.id)
            finished = True
            break
        if transition is None or transition.to_step in visited:
            break
        if entering and complete:
            skipped_now.append(step.id)
        else:
            completed.append(step.id)
        step = steps[transition.to_step]
        visited.add(step.id)
        entering = True
    new_active = active.model_copy(
        update={
            "current_step_id": step.id,
            "status": ScenarioStatus.COMPLETED if finished else ScenarioStatus.ACTIVE,
            "completed_step_ids": _dedupe(completed),
            "skipped_step_ids": _dedupe([*active.skipped_step_ids, *skipped_now]),
        }
    )
    decision = ScenarioDecision(
        scenario_id=scenario.id,
        scenario_version=active.scenario_version,
        action=ScenarioAction.COMPLETE if finished else ScenarioAction.CONTINUE,
        from_step_id=start_step,
        entered_step_id=step.id if step.id != start_step or entered_first or retry else None,
        skipped_step_ids=skipped_now,
        contribution=_contribution(scenario, step, fields, customer, finished),
    )
    return decision, new_active


def _contribution(
    scenario: Scenario,
    step: Step,
    fields: Mapping[str, CustomerDataField],
    customer: Mapping[str, object],
    finished: bool,
) -> ScenarioContribution | None:
    if finished:
        if step.template_id is None:
            return None
        kind = ContributionKind.INFORM
        keys: list[str] = []
    elif step.kind is StepKind.QUESTION:
        keys = [key for key in step.collects if customer.get(key) is None] or list(step.collects)
        all_boolean = all(
            key in fields and fields[key].type is VariableType.BOOLEAN for key in keys
        )
        kind = ContributionKind.CONFIRM if all_boolean else ContributionKind.ASK
    elif step.kind is StepKind.ACTION:
        kind, keys = ContributionKind.ACTION_HINT, []
    else:
        kind, keys = ContributionKind.INFORM, []
    text = (
        "run " + ", ".join(b.tool_id for b in step.tool_bindings)
        if kind is ContributionKind.ACTION_HINT
        else None
    )
    return ScenarioContribution(
        scenario_id=scenario.id,
        step_id=step.id,
        kind=kind,
        template_id=step.template_id,
        text=text,
        field_keys=keys,
    )


def _without_write_retries(
    decisions: list[ScenarioDecision], scenarios: Mapping[str, Scenario], pack: AgentPack
) -> list[ScenarioDecision]:
    """Decisions that re-enter the ACTION step they started on with a NON_IDEMPOTENT_WRITE
    tool lose that entry: its tools are not due again (module docstring, step 3)."""
    unsafe = {t.id for t in pack.tools if t.side_effect is SideEffect.NON_IDEMPOTENT_WRITE}
    kept = []
    for decision in decisions:
        scenario = scenarios.get(decision.scenario_id)
        steps = {s.id: s for s in scenario.steps} if scenario is not None else {}
        step = steps.get(decision.entered_step_id or "")
        if (
            step is not None
            and decision.entered_step_id == decision.from_step_id
            and decision.action is ScenarioAction.CONTINUE
            and any(b.tool_id in unsafe for b in step.tool_bindings)
        ):
            decision = decision.model_copy(update={"entered_step_id": None})
        kept.append(decision)
    return kept


def _decision(active: ActiveScenario, action: ScenarioAction) -> ScenarioDecision:
    return ScenarioDecision(
        scenario_id=active.scenario_id,
        scenario_version=active.scenario_version,
        action=action,
        from_step_id=active.current_step_id,
    )


def _dedupe(ids: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def _result(
    session: SessionState,
    state: Mapping[str, ActiveScenario],
    order: Sequence[str],
    decisions: list[ScenarioDecision],
    now: datetime,
) -> ScenarioOrchestration:
    scenarios = [state[sid] for sid in order]
    return ScenarioOrchestration(
        decisions, session.model_copy(update={"scenarios": scenarios, "updated_at": now})
    )
