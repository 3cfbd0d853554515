"""P6's first question: what does this turn mean for the conversation so far?

Why before anything starts: inside a running scenario most messages answer the question the
agent just asked ("the Plus plan", "tomorrow", "yes please"). Classified on their own, such
short replies land on some weakly related intent, which used to start another scenario.
So when a step waits for an answer, the turn is read as an answer to that step first, and
only clear evidence of another topic pauses it.

**Scenario evidence** (:func:`scenario_evidence`), for every scenario of the pack:
``score = 1 - (1 - retrieval) * (1 - intent) + fill`` (a noisy-OR: agreement of the two
sources counts more than either alone), where ``retrieval`` is the scenario's fused score
among the *selected* retrieved scenarios, ``intent`` the fused confidence of the canonical
intent when the scenario lists it in ``entry_intents``, and ``fill`` is ``fill_weight`` for
each *distinctive* field the message gave (one of the scenario's QUESTION steps collects it
and not every scenario of the pack does: an order number that every flow asks for says
nothing about which flow; at most two). A scenario is *informational* when none of its
steps binds a tool that writes (all bound tools are READ): it only looks things up and says
them. :func:`start_candidate` takes the best scenario with ``score >= start_threshold`` or,
for a first topic, whose ``intent`` reaches ``intent_floor`` (the canonical intent names it);
an informational one gives way to an action scenario that is also a candidate (it never
pre-empts the action the message asks for).

Calibration (``python -m bench.scenario_start``, the 151 messages of
``bench/data/acme_retrieval_set.yaml`` through ``understand`` -> ``retrieve_one`` -> ``join``
-> this reading): with ``start_threshold`` 0.5 and ``intent_floor`` 0.15 the labelled
scenario starts for 56/56 messages and 8 of 95 messages that need none start one (0.084);
intent alone, the former rule, gives 55/56 and the same 0.084; evidence without the intent
floor gives 0.821 and 0.021 at 0.5, 0.893 and 0.095 at 0.45.

**Reading** (:func:`read_turn`), in this order:

1. CANCEL — the canonical intent is one of ``dialogue.cancel_intents`` and no scenario lists
   it in ``entry_intents`` (then it is a START of that scenario, e.g. the pack's own cancel
   flow), with confidence: ``intent_floor`` without a waiting step; with one, the same bar as
   a switch (below): a "yes, go ahead" that resembles "never mind" confirms, it does not
   cancel.
2. With a waiting step (the current step of the most recent ACTIVE scenario, or without one
   of the most recently PAUSED, is a QUESTION):
   CORRECTION when the message changed a value that an earlier step of that scenario
   collected (the step's own yes/no given in the same message is then retracted: "no, the
   Plus plan" corrects, it does not decline; the scenario goes back to the step that
   collected the field and the outputs of the tools bound after it are forgotten, so quotes
   and checks are made again for the new value); AFFIRM / DENY when the step is a confirmation
   (it collects only BOOLEAN fields) and the message gave them (the sensor reads yes/no
   through :mod:`processors.phases.lexicon`, plus the pack's ``dialogue.affirm`` / ``deny``
   words); ANSWER when it gave any of the step's fields. A reply that answers switches only
   for a scenario with ``score >= start_threshold + switch_margin``, and never when it is
   little more than the answer (at most two other words: "A-10023" matches every flow whose
   examples name an order); one that does not answer
   switches with ``score >= start_threshold`` (SWITCH), else NO_ANSWER: the step keeps
   waiting (a "thanks" or "ok" does not end a flow). The waiting scenario is never its own
   switch target; a paused one can be (the customer goes back to it).
   A **farewell** is the exception to "keeps waiting": a reply that answers nothing, whose
   canonical intent is one of the pack's ``farewell`` intents at ``intent_floor`` or more,
   and that is more than an acknowledgement (:func:`~processors.phases.lexicon.
   is_acknowledgement`: "thanks", "ok great" stay NO_ANSWER; "thanks, bye" does not) is read
   as SWITCH with no scenario to start and ``leave`` set: the open flows pause with what
   they collected, none resumes this turn (no question after a goodbye), and the answer is
   the farewell plus the pack's ``dialogue.resume_template_id`` when it declares one. The
   next message resumes the paused flow (step 4 of :mod:`processors.phases.scenarios`).
3. Without a waiting step: NEW_TOPIC, with the start candidate if any (``intent_floor``
   applies here only: a switch away from a waiting step needs the evidence score), unless
   an applied rule that answers in words (``says_action_text``) scores at least
   ``start_threshold`` and ``switch_margin`` above the candidate's retrieval score while the
   message gives none of the candidate's fields: "what tariffs do you have?" is answered,
   it does not start a switch. Without any candidate, a scenario that retrieval selected
   *and* that lists the canonical intent starts however weak both are: two sources agree
   that it covers the request, and saying "I don't know" instead would be wrong.

The values are the sensor's, whichever runs: the heuristic one reads yes/no and typed values
as described in :mod:`processors.phases.sensor`; in ``llm`` mode the LLM sensor's candidate
values (its reading of the reply) are what this module weighs.

The canonical intent reaches the scenario walk (``on_intent`` transitions) only when the
reading is not an answer, or when its confidence reaches ``start_threshold``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from processors.phases.lexicon import ACKNOWLEDGE, AFFIRM, DENY, is_acknowledgement, words
from processors.retrieval.model import Retrieved
from schemas.domain.customer_data import VariableType
from schemas.domain.dialogue import DialogueReading, ReadingKind, ScenarioEvidence
from schemas.domain.session import ScenarioStatus, SessionState
from schemas.pack.agent_pack import AgentPack
from schemas.pack.dialogue import DialogueOptions
from schemas.pack.scenarios import Scenario, Step, StepKind
from schemas.pack.tools import SideEffect

__all__ = [
    "ANSWERS",
    "TurnReading",
    "is_confirmation",
    "is_informational",
    "read_turn",
    "scenario_evidence",
    "scenario_fields",
    "start_candidate",
    "waiting_step",
]

ANSWERS = frozenset(
    {ReadingKind.ANSWER, ReadingKind.CORRECTION, ReadingKind.AFFIRM, ReadingKind.DENY}
)
MAX_FILLED = 2
MAX_RESIDUAL_WORDS = 2


@dataclass(frozen=True)
class TurnReading:
    """The reading for the TurnRecord, the scenario to start (if any), the fields whose value
    must be forgotten (a confirmation answered together with a correction, and what tools
    computed after the corrected step: the caller drops those that a tool or this message
    set), and the intent the scenario walk may use."""

    reading: DialogueReading
    start: str | None = None
    retract: frozenset[str] = field(default_factory=frozenset)
    walk_intent: str | None = None
    rewind_to: str | None = None
    """After a correction: the step that collected the corrected field; the scenario walks
    on from there, so the steps after it (quotes, checks) are done again."""
    leave: bool = False
    """A farewell while a step waited (module docstring): open flows pause, none resumes."""


def is_informational(scenario: Scenario, pack: AgentPack) -> bool:
    """No bound tool writes (module docstring)."""
    effects = {tool.id: tool.side_effect for tool in pack.tools}
    return all(
        effects.get(binding.tool_id, SideEffect.READ) is SideEffect.READ
        for step in scenario.steps
        for binding in step.tool_bindings
    )


def scenario_fields(scenario: Scenario) -> list[str]:
    """The fields the scenario's QUESTION steps collect, in step order."""
    found = [key for s in scenario.steps if s.kind is StepKind.QUESTION for key in s.collects]
    return list(dict.fromkeys(found))


