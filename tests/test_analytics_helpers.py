"""Shared helpers of the analytics and webhook tests: turn fixtures and the chdb location.

chdb runs one engine per process on one data directory at a time, so every in-process test
uses the same directory (:func:`chdb_dir`) and isolates itself with a database of its own.
Processes started by a test (the CLI, the service) use directories of their own.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer

from schemas.codec import encode
from schemas.domain.enforcement import EnforcementLane, EnforcementResult, Violation
from schemas.domain.outcome import OutcomeCategory, Resolution, TurnOutcome
from schemas.domain.plan import ResponsePlan, ResponseType
from schemas.domain.retrieval import (
    RetrievalCandidate,
    RetrievalSelection,
    RetrievalType,
    SelectionStrategy,
)
from schemas.domain.rules import AppliedRule, RelationshipKind, RuleVerdict
from schemas.domain.scenario import ScenarioAction, ScenarioDecision
from schemas.domain.snapshot import FrustrationLevel, SituationalSnapshot
from schemas.domain.tools import ToolCall
from schemas.domain.turn_context import TurnContext
from schemas.domain.turn_input import Channel, TurnInput
from schemas.domain.turn_record import TurnRecord
from schemas.events.completed_turn import CompletedTurn
from schemas.fields import json_text
from sinks.analytics.store import AnalyticsStore
from streams.kafka_clients import producer_kwargs
from streams.settings import Settings, load_settings
from streams.topics import TURN_COMPLETED

DAY1 = datetime(2025, 6, 2, 10, 0, tzinfo=UTC)
DAY2 = datetime(2025, 6, 3, 10, 0, tzinfo=UTC)

_CHDB_DIR: Path | None = None


def chdb_dir() -> Path:
    """The one embedded data directory of this test process."""
    global _CHDB_DIR
    if _CHDB_DIR is None:
        _CHDB_DIR = Path(tempfile.mkdtemp(prefix="turnstream-chdb-"))
        atexit.register(shutil.rmtree, _CHDB_DIR, True)
    return _CHDB_DIR


def analytics_settings(base: Settings | None = None, **analytics: Any) -> Settings:
    """Settings on :func:`chdb_dir` with a fresh database (and no query endpoint)."""
    settings = base or load_settings()
    cfg = settings.analytics.model_copy(
        update={
            "chdb_path": chdb_dir(),
            "database": f"t_{uuid.uuid4().hex[:12]}",
            "query_port": 0,
            **analytics,
        }
    )
    return settings.model_copy(update={"analytics": cfg, "clickhouse_url": None})


def open_store(settings: Settings) -> AnalyticsStore:
    return AnalyticsStore.open(settings)


def tool(name: str, ms: float, *, ok: bool = True, attempts: int = 1) -> ToolCall:
    return ToolCall(
        tool=name,
        input=json_text({"q": name}),
        output=json_text({"ok": True}) if ok else None,
        success=ok,
        error=None if ok else "timeout",
        latency_ms=ms,
        attempts=attempts,
    )


def attempt(
    n: int,
    violations: Sequence[tuple[str, EnforcementLane]] = (),
    *,
    remediated: bool = False,
    fallback: bool = False,
) -> EnforcementResult:
    found = [Violation(rule_id=r, lane=lane, detail=f"{r} broken") for r, lane in violations]
    return EnforcementResult(
        attempt=n,
        passed=not found,
        violations=found,
        remediated=remediated,
        fallback_used=fallback,
    )


def rules_selection(selected: list[str], also: Sequence[str] = ()) -> RetrievalSelection:
    candidates = [
        RetrievalCandidate(item_id=rid, vector_score=0.8, lexical_score=1.0, fused_score=0.5)
        for rid in [*selected, *also]
    ]
    return RetrievalSelection(
        retrieval_type=RetrievalType.RULES,
        candidates=candidates,
        selected_ids=selected,
        strategy=SelectionStrategy.ADAPTIVE_K,
        latency_ms=3.0,
    )


def applied(rule_id: str, via: str | None = None) -> AppliedRule:
    return AppliedRule(
        rule_id=rule_id,
        score=0.5,
        verdict=RuleVerdict.APPLIES,
        via_relationship=RelationshipKind.IMPLIES if via else None,
        via_rule_id=via,
    )


def decision(
    action: ScenarioAction,
    entered: str | None = None,
    *,
    scenario: str = "returns",
    from_step: str | None = None,
    skipped: Sequence[str] = (),
) -> ScenarioDecision:
    return ScenarioDecision(
        scenario_id=scenario,
        scenario_version=1,
        action=action,
        from_step_id=from_step,
        entered_step_id=entered,
        skipped_step_ids=list(skipped),
    )


def make_turn(
    turn_id: str,
    *,
    tenant: str = "t1",
    agent: str = "a1",
    session: str = "s-1",
    at: datetime = DAY1,
    total_ms: float = 500.0,
    intent: str | None = "refund",
    timings: dict[str, float] | None = None,
    retrievals: Sequence[RetrievalSelection] = (),
    rules: Sequence[AppliedRule] = (),
    decisions: Sequence[ScenarioDecision] = (),
    tools: Sequence[ToolCall] = (),
    enforcement: Sequence[EnforcementResult] = (),
    resolution: Resolution | None = Resolution.RESOLVED,
    categories: Sequence[OutcomeCategory] = (),
    response_type: ResponseType = ResponseType.ANSWER,
    message: str = "Where is my parcel?",
) -> CompletedTurn:
    """A completed turn with the given parts; received ``total_ms`` before ``at``."""
    given = TurnInput(
        tenant_id=tenant,
        agent_id=agent,
        channel=Channel.WEBCHAT,
        channel_id=f"visitor-{session}",
        customer_id=f"c-{session}",
        session_id=session,
        message=message,
    )
    ctx = TurnContext(
        input=given,
        received_at=at - timedelta(milliseconds=total_ms),
        pack_version=3,
        snapshot=SituationalSnapshot(
            language="en",
            intent_changed=False,
            new_intent_label=intent,
            topic_changed=False,
            tone="neutral",
            frustration_level=FrustrationLevel.LOW,
        ),
        canonical_intent=intent,
        retrievals=list(retrievals),
        applied_rules=list(rules),
        scenario_decisions=list(decisions),
        tool_calls=list(tools),
        plan=ResponsePlan(response_type=response_type),
        response_text="Here you go.",
        outcome=None
        if resolution is None
        else TurnOutcome(resolution=resolution, categories=list(categories)),
        enforcement=list(enforcement),
        timings_ms=timings or {"generation": 100.0},
    )
    record = TurnRecord(
        turn_id=turn_id,
        tenant_id=tenant,
        agent_id=agent,
        customer_id=f"c-{session}",
        session_id=session,
        completed_at=at,
        context=ctx,
    )
    return CompletedTurn(
        session_key=given.session_key, record=record, emitted_at=at + timedelta(milliseconds=1)
    )


def varied_turns(count: int, *, tenant: str = "t1", prefix: str = "turn") -> list[CompletedTurn]:
    """``count`` turns with every part populated in varying amounts (for load tests)."""
    turns = []
    for i in range(count):
        rule = f"r{i % 5}"
        expanded = [applied("r9", via=rule)] if i % 4 == 0 else []
        checks = (
            [attempt(1, [("r9", EnforcementLane.EXPRESSION)], remediated=True), attempt(2)]
            if i % 3 == 0
            else [attempt(1)]
        )
        turns.append(
            make_turn(
                f"{prefix}-{i:05d}",
                tenant=tenant,
                agent=f"a{i % 2}",
                session=f"s-{i % 7}",
                at=DAY1 + timedelta(minutes=i),
                total_ms=100.0 + i,
                intent=("refund", "shipping", None)[i % 3],
                timings={"retrieval": 5.0 + i % 4, "generation": 50.0 + i, "retrieval.rules": 1.0},
                retrievals=[rules_selection([rule], [f"r{(i + 1) % 5}"])],
                rules=[applied(rule), *expanded],
                decisions=[
                    decision(ScenarioAction.CONTINUE, f"step{i % 3}", skipped=["skip"] * (i % 2))
                ],
                tools=[tool("lookup", 10.0 + i, ok=i % 5 != 0)] * (1 + i % 2),
                enforcement=checks,
                resolution=(Resolution.RESOLVED, Resolution.PARTIAL)[i % 2],
                categories=[OutcomeCategory.KNOWLEDGE_GAP] if i % 6 == 0 else [],
            )
        )
    return turns


async def produce(settings: Settings, records: list[tuple[str, bytes | None, bytes]]) -> None:
    """Publish (topic, key, value) records, each acknowledged before the next."""
    producer = AIOKafkaProducer(**producer_kwargs(settings))
    await producer.start()
    try:
        for topic, key, value in records:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def publish_completed(settings: Settings, turns: Sequence[CompletedTurn]) -> None:
    """The turns on ``turn.completed``, keyed by session, as the session agent writes them."""
    topic = TURN_COMPLETED.name(settings.topic_prefix)
    await produce(settings, [(topic, t.session_key.encode(), encode(t)) for t in turns])
