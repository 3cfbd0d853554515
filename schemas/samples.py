"""Realistic, fully populated instances of every registered model.

For round-trip tests of the codec and of Kafka, and for benchmarks: across the list, every
field of every nested model is set at least once (some fields exclude each other, so some
models appear more than once, e.g. an OK and an ERROR response).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from pydantic import BaseModel

from schemas.domain.customer_data import (
    CustomerDataStore,
    VariableChange,
    VariableEntry,
    VariableScope,
    VariableSource,
    VariableType,
)
from schemas.domain.dialogue import DialogueReading, ReadingKind, ScenarioEvidence
from schemas.domain.enforcement import (
    EnforcementLane,
    EnforcementResult,
    JudgeVerdict,
    RuleJudgement,
    Violation,
)
from schemas.domain.errors import TurnError
from schemas.domain.llm_call import LlmCall
from schemas.domain.outcome import OutcomeCategory, Resolution, TurnOutcome
from schemas.domain.phase import Phase
from schemas.domain.plan import PlannedTemplate, ResponsePlan, ResponseType
from schemas.domain.retrieval import (
    GapReason,
    RetrievalCandidate,
    RetrievalGap,
    RetrievalSelection,
    RetrievalType,
    SelectionStrategy,
)
from schemas.domain.rules import AppliedRule, RelationshipKind, RuleVerdict
from schemas.domain.scenario import (
    ContributionKind,
    ScenarioAction,
    ScenarioContribution,
    ScenarioDecision,
)
from schemas.domain.session import (
    ActiveScenario,
    MessageRole,
    RuleFires,
    ScenarioStatus,
    SessionMessage,
    SessionState,
)
from schemas.domain.snapshot import CandidateVariable, FrustrationLevel, SituationalSnapshot
from schemas.domain.tools import ToolCall
from schemas.domain.turn_context import TurnContext
from schemas.domain.turn_input import Channel, TurnInput
from schemas.domain.turn_record import TurnRecord
from schemas.domain.usage import TokenUsage
from schemas.events.analytics import AnalyticsEvent
from schemas.events.completed_turn import CompletedTurn
from schemas.events.dead_letter import DeadLetter
from schemas.events.pack_published import PackPublished
from schemas.events.pipeline_state import RetrievalJoin, SeenTurn, SessionGate
from schemas.events.retrieval import RetrievalRequested, RetrievalResult
from schemas.events.turn_envelope import TurnEnvelope
from schemas.events.turn_requested import TurnRequested
from schemas.events.turn_response import ResponseStatus, TurnResponse
from schemas.events.webhook import DeliveryStatus, WebhookDelivery
from schemas.fields import json_text

T0 = datetime(2025, 3, 14, 9, 26, 53, 589793, tzinfo=UTC)
TENANT = "acme"
AGENT = "support-bot"
CUSTOMER = "cust-0042"
SESSION = "sess-7f3a"
TURN = "turn-000123"
SESSION_KEY = f"{TENANT}:whatsapp:+15551234567"


def _at(milliseconds: int) -> datetime:
    return T0 + timedelta(milliseconds=milliseconds)


def turn_input() -> TurnInput:
    return TurnInput(
        tenant_id=TENANT,
        agent_id=AGENT,
        channel=Channel.WHATSAPP,
        channel_id="+15551234567",
        customer_id=CUSTOMER,
        session_id=SESSION,
        message="Hi, my order #A-1009 hasn't arrived. Can I get a refund? My email is jo@ex.com",
        metadata={"locale": "en-US", "gateway_message_id": "wamid.HBgL"},
    )


def session_state() -> SessionState:
    return SessionState(
        session_id=SESSION,
        tenant_id=TENANT,
        agent_id=AGENT,
        customer_id=CUSTOMER,
        turn_count=3,
        recent_messages=[
            SessionMessage(
                role=MessageRole.CUSTOMER,
                text="Where is my order?",
                turn_id="turn-000121",
                at=_at(-60_000),
            ),
            SessionMessage(
                role=MessageRole.AGENT,
                text="Could you give me the order number?",
                turn_id="turn-000121",
                at=_at(-59_000),
            ),
        ],
        scenarios=[
            ActiveScenario(
                scenario_id="refund-request",
                scenario_version=2,
                current_step_id="collect-order",
                status=ScenarioStatus.ACTIVE,
                completed_step_ids=["greet"],
                skipped_step_ids=["collect-email"],
            )
        ],
        rule_fires={"rule-verify-identity": RuleFires(fire_count=1, last_fired_turn=2)},
        pack_version=7,
        last_turn_id="turn-000122",
        updated_at=_at(-58_000),
        variables={
            "asked_for_human": VariableEntry(
                value="false",
                type=VariableType.BOOLEAN,
                scope=VariableScope.SESSION,
                source=VariableSource.INFERENCE,
                confidence=0.6,
                last_updated_at=_at(-58_000),
            )
        },
    )


def customer_data() -> CustomerDataStore:
    return CustomerDataStore(
        tenant_id=TENANT,
        customer_id=CUSTOMER,
        variables={
            "email": VariableEntry(
                value=json_text("jo@ex.com"),
                type=VariableType.STRING,
                scope=VariableScope.IDENTITY,
                source=VariableSource.USER,
                confidence=0.98,
                last_updated_at=_at(5),
                history=[
                    VariableChange(
                        value=json_text("jo@old.example"),
                        source=VariableSource.TOOL,
                        at=_at(-86_400_000),
                        turn_id="turn-000010",
                    )
                ],
            ),
        },
        updated_at=_at(5),
    )


def snapshot() -> SituationalSnapshot:
    return SituationalSnapshot(
        language="en",
        intent_changed=True,
        new_intent_label="refund_request",
        new_intent_text="The customer wants a refund for a late order",
        topic_changed=False,
        tone="annoyed",
        frustration_level=FrustrationLevel.MEDIUM,
        situation_facts=["order A-1009 is late", "customer asks for a refund"],
        candidate_variables={
            "order_number": CandidateVariable(
                value=json_text("A-1009"), scope=VariableScope.CASE, is_update=False
            ),
        },
    )


def rule_selection() -> RetrievalSelection:
    return RetrievalSelection(
        retrieval_type=RetrievalType.RULES,
        candidates=[
            RetrievalCandidate(
                item_id="rule-refund-window",
                vector_score=0.82,
                lexical_score=3.1,
                fused_score=0.031,
                rerank_score=4.2,
            ),
            RetrievalCandidate(item_id="rule-tone", fused_score=0.016),
        ],
        selected_ids=["rule-refund-window"],
        strategy=SelectionStrategy.ADAPTIVE_K,
        latency_ms=7.5,
    )


def turn_context() -> TurnContext:
    contribution = ScenarioContribution(
        scenario_id="refund-request",
        step_id="confirm-refund",
        kind=ContributionKind.CONFIRM,
        template_id="tpl-confirm-refund",
        text="Confirm the refund of order {order_number}",
        field_keys=["order_number"],
    )
    return TurnContext(
        input=turn_input(),
        received_at=T0,
        coalesced_turn_ids=["turn-000124"],
        pack_version=7,
        session=session_state(),
        customer_data=customer_data(),
        snapshot=snapshot(),
        canonical_intent="refund_request",
        retrievals=[rule_selection()],
        retrieval_gaps=[
            RetrievalGap(
                retrieval_type=RetrievalType.MEMORIES,
                reason=GapReason.TIMEOUT,
                detail="no result within 500 ms",
            )
        ],
        applied_rules=[
            AppliedRule(rule_id="rule-refund-window", score=0.031, verdict=RuleVerdict.APPLIES),
            AppliedRule(
                rule_id="rule-verify-identity",
                score=0.0,
                verdict=RuleVerdict.UNSURE,
                via_relationship=RelationshipKind.DEPENDS_ON,
                via_rule_id="rule-refund-window",
            ),
        ],
        scenario_decisions=[
            ScenarioDecision(
                scenario_id="refund-request",
                scenario_version=2,
                action=ScenarioAction.CONTINUE,
                from_step_id="collect-order",
                entered_step_id="confirm-refund",
                skipped_step_ids=["collect-email"],
                contribution=contribution,
            )
        ],
        dialogue=DialogueReading(
            kind=ReadingKind.ANSWER,
            scenario_id="refund-request",
            step_id="collect-order",
            fields=["order_id"],
            affirmed=True,
            intent="refund_request",
            intent_confidence=0.44,
            evidence=[
                ScenarioEvidence(
                    scenario_id="refund-request",
                    score=0.71,
                    retrieval=0.47,
                    intent=0.44,
                    fill=0.1,
                    filled_fields=["refund_reason"],
                    informational=True,
                )
            ],
        ),
        tool_calls=[
            ToolCall(
                tool="orders.lookup",
                input=json_text({"order": "A-1009"}),
                output=json_text({"status": "in_transit", "eta": "2025-03-16"}),
                success=True,
                latency_ms=42.0,
                attempts=1,
            ),
            ToolCall(
                tool="refunds.eligibility",
                input=json_text({"order": "A-1009"}),
                success=False,
                error="timeout after 5000 ms",
                latency_ms=5000.0,
                attempts=3,
            ),
        ],
        plan=ResponsePlan(
            response_type=ResponseType.MIXED,
            contributions=[contribution],
            templates=[
                PlannedTemplate(
                    template_id="tpl-confirm-refund",
                    text="Shall I refund order {order_number}?",
                )
            ],
            must_include=["the refund takes 5 to 7 business days"],
            must_avoid=["promising a delivery date"],
        ),
        response_text="Sorry for the delay. Shall I refund order A-1009? It takes 5-7 days.",
        outcome=TurnOutcome(
            categories=[OutcomeCategory.SYSTEM_ERROR], resolution=Resolution.PARTIAL
        ),
        enforcement=[
            EnforcementResult(
                attempt=1,
                passed=False,
                violations=[
                    Violation(
                        rule_id="rule-no-dates",
                        lane=EnforcementLane.EXPRESSION,
                        detail="answer mentions a delivery date",
                    )
                ],
                judgements=[
                    RuleJudgement(
                        rule_id="rule-polite", verdict=JudgeVerdict.PASSED, reason="polite"
                    ),
                    RuleJudgement(rule_id="rule-no-legal", verdict=JudgeVerdict.NOT_EVALUATED),
                ],
                remediated=True,
            ),
            EnforcementResult(attempt=2, passed=True, fallback_used=False),
        ],
        token_usage=[
            TokenUsage(
                phase=Phase.GENERATION,
                model="gpt-4o-mini",
                prompt_tokens=1234,
                completion_tokens=87,
            )
        ],
        llm_calls=[
            LlmCall(
                phase=Phase.GENERATION,
                task="answer",
                key="5f2b" * 16,
                model="gpt-4o-mini",
                output=json_text({"answer": "Your order ships tomorrow."}),
                attempts=2,
                usage=[
                    TokenUsage(
                        phase=Phase.GENERATION,
                        model="gpt-4o-mini",
                        prompt_tokens=1234,
                        completion_tokens=87,
                    )
                ],
            ),
            LlmCall(
                phase=Phase.SENSOR,
                task="snapshot",
                key="9c1d" * 16,
                error="sensor: APITimeoutError after 3 attempts",
            ),
        ],
        timings_ms={"identification": 3.2, "retrieval.embedding": 11.0, "generation": 640.5},
        errors=[TurnError(phase=Phase.TOOLS, code="tool_timeout", message="refunds.eligibility")],
    )


def turn_record() -> TurnRecord:
    return TurnRecord(
        turn_id=TURN,
        tenant_id=TENANT,
        agent_id=AGENT,
        customer_id=CUSTOMER,
        session_id=SESSION,
        completed_at=_at(900),
        context=turn_context(),
    )


def sample_events() -> list[BaseModel]:
    """At least one instance of every model in :data:`~schemas.registry.EVENT_MODELS`."""
    outcome = TurnOutcome(resolution=Resolution.RESOLVED)
    return [
        TurnRequested(turn_id=TURN, input=turn_input(), sent_at=T0),
        TurnEnvelope(
            turn_id=TURN,
            session_key=SESSION_KEY,
            phase=Phase.GENERATION,
            attempt=2,
            context=turn_context(),
            emitted_at=_at(850),
        ),
        RetrievalRequested(
            turn_id=TURN,
            session_key=SESSION_KEY,
            tenant_id=TENANT,
            agent_id=AGENT,
            customer_id=CUSTOMER,
            pack_version=7,
            retrieval_type=RetrievalType.RULES,
            query_text="refund for a late order A-1009",
            embedding=[((i * 37) % 101 - 50) / 50.0 for i in range(384)],
            lexical_terms=["refund", "late", "order"],
            deadline=_at(520),
        ),
        RetrievalResult(
            turn_id=TURN, session_key=SESSION_KEY, selection=rule_selection(), completed_at=_at(30)
        ),
        RetrievalResult(
            turn_id=TURN,
            session_key=SESSION_KEY,
            selection=RetrievalSelection(
                retrieval_type=RetrievalType.INTENTS,
                strategy=SelectionStrategy.FIXED_K,
                latency_ms=1.0,
            ),
            error=TurnError(
                phase=Phase.RETRIEVAL, code="vector_store_unavailable", message="qdrant down"
            ),
            completed_at=_at(31),
        ),
        TurnResponse(
            turn_id=TURN,
            session_id=SESSION,
            tenant_id=TENANT,
            agent_id=AGENT,
            channel=Channel.WHATSAPP,
            channel_id="+15551234567",
            status=ResponseStatus.OK,
            text="Shall I refund order A-1009?",
            outcome=outcome,
            timings_ms={"total": 880.0},
            responded_at=_at(880),
            coalesced_turn_ids=["turn-000124"],
        ),
        TurnResponse(
            turn_id="turn-000125",
            tenant_id=TENANT,
            agent_id=AGENT,
            channel=Channel.WEBCHAT,
            channel_id="visitor-9",
            status=ResponseStatus.ERROR,
            error=TurnError(
                phase=Phase.IDENTIFICATION, code="unknown_agent", message="no agent 'x'"
            ),
            responded_at=_at(2),
        ),
        CompletedTurn(session_key=SESSION_KEY, record=turn_record(), emitted_at=_at(901)),
        AnalyticsEvent(
            event_id=f"{TURN}:rule_matched:0",
            tenant_id=TENANT,
            turn_id=TURN,
            event_type="rule_matched",
            at=_at(400),
            attributes={"rule_id": json_text("rule-refund-window"), "score": json_text(0.031)},
        ),
        WebhookDelivery(
            delivery_id="dlv-1",
            subscription_id="sub-crm",
            tenant_id=TENANT,
            event_type="turn_completed",
            url="https://crm.example.com/hooks/turns",
            payload=json_text({"turn_id": TURN, "resolution": "PARTIAL"}),
            attempt=2,
            status=DeliveryStatus.RETRYING,
            http_status=503,
            error="service unavailable",
            at=_at(2_000),
        ),
        DeadLetter(
            source_topic="turnstream.turn.requested",
            partition=3,
            offset=1_234_567,
            key=SESSION_KEY.encode(),
            reason="bad_marker",
            detail="starts with 7b22",
            original=b'{"not": "avro"}',
            at=_at(1),
            original_size=15,
            original_sha256=hashlib.sha256(b'{"not": "avro"}').hexdigest(),
        ),
        PackPublished(
            tenant_id=TENANT,
            agent_id=AGENT,
            version=7,
            content_hash="0" * 63 + "a",
            pack_json=json_text({"agent": AGENT, "rules": [{"id": "rule-refund-window"}]}),
            published_at=_at(-3_600_000),
        ),
        session_state(),
        customer_data(),
        SessionGate(
            customer_id=CUSTOMER,
            sessions={AGENT: SESSION},
            in_flight=TurnRequested(turn_id=TURN, input=turn_input(), sent_at=T0),
            in_flight_coalesced=["turn-000124"],
            in_flight_later=[
                TurnRequested(turn_id="turn-000124", input=turn_input(), sent_at=_at(40))
            ],
            in_flight_since=_at(3),
            waiting=[TurnRequested(turn_id="turn-000125", input=turn_input(), sent_at=_at(50))],
        ),
        SeenTurn(at=_at(2)),
        RetrievalJoin(
            turn_id=TURN,
            envelope=TurnEnvelope(
                turn_id=TURN,
                session_key=SESSION_KEY,
                phase=Phase.CUSTOMER_DATA,
                context=turn_context(),
                emitted_at=_at(20),
            ),
            results=[
                RetrievalResult(
                    turn_id=TURN,
                    session_key=SESSION_KEY,
                    selection=rule_selection(),
                    completed_at=_at(30),
                )
            ],
            deadline=_at(520),
            done=True,
        ),
    ]