def is_confirmation(step: Step, pack: AgentPack) -> bool:
    """A QUESTION step that collects only BOOLEAN fields: a yes/no question."""
    types = {f.key: f.type for f in pack.fields}
    return step.kind is StepKind.QUESTION and all(
        types.get(key) is VariableType.BOOLEAN for key in step.collects
    )


def scenario_evidence(
    pack: AgentPack,
    intent: str | None,
    intent_confidence: float,
    retrieved: Sequence[Retrieved],
    said: Collection[str],
    options: DialogueOptions,
) -> list[ScenarioEvidence]:
    """Evidence per scenario with any, best first (ties: pack order)."""
    by_id = {r.object_id: r.score for r in retrieved}
    per_scenario = {s.id: set(scenario_fields(s)) for s in pack.scenarios}
    shared = set.intersection(*per_scenario.values()) if len(per_scenario) > 1 else set()
    found: list[ScenarioEvidence] = []
    for scenario in pack.scenarios:
        retrieval = min(1.0, max(0.0, by_id.get(scenario.id, 0.0)))
        from_intent = min(1.0, intent_confidence) if intent in scenario.entry_intents else 0.0
        filled = [k for k in scenario_fields(scenario) if k in said and k not in shared]
        fill = options.fill_weight * min(MAX_FILLED, len(filled))
        if retrieval <= 0 and from_intent <= 0:
            continue  # fields alone are no topic: no evidence without retrieval or intent
        combined = 1.0 - (1.0 - retrieval) * (1.0 - from_intent)
        found.append(
            ScenarioEvidence(
                scenario_id=scenario.id,
                score=round(combined + fill, 6),
                retrieval=round(retrieval, 6),
                intent=round(from_intent, 6),
                fill=round(fill, 6),
                filled_fields=filled,
                informational=is_informational(scenario, pack),
            )
        )
    order = {s.id: i for i, s in enumerate(pack.scenarios)}
    return sorted(found, key=lambda e: (-e.score, order[e.scenario_id]))


