"""P8 response planning: decide what kind of answer this is before any text is written.

The global response type, first rule that matches wins:

1. ``escalate`` (the caller saw a handoff: a handoff tool succeeded, the customer asked for a
   person, frustration is HIGH) -> ESCALATE;
2. a refusal category among the flags (SAFETY_REFUSAL, OUT_OF_SCOPE, POLICY_RESTRICTION)
   -> REFUSE;
3. from the scenario contributions (ACTION_HINT counts as INFORM, it is said as information):
   ASK together with INFORM or CONFIRM -> MIXED; ASK alone -> ASK; CONFIRM (with or without
   INFORM) -> CONFIRM; otherwise (INFORM only, or no contribution) -> ANSWER.

A failed tool (SYSTEM_ERROR) does not change the type: P9 says what could not be done.

Contributions are merged: duplicates (same scenario, step and kind) dropped, information and
confirmations first and questions last, since a message that ends with its question is the
one customers answer. Steps' templates are copied into the plan (P9 needs no pack lookup);
REFUSE plans get the pack's fallback template for the refusal category when there is one.

Declared responses, for turns the scenarios do not (fully) answer, go before the steps'
templates: the turn intent's ``response_template_id`` (a greeting, a thank-you), except a
``farewell`` intent's while a step asks or confirms something (a goodbye followed by a
question contradicts itself); and, when no step has a template to say, the action text of
the best applied rule with ``says_action_text`` whose score reaches the pack's
``dialogue.start_threshold`` (one informational answer, not every rule retrieval kept).

**What covers a request** (so that a KNOWLEDGE_GAP answer is never sent while something
does): a scenario that moved this turn (its step speaks, asks for a missing tool input, or
says the CAPABILITY_GAP answer), a scenario that retrieval selected and that lists the
canonical intent (P6 starts it, :mod:`processors.phases.dialogue`), or an applied rule that
answers in words (``says_action_text``) with a score of at least ``start_threshold``, the
bar a scenario needs to start on retrieval alone. A weaker rule is no cover: retrieval keeps
the best few rules of any message (``min_k``), and "You can pay with Visa..." is no answer
to "my payment keeps failing". ``tests/test_knowledge_gap_cover.py`` checks it on real turns.
When a scenario step is blocked on a tool input the customer may not give (``blocked``, see
``processors.phases.scenarios.ask_for_missing_inputs``), the pack's FALLBACK template for
CAPABILITY_GAP is planned (else :data:`CAPABILITY_GAP_TEXT`): the agent says it cannot do
this here instead of "I don't know".
When a farewell paused a flow that waited for an answer (``paused``), the pack's
``dialogue.resume_template_id`` follows the farewell: the customer learns the flow can go on.
``must_include`` / ``must_avoid`` are the applied rules' phrases, in rule order, deduplicated.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from schemas.domain.outcome import OutcomeCategory
from schemas.domain.plan import PlannedTemplate, ResponsePlan, ResponseType
from schemas.domain.rules import AppliedRule
from schemas.domain.scenario import ContributionKind, ScenarioContribution
from schemas.domain.tools import ToolCall
from schemas.pack.agent_pack import AgentPack
from schemas.pack.templates import TemplateKind

__all__ = [
    "CAPABILITY_GAP_TEMPLATE_ID",
    "CAPABILITY_GAP_TEXT",
    "REFUSAL_CATEGORIES",
    "plan_response",
    "response_type",
]

CAPABILITY_GAP_TEMPLATE_ID = "capability_gap_default"
CAPABILITY_GAP_TEXT = (
    "I can't do that from here: it needs details only our own systems can confirm. "
    "A colleague can help you with it."
)

REFUSAL_CATEGORIES: tuple[OutcomeCategory, ...] = (
    OutcomeCategory.SAFETY_REFUSAL,
    OutcomeCategory.OUT_OF_SCOPE,
    OutcomeCategory.POLICY_RESTRICTION,
)
_SAY_ORDER = {
    ContributionKind.INFORM: 0,
    ContributionKind.ACTION_HINT: 0,
    ContributionKind.CONFIRM: 1,
    ContributionKind.ASK: 2,
}


def response_type(
    contributions: Sequence[ScenarioContribution],
    categories: Collection[OutcomeCategory] = (),
    *,
    escalate: bool = False,
) -> ResponseType:
    """The global type by the rules in the module docstring."""
    if escalate:
        return ResponseType.ESCALATE
    if any(category in categories for category in REFUSAL_CATEGORIES):
        return ResponseType.REFUSE
    kinds = {c.kind for c in contributions}
    asks = ContributionKind.ASK in kinds
    informs = bool(kinds & {ContributionKind.INFORM, ContributionKind.ACTION_HINT})
    confirms = ContributionKind.CONFIRM in kinds
    if asks:
        return ResponseType.MIXED if informs or confirms else ResponseType.ASK
    if confirms:
        return ResponseType.CONFIRM
    return ResponseType.ANSWER


def plan_response(
    contributions: Sequence[ScenarioContribution],
    applied_rules: Sequence[AppliedRule],
    pack: AgentPack,
    tool_calls: Sequence[ToolCall] = (),
    categories: Collection[OutcomeCategory] = (),
    *,
    escalate: bool = False,
    intent: str | None = None,
    paused: bool = False,
    blocked: bool = False,
) -> ResponsePlan:
    """The response plan for P9; ``tool_calls`` are accepted so a failed call can be planned
    around (today it only reaches P9 through ``categories``). ``intent``: the turn's intent
    as P6 read it (None for a reply to the waiting step); ``paused``: a farewell paused the
    flow that waited; ``blocked``: a step lacks an input the customer may not give (module
    docstring)."""
    del tool_calls  # the SYSTEM_ERROR flag carries what planning needs from them
    kind = response_type(contributions, categories, escalate=escalate)
    merged: list[ScenarioContribution] = []
    seen: set[tuple[str, str, ContributionKind]] = set()
    for contribution in contributions:
        key = (contribution.scenario_id, contribution.step_id, contribution.kind)
        if key not in seen:
            seen.add(key)
            merged.append(contribution)
    merged.sort(key=lambda c: _SAY_ORDER[c.kind])  # stable: scenario order kept per kind

    templates_by_id = {t.id: t for t in pack.templates}
    planned: list[PlannedTemplate] = []
    if kind is ResponseType.REFUSE:
        wanted = next(c for c in REFUSAL_CATEGORIES if c in categories)
        fallback = next(
            (
                t
                for t in pack.templates
                if t.kind is TemplateKind.FALLBACK and t.fallback_for is wanted
            ),
            None,
        )
        if fallback is not None:
            planned.append(PlannedTemplate(template_id=fallback.id, text=fallback.text))
        merged = []  # a refusal says the refusal, not the scenario's next question
    for contribution in merged:
        template = templates_by_id.get(contribution.template_id or "")
        if template is not None and template.id not in {p.template_id for p in planned}:
            planned.append(PlannedTemplate(template_id=template.id, text=template.text))
    if kind not in (ResponseType.REFUSE, ResponseType.ESCALATE):
        planned = _declared(pack, intent, merged, applied_rules, bool(planned)) + planned
        if blocked:
            planned.append(_capability_gap(pack))
        resume = templates_by_id.get(pack.agent.dialogue.resume_template_id or "")
        if paused and resume is not None:
            planned.append(PlannedTemplate(template_id=resume.id, text=resume.text))

    rules = {rule.id: rule for rule in pack.rules}
    must_include: list[str] = []
    must_avoid: list[str] = []
    for applied in applied_rules:
        rule = rules.get(applied.rule_id)
        if rule is None or not rule.enabled:
            continue
        must_include += [p for p in rule.must_include if p not in must_include]
        must_avoid += [p for p in rule.must_avoid if p not in must_avoid]
    return ResponsePlan(
        response_type=kind,
        contributions=merged,
        templates=planned,
        must_include=must_include,
        must_avoid=must_avoid,
    )


def _declared(
    pack: AgentPack,
    intent: str | None,
    contributions: Sequence[ScenarioContribution],
    applied_rules: Sequence[AppliedRule],
    steps_speak: bool,
) -> list[PlannedTemplate]:
    """The intent's and an informational rule's declared responses (module docstring)."""
    found: list[PlannedTemplate] = []
    templates_by_id = {t.id: t for t in pack.templates}
    asking = any(c.kind in (ContributionKind.ASK, ContributionKind.CONFIRM) for c in contributions)
    declared = next((i for i in pack.intents if i.id == intent), None)
    if declared is not None and declared.response_template_id is not None:
        template = templates_by_id.get(declared.response_template_id)
        if template is not None and not (declared.farewell and asking):
            found.append(PlannedTemplate(template_id=template.id, text=template.text))
    if steps_speak:
        return found
    rules = {rule.id: rule for rule in pack.rules}
    threshold = pack.agent.dialogue.start_threshold
    informing = sorted(
        (
            a
            for a in applied_rules
            if a.via_relationship is None
            and a.score >= threshold
            and a.rule_id in rules
            and rules[a.rule_id].says_action_text
            and rules[a.rule_id].enabled
        ),
        key=lambda a: -a.score,
    )
    if informing:
        rule = rules[informing[0].rule_id]
        found.append(PlannedTemplate(template_id=rule.id, text=rule.action_text))
    return found


def _capability_gap(pack: AgentPack) -> PlannedTemplate:
    """The pack's FALLBACK for CAPABILITY_GAP, or the built-in sentence."""
    for template in pack.templates:
        if template.kind is TemplateKind.FALLBACK and (
            template.fallback_for is OutcomeCategory.CAPABILITY_GAP
        ):
            return PlannedTemplate(template_id=template.id, text=template.text)
    return PlannedTemplate(template_id=CAPABILITY_GAP_TEMPLATE_ID, text=CAPABILITY_GAP_TEXT)
