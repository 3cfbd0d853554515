"""The analyst views on a known set of turns: every figure asserted, replays included.

Tenant t1 (agent a1) has four turns, tenant t2 one; the rows are written three times over
(a replayed stream) and the views, which read the tables with FINAL, still count each once.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from schemas.domain.enforcement import EnforcementLane
from schemas.domain.outcome import OutcomeCategory, Resolution
from schemas.domain.scenario import ScenarioAction
from schemas.events.dead_letter import DeadLetter
from schemas.events.webhook import DeliveryStatus, WebhookDelivery
from schemas.fields import json_text
from sinks.analytics import rows, tables
from sinks.analytics.migrations import MIGRATIONS, apply_migrations
from sinks.analytics.store import AnalyticsStore, open_client
from tests.test_analytics_helpers import (
    DAY1,
    DAY2,
    analytics_settings,
    applied,
    attempt,
    decision,
    make_turn,
    open_store,
    rules_selection,
    tool,
)

EXPR, JUDGE = EnforcementLane.EXPRESSION, EnforcementLane.LLM_JUDGE

TURNS = [
    make_turn(
        "T1",
        session="sA",
        at=DAY1,
        total_ms=500,
        intent="refund",
        timings={"retrieval": 10, "generation": 100},
        retrievals=[rules_selection(["r1", "r2"], ["r5"])],
        rules=[applied("r1")],
        decisions=[decision(ScenarioAction.START, "s1")],
        tools=[tool("lookup", 40)],
        enforcement=[attempt(1)],
        resolution=Resolution.RESOLVED,
    ),
    make_turn(
        "T2",
        session="sA",
        at=DAY1 + timedelta(hours=1),
        total_ms=1000,
        intent="refund",
        timings={"retrieval": 20, "generation": 300},
        retrievals=[rules_selection(["r1"])],
        rules=[applied("r1"), applied("r3", via="r1")],
        decisions=[
            decision(ScenarioAction.CONTINUE, "s3", from_step="s1", skipped=["s2"]),
        ],
        tools=[tool("lookup", 5000, ok=False, attempts=2), tool("lookup", 60)],
        enforcement=[attempt(1, [("r9", EXPR)], remediated=True), attempt(2)],
        resolution=Resolution.PARTIAL,
        categories=[OutcomeCategory.KNOWLEDGE_GAP],
    ),
    make_turn(
        "T3",
        session="sB",
        at=DAY1 + timedelta(hours=2),
        total_ms=1500,
        intent=None,
        timings={"retrieval": 30, "generation": 200},
        decisions=[decision(ScenarioAction.START, "s1")],
        enforcement=[
            attempt(1, [("r9", EXPR)], remediated=True),
            attempt(2, [("r8", JUDGE)], fallback=True),
        ],
        resolution=Resolution.UNRESOLVED,
        categories=[OutcomeCategory.POLICY_RESTRICTION, OutcomeCategory.KNOWLEDGE_GAP],
    ),
    make_turn(
        "T4",
        session="sA",
        at=DAY2,
        total_ms=700,
        intent="shipping",
        timings={"retrieval": 40},
        decisions=[decision(ScenarioAction.COMPLETE, from_step="s3")],
        enforcement=[attempt(1, [("r7", EXPR)])],
        resolution=Resolution.RESOLVED,
    ),
    make_turn(
        "U1",
        tenant="t2",
        agent="b1",
        session="sZ",
        at=DAY1,
        total_ms=999,
        timings={"generation": 999},
        tools=[tool("lookup", 7)],
        resolution=Resolution.REDIRECTED,
    ),
]


def delivery(did: str, n: int, status: DeliveryStatus, tenant: str = "t1") -> WebhookDelivery:
    return WebhookDelivery(
        delivery_id=did,
        subscription_id="crm",
        tenant_id=tenant,
        event_type="turn_completed",
        url="https://user:pw@crm.example.com/hook?token=secret",
        payload=json_text({"n": n}),
        attempt=n,
        status=status,
        http_status=200 if status is DeliveryStatus.DELIVERED else 503,
        at=DAY1 + timedelta(seconds=n),
    )


R, D, X = DeliveryStatus.RETRYING, DeliveryStatus.DELIVERED, DeliveryStatus.EXHAUSTED
DELIVERIES = [
    delivery("d1", 1, R),
    delivery("d1", 2, R),
    delivery("d1", 3, D),
    delivery("d2", 1, D),
    delivery("d3", 1, R),
    delivery("d3", 2, X),
]
DEAD = [
    DeadLetter(
        source_topic="ts.turn.requested",
        partition=0,
        offset=off,
        key=b"t1:webchat:v1",
        reason="bad_marker",
        detail="x",
        original=b"junk",
        at=DAY1,
    )
    for off in (5, 6)
]


@pytest.fixture(scope="module")
def store() -> Iterator[AnalyticsStore]:
    store = open_store(analytics_settings())
    batch = rows.merge(
        [rows.completed_turn_rows(t) for t in TURNS]
        + [rows.webhook_delivery_rows(d) for d in DELIVERIES]
        + [rows.dead_letter_rows(d) for d in DEAD]
    )
    for _ in range(3):  # a replayed stream: every row three times
        store.write(batch)
    yield store
    store.close()


def view(
    store: AnalyticsStore, name: str, tenant: str = "t1", order: str = ""
) -> list[dict[str, Any]]:
    result = store.query(
        f"SELECT * FROM {name} WHERE tenant_id = {{t:String}} {order}", {"t": tenant}
    )
    return [dict(zip(result.columns, row, strict=True)) for row in result.rows]


def pick(rows_: list[dict[str, Any]], *keys: str) -> list[tuple[Any, ...]]:
    return sorted(tuple(r[k] for k in keys) for r in rows_)


def test_replayed_rows_are_counted_once(store: AnalyticsStore) -> None:
    raw = store.query("SELECT count() FROM turns").rows[0][0]
    final = store.query("SELECT count() FROM turns FINAL").rows[0][0]
    assert raw in (5, 10, 15)  # merged or not yet: both fine
    assert final == 5


def test_phase_latency(store: AnalyticsStore) -> None:
    got = view(store, "v_phase_latency")
    by = {(str(r["day"]), r["phase"]): r for r in got}
    d1, d2 = str(DAY1.date()), str(DAY2.date())
    assert set(by) == {
        (d1, "retrieval"),
        (d1, "generation"),
        (d1, "turn"),
        (d2, "retrieval"),
        (d2, "turn"),
    }
    # linear interpolation between the closest ranks (quantileExactInclusive)
    assert pick([by[(d1, "retrieval")]], "turns", "p50_ms", "p95_ms", "p99_ms") == [
        (3, 20.0, 29.0, 29.8)
    ]
    assert pick([by[(d1, "generation")]], "turns", "p50_ms", "p95_ms", "p99_ms", "max_ms") == [
        (3, 200.0, 290.0, 298.0, 300.0)
    ]
    assert pick([by[(d1, "turn")]], "turns", "p50_ms", "p95_ms", "p99_ms") == [
        (3, 1000.0, 1450.0, 1490.0)
    ]
    assert pick([by[(d2, "retrieval")]], "turns", "p50_ms", "p99_ms") == [(1, 40.0, 40.0)]
    other = view(store, "v_phase_latency", tenant="t2")
    assert pick(other, "phase", "turns", "p50_ms") == [("generation", 1, 999.0), ("turn", 1, 999.0)]


def test_rule_hit_rate(store: AnalyticsStore) -> None:
    got = view(store, "v_rule_hit_rate")
    assert pick(
        got,
        "rule_id",
        "turns_retrieved",
        "turns_applied",
        "turns_via_relationship",
        "agent_turns",
        "hit_rate",
        "apply_rate",
    ) == [
        ("r1", 2, 2, 0, 4, 0.5, 1.0),
        ("r2", 1, 0, 0, 4, 0.0, 0.0),
        ("r3", 0, 1, 1, 4, 0.25, None),
    ]


def test_intent_heatmap(store: AnalyticsStore) -> None:
    got = view(store, "v_intent_heatmap")
    assert [
        (str(d), i, t, s, r, rr)
        for d, i, t, s, r, rr in pick(
            got, "day", "intent", "turns", "share_of_day", "resolved", "resolved_rate"
        )
    ] == [
        (str(DAY1.date()), "(none)", 1, 0.3333, 0, 0.0),
        (str(DAY1.date()), "refund", 2, 0.6667, 1, 0.5),
        (str(DAY2.date()), "shipping", 1, 1.0, 1, 1.0),
    ]


def test_scenario_funnel_and_summary(store: AnalyticsStore) -> None:
    funnel = view(store, "v_scenario_funnel")
    assert pick(
        funnel,
        "scenario_id",
        "step_id",
        "sessions_reached",
        "sessions_entered",
        "sessions_skipped",
        "dropped_here",
        "drop_off_rate",
    ) == [
        ("returns", "s1", 2, 2, 0, 1, 0.5),  # sB started and went no further
        ("returns", "s2", 1, 0, 1, 0, 0.0),
        ("returns", "s3", 1, 1, 0, 0, 0.0),  # sA's last step, but sA completed
    ]
    summary = view(store, "v_scenario_summary")
    assert pick(
        summary, "scenario_id", "sessions", "started", "completed", "cancelled", "completion_rate"
    ) == [("returns", 2, 2, 1, 0, 0.5)]


def test_enforcement_violations(store: AnalyticsStore) -> None:
    got = view(store, "v_enforcement_violations")
    assert pick(got, "rule_id", "lane", "remediation_outcome", "violations", "turns") == [
        ("r7", "EXPRESSION", "unremediated", 1, 1),
        ("r8", "LLM_JUDGE", "fallback", 1, 1),
        ("r9", "EXPRESSION", "fallback", 1, 1),
        ("r9", "EXPRESSION", "regenerated", 1, 1),
    ]


def test_resolution_and_outcome_category_rates(store: AnalyticsStore) -> None:
    assert pick(view(store, "v_resolution_rates"), "resolution", "turns", "rate") == [
        ("PARTIAL", 1, 0.25),
        ("RESOLVED", 2, 0.5),
        ("UNRESOLVED", 1, 0.25),
    ]
    assert pick(view(store, "v_outcome_category_rates"), "category", "turns", "rate") == [
        ("KNOWLEDGE_GAP", 2, 0.5),
        ("POLICY_RESTRICTION", 1, 0.25),
    ]
    assert pick(view(store, "v_resolution_rates", tenant="t2"), "resolution", "rate") == [
        ("REDIRECTED", 1.0)
    ]


def test_tool_stats(store: AnalyticsStore) -> None:
    got = view(store, "v_tool_stats")
    assert pick(
        got, "tool", "calls", "errors", "error_rate", "p50_ms", "p95_ms", "avg_attempts"
    ) == [("lookup", 3, 1, 0.3333, 60.0, 4506.0, 1.333)]


def test_webhook_delivery_success(store: AnalyticsStore) -> None:
    got = view(store, "v_webhook_delivery")
    assert pick(
        got,
        "subscription_id",
        "deliveries",
        "delivered",
        "exhausted",
        "attempts",
        "success_rate",
        "attempts_per_delivery",
    ) == [("crm", 3, 2, 1, 6, 0.6667, 2.0)]
    urls = store.query("SELECT DISTINCT url FROM webhook_deliveries").rows
    assert urls == [("https://crm.example.com/hook",)]  # no credentials, no query string


def test_dead_letters(store: AnalyticsStore) -> None:
    got = view(store, "v_dead_letters")
    assert pick(got, "source_topic", "reason", "records") == [
        ("ts.turn.requested", "bad_marker", 2)
    ]


def test_analyst_queries_cannot_write(store: AnalyticsStore) -> None:
    for sql in (
        "DROP TABLE turns",
        "INSERT INTO turns (turn_id) VALUES ('x')",
        "SELECT * FROM file('/etc/passwd', 'LineAsString')",
    ):
        with pytest.raises(Exception, match=r"(?i)readonly"):
            store.query(sql)
    assert store.query("SELECT count() FROM turns FINAL").rows == [(5,)]


def test_migrations_are_recorded_and_applied_once(store: AnalyticsStore) -> None:
    assert apply_migrations(store, store.database) == []
    versions = store.query("SELECT version FROM schema_migrations FINAL ORDER BY version").rows
    assert [v for (v,) in versions] == [m.version for m in MIGRATIONS]


def test_migration_3_blanks_the_raw_session_keys_written_before_it() -> None:
    """A database written by a release whose turns.session_key held tenant:channel:address:
    migration 3 empties those values and leaves pseudonyms alone."""
    settings = analytics_settings()
    database = settings.analytics.database
    store = AnalyticsStore(open_client(settings), database, location="chdb")
    try:
        assert apply_migrations(store, database, MIGRATIONS[:2]) == [1, 2]
        store.client.database = database
        old, new = make_turn("OLD", session="sOld"), make_turn("NEW", session="sNew")
        raw = list(rows.completed_turn_rows(old).rows["turns"][0])
        column = tables.TURNS.column_names.index("session_key")
        raw[column] = old.session_key  # as the old release wrote it
        store.insert_rows(f"{database}.turns", [tuple(raw)], tables.TURNS.column_names)
        store.write(rows.completed_turn_rows(new))
        assert old.session_key == "t1:webchat:visitor-sOld"

        assert apply_migrations(store, database, MIGRATIONS[:3]) == [3]
        keys = dict(store.query("SELECT turn_id, session_key FROM turns FINAL").rows)
        assert keys["OLD"] == ""
        assert keys["NEW"] == rows.completed_turn_rows(new).rows["turns"][0][column]
        assert str(keys["NEW"]).startswith("sk_")
        comment = store.query(
            "SELECT comment FROM system.columns WHERE database = {d:String} "
            "AND table = 'turns' AND name = 'session_key'",
            {"d": database},
        ).rows
        assert comment and "HMAC-SHA256" in str(comment[0][0])
    finally:
        store.close()