def start_candidate(
    evidence: Sequence[ScenarioEvidence],
    threshold: float,
    exclude: Collection[str] = (),
    intent_floor: float | None = None,
) -> ScenarioEvidence | None:
    """The best candidate: at or above ``threshold``, or with intent evidence at or above
    ``intent_floor`` when given; action before informational."""
    above = [
        e
        for e in evidence
        if e.scenario_id not in exclude
        and (e.score >= threshold or (intent_floor is not None and e.intent >= intent_floor))
    ]
    if not above:
        return None
    if above[0].informational:
        action = next((e for e in above if not e.informational), None)
        if action is not None:
            return action
    return above[0]


def waiting_step(session: SessionState, pack: AgentPack) -> tuple[Scenario, Step] | None:
    """The QUESTION step the most recent ACTIVE scenario is on, if any; with no ACTIVE
    scenario, that of the most recently PAUSED one (after a goodbye or a finished detour the
    next message answers the flow that resumes, step 4 of ``processors.phases.scenarios``)."""
    scenarios = {s.id: s for s in pack.scenarios}
    active_now = any(a.status is ScenarioStatus.ACTIVE for a in session.scenarios)
    wanted = ScenarioStatus.ACTIVE if active_now else ScenarioStatus.PAUSED
    for active in reversed(session.scenarios):
        scenario = scenarios.get(active.scenario_id)
        if active.status is not wanted or scenario is None:
            continue
        step = next((s for s in scenario.steps if s.id == active.current_step_id), None)
        if step is not None and step.kind is StepKind.QUESTION:
            return scenario, step
        if not active_now:
            return None  # only the flow that resumes can be waiting
    return None


