"""The webhook events a completed turn raises, and their JSON payloads.

* ``turn_completed``: every answered turn; event id ``turn_completed:<turn>``;
* ``escalation_requested``: the plan is ESCALATE or the resolution REDIRECTED;
  ``escalation_requested:<turn>``;
* ``scenario_completed``: a scenario took the COMPLETE transition;
  ``scenario_completed:<turn>:<scenario>``.

Ids depend on the turn only, so a replayed turn raises the same events and its deliveries get
the same delivery ids (``signing.delivery_id``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from schemas.domain.outcome import Resolution
from schemas.domain.plan import ResponseType
from schemas.domain.scenario import ScenarioAction
from schemas.events.completed_turn import CompletedTurn

TURN_COMPLETED = "turn_completed"
ESCALATION_REQUESTED = "escalation_requested"
SCENARIO_COMPLETED = "scenario_completed"
EVENT_TYPES = (TURN_COMPLETED, ESCALATION_REQUESTED, SCENARIO_COMPLETED)


@dataclass(frozen=True)
class WebhookEvent:
    event_id: str
    event_type: str
    tenant_id: str
    agent_id: str
    body: str
    """The JSON document POSTed, exactly as signed."""


def _body(event_id: str, event_type: str, completed: CompletedTurn, data: dict[str, Any]) -> str:
    record = completed.record
    document = {
        "event_id": event_id,
        "event_type": event_type,
        "tenant_id": record.tenant_id,
        "agent_id": record.agent_id,
        "occurred_at": record.completed_at.isoformat(),
        "data": data,
    }
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


def events_from_turn(completed: CompletedTurn) -> list[WebhookEvent]:
    record = completed.record
    ctx = record.context
    outcome = ctx.outcome
    response_type = ctx.plan.response_type if ctx.plan else None
    turn = {
        "turn_id": record.turn_id,
        "session_id": record.session_id,
        "customer_id": record.customer_id,
        "channel": str(ctx.input.channel),
        "pack_version": ctx.pack_version,
        "intent": ctx.canonical_intent,
        "response_type": str(response_type) if response_type else None,
        "resolution": str(outcome.resolution) if outcome else None,
        "categories": [str(c) for c in outcome.categories] if outcome else [],
        "message": ctx.input.message,
        "response_text": ctx.response_text,
        "rules": [rule.rule_id for rule in ctx.applied_rules],
        "tools": [{"tool": call.tool, "success": call.success} for call in ctx.tool_calls],
    }
    found: list[WebhookEvent] = []

    def add(event_type: str, event_id: str, data: dict[str, Any]) -> None:
        found.append(
            WebhookEvent(
                event_id,
                event_type,
                record.tenant_id,
                record.agent_id,
                _body(event_id, event_type, completed, data),
            )
        )

    add(TURN_COMPLETED, f"{TURN_COMPLETED}:{record.turn_id}", turn)
    redirected = outcome is not None and outcome.resolution is Resolution.REDIRECTED
    if response_type is ResponseType.ESCALATE or redirected:
        add(ESCALATION_REQUESTED, f"{ESCALATION_REQUESTED}:{record.turn_id}", turn)
    for decision in ctx.scenario_decisions:
        if decision.action is ScenarioAction.COMPLETE:
            add(
                SCENARIO_COMPLETED,
                f"{SCENARIO_COMPLETED}:{record.turn_id}:{decision.scenario_id}",
                {
                    "turn_id": record.turn_id,
                    "session_id": record.session_id,
                    "customer_id": record.customer_id,
                    "scenario_id": decision.scenario_id,
                    "scenario_version": decision.scenario_version,
                },
            )
    return found