def read_turn(
    session: SessionState,
    pack: AgentPack,
    intent: str | None,
    intent_confidence: float,
    retrieved: Sequence[Retrieved],
    said: Mapping[str, object],
    changed: Collection[str],
    answer_score: float = 0.0,
    message: str = "",
) -> TurnReading:
    """The reading of the module docstring. ``said``: the values the message gave this turn
    (field -> value, after P3); ``changed``: those of them that replaced a different value;
    ``answer_score``: the best score of an applied rule that answers by itself
    (``says_action_text``)."""
    options = pack.agent.dialogue
    evidence = scenario_evidence(pack, intent, intent_confidence, retrieved, said, options)
    threshold = options.start_threshold
    base = {
        "intent": intent,
        "intent_confidence": round(intent_confidence, 6),
        "evidence": evidence[:5],
    }
    entry = {i for s in pack.scenarios for i in s.entry_intents}
    cancels = intent is not None and intent in options.cancel_intents and intent not in entry
    cancel = TurnReading(DialogueReading(kind=ReadingKind.CANCEL, **base), walk_intent=intent)
    waiting = waiting_step(session, pack)
    if waiting is None and cancels and intent_confidence >= options.intent_floor:
        return cancel
    if waiting is None:
        best = start_candidate(evidence, threshold, intent_floor=options.intent_floor)
        if (
            best is not None
            and not best.filled_fields
            and answer_score >= threshold
            and answer_score >= best.retrieval + options.switch_margin
        ):
            best = None  # a question the pack answers in words, better than any flow matches
        elif best is None:
            best = next((e for e in evidence if e.retrieval > 0 and e.intent > 0), None)
        return TurnReading(
            DialogueReading(kind=ReadingKind.NEW_TOPIC, **base),
            start=best.scenario_id if best else None,
            walk_intent=intent,
        )
    scenario, step = waiting
    where = {"scenario_id": scenario.id, "step_id": step.id}
    active = next(a for a in session.scenarios if a.scenario_id == scenario.id)
    earlier = {
        key
        for s in scenario.steps
        if s.id in (*active.completed_step_ids, *active.skipped_step_ids) and s.id != step.id
        for key in s.collects
    }
    corrected = sorted(key for key in changed if key in earlier)
    given = [key for key in step.collects if key in said]
    retract: frozenset[str] = frozenset()
    rewind_to = None
    if corrected:
        kind, fields_ = ReadingKind.CORRECTION, corrected
        if is_confirmation(step, pack):
            retract = frozenset(given)  # "no, the Plus plan": a correction, not a refusal
        rewind_to = next(s.id for s in scenario.steps if set(s.collects) & set(corrected))
        retract |= _outputs_after(scenario, rewind_to, pack)
    elif given and is_confirmation(step, pack):
        yes = all(said[key] is True for key in given)
        kind, fields_ = (ReadingKind.AFFIRM if yes else ReadingKind.DENY), given
    elif given:
        kind, fields_ = ReadingKind.ANSWER, given
    else:
        kind, fields_ = ReadingKind.NO_ANSWER, []
    need = threshold + options.switch_margin if kind in ANSWERS else threshold
    if cancels and intent_confidence >= need:
        return cancel
    farewells = {i.id for i in pack.intents if i.farewell}
    if (
        kind is ReadingKind.NO_ANSWER
        and intent in farewells
        and intent_confidence >= options.intent_floor
        and words(message)
        and not is_acknowledgement(message)
    ):
        reading = DialogueReading(kind=ReadingKind.SWITCH, **where, **base)
        return TurnReading(reading, walk_intent=intent, leave=True)
    other = start_candidate(evidence, need, exclude={scenario.id})
    if other is not None and not (kind in ANSWERS and _only_the_answer(message, said, fields_)):
        reading = DialogueReading(kind=ReadingKind.SWITCH, **where, fields=fields_, **base)
        return TurnReading(reading, start=other.scenario_id, retract=retract, walk_intent=intent)
    affirmed = None
    if kind in (ReadingKind.AFFIRM, ReadingKind.DENY):
        affirmed = kind is ReadingKind.AFFIRM
    reading = DialogueReading(kind=kind, **where, fields=fields_, affirmed=affirmed, **base)
    clear = kind not in ANSWERS or intent_confidence >= threshold
    return TurnReading(
        reading, retract=retract, walk_intent=intent if clear else None, rewind_to=rewind_to
    )


def _only_the_answer(message: str, said: Mapping[str, object], keys: Sequence[str]) -> bool:
    """Whether the message is little more than the answer: at most
    :data:`MAX_RESIDUAL_WORDS` words left once the given values and yes/no/thanks words are
    taken out ("A-10023", "it's the green one, thanks"). Such a reply matches whatever flow
    mentions the same value, which is no evidence of another topic."""
    taken = {w for key in keys for w in words(str(said.get(key, "")).replace("_", " "))}
    known = {w for entry in (*AFFIRM, *DENY, *ACKNOWLEDGE) for w in words(entry)}
    rest = [w for w in words(message) if w not in taken and w not in known]
    return len(rest) <= MAX_RESIDUAL_WORDS


def _outputs_after(scenario: Scenario, step_id: str, pack: AgentPack) -> frozenset[str]:
    """Outputs of the tools bound to the steps reachable from ``step_id`` (itself excluded):
    computed from the value a correction just replaced, so they are stale."""
    outputs = {tool.id: tool.outputs for tool in pack.tools}
    steps = {s.id: s for s in scenario.steps}
    reachable: set[str] = set()
    frontier = [t.to_step for t in scenario.transitions if t.from_step == step_id]
    while frontier:
        current = frontier.pop()
        if current in reachable or current == step_id:
            continue
        reachable.add(current)
        frontier += [t.to_step for t in scenario.transitions if t.from_step == current]
    return frozenset(
        name
        for sid in reachable
        if sid in steps
        for binding in steps[sid].tool_bindings
        for name in outputs.get(binding.tool_id, [])
    )
