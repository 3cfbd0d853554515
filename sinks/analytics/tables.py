"""The ClickHouse tables of the analytics sink: one definition serves the DDL and the rows.

Every table is a ``ReplacingMergeTree`` whose sorting key is the row's *natural key* (tenant,
turn id, the item's position or id within the turn and, last, the session: a turn id is unique
within its session, not across a tenant, migration 4), partitioned by a month derived from
the row itself. A replayed record therefore yields rows with the same key in the same
partition, which ClickHouse collapses on merge; queries that must not see a not-yet-merged
duplicate read the table with ``FINAL`` (every analyst view does).

Columns hold no secrets: webhook URLs lose their user info and query string, dead letters keep
the size and hash of the original bytes, not the bytes, and message and answer texts are kept
only when ``TURNSTREAM_ANALYTICS__STORE_TEXTS`` is true. Nor do they hold a customer's
address: ``turns.session_key`` is a keyed pseudonym of the session key (migration 3), and
texts are masked (``sinks.analytics.privacy``).
"""

from __future__ import annotations

from dataclasses import dataclass

TIME = "DateTime64(3, 'UTC')"
LC = "LowCardinality(String)"


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[tuple[str, str], ...]
    order_by: tuple[str, ...]
    partition_by: str
    doc: str

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    def ddl(self, database: str) -> str:
        cols = ",\n    ".join(f"`{name}` {ctype}" for name, ctype in self.columns)
        return (
            f"CREATE TABLE IF NOT EXISTS `{database}`.`{self.name}` (\n    {cols}\n)\n"
            f"ENGINE = ReplacingMergeTree\nPARTITION BY {self.partition_by}\n"
            f"ORDER BY ({', '.join(self.order_by)})\n"
            f"COMMENT '{self.doc}'"
        )


SESSION_KEY_COMMENT = (
    "sk_ + 32 hex of HMAC-SHA256(pseudonym key, session key): one value per tenant, channel "
    "and address, not reversible without the key; empty in rows written before migration 3"
)
SESSION_REF = "session_ref"
SESSION_REF_COMMENT = (
    "the pseudonym of the session key (as turns.session_key), last in the sorting key: the same "
    "turn id in two sessions is two turns; empty in rows written before migration 4"
)


def _turn_table(name: str, doc: str, *columns: tuple[str, str], key: tuple[str, ...]) -> Table:
    """A per-turn table: it starts with who and when, and its key starts with the turn and
    ends with the session."""
    head = (
        ("tenant_id", LC),
        ("agent_id", LC),
        ("turn_id", "String"),
        ("completed_at", TIME),
        (SESSION_REF, "String"),
    )
    order_by = ("tenant_id", "turn_id", *key, SESSION_REF)
    return Table(name, head + columns, order_by, "toYYYYMM(completed_at)", doc)


TURNS = _turn_table(
    "turns",
    "One row per answered turn",
    ("session_id", "String"),
    ("customer_id", "String"),
    ("session_key", "String"),
    ("channel", LC),
    ("pack_version", "Nullable(UInt64)"),
    ("received_at", TIME),
    ("total_ms", "Float64"),
    ("messages", "UInt32"),
    ("language", LC),
    ("canonical_intent", "String"),
    ("sensor_intent", "String"),
    ("frustration", LC),
    ("response_type", LC),
    ("resolution", LC),
    ("categories", "Array(LowCardinality(String))"),
    ("rules_applied", "UInt32"),
    ("tool_calls", "UInt32"),
    ("tool_errors", "UInt32"),
    ("enforcement_attempts", "UInt32"),
    ("enforcement_passed", "UInt8"),
    ("fallback_used", "UInt8"),
    ("prompt_tokens", "UInt64"),
    ("completion_tokens", "UInt64"),
    ("error_codes", "Array(String)"),
    ("retrieval_gaps", "Array(String)"),
    ("message_text", "String"),
    ("response_text", "String"),
    key=(),
)
PHASE_TIMINGS = _turn_table(
    "phase_timings",
    "One row per timing key of a turn (phase or phase.step)",
    ("phase", LC),
    ("timing_key", LC),
    ("ms", "Float64"),
    key=("timing_key",),
)
RETRIEVAL_RESULTS = _turn_table(
    "retrieval_results",
    "Every retrieval candidate of a turn, with its scores and whether it was selected",
    ("retrieval_type", LC),
    ("item_id", "String"),
    ("rank", "UInt16"),
    ("vector_score", "Nullable(Float64)"),
    ("lexical_score", "Nullable(Float64)"),
    ("fused_score", "Float64"),
    ("rerank_score", "Nullable(Float64)"),
    ("selected", "UInt8"),
    ("strategy", LC),
    ("latency_ms", "Float64"),
    key=("retrieval_type", "item_id"),
)
RULE_MATCHES = _turn_table(
    "rule_matches",
    "Rules applied to a turn (P5), with how they were found",
    ("rule_id", "String"),
    ("score", "Float64"),
    ("verdict", LC),
    ("via_relationship", LC),
    ("via_rule_id", "String"),
    ("retrieved", "UInt8"),
    key=("rule_id",),
)
SCENARIO_EVENTS = _turn_table(
    "scenario_events",
    "Scenario transitions and steps entered or skipped (P6)",
    ("session_id", "String"),
    ("scenario_id", "String"),
    ("scenario_version", "UInt64"),
    ("seq", "UInt16"),
    ("event", LC),
    ("step_id", "String"),
    ("from_step_id", "String"),
    key=("scenario_id", "seq"),
)
TOOL_CALLS = _turn_table(
    "tool_calls",
    "Tool calls of a turn (P7) after their retries",
    ("seq", "UInt16"),
    ("tool", LC),
    ("success", "UInt8"),
    ("error", "String"),
    ("latency_ms", "Float64"),
    ("attempts", "UInt32"),
    key=("seq",),
)
ENFORCEMENT_RESULTS = _turn_table(
    "enforcement_results",
    "One row per enforcement attempt of a turn (P10)",
    ("attempt", "UInt32"),
    ("passed", "UInt8"),
    ("violations", "UInt32"),
    ("not_evaluated", "UInt32"),
    ("remediated", "UInt8"),
    ("fallback_used", "UInt8"),
    key=("attempt",),
)
ENFORCEMENT_VIOLATIONS = _turn_table(
    "enforcement_violations",
    "One row per violation, with what became of the answer",
    ("attempt", "UInt32"),
    ("seq", "UInt16"),
    ("rule_id", "String"),
    ("lane", LC),
    ("detail", "String"),
    ("remediation_outcome", LC),
    key=("attempt", "seq"),
)
OUTCOMES = _turn_table(
    "outcomes",
    "Resolution and outcome categories of a turn (P9)",
    ("resolution", LC),
    ("categories", "Array(LowCardinality(String))"),
    key=(),
)
DEAD_LETTERS = Table(
    "dead_letters",
    (
        ("tenant_id", LC),
        ("source_topic", LC),
        ("partition", "UInt32"),
        ("offset", "UInt64"),
        ("reason", LC),
        ("detail", "String"),
        ("original_size", "UInt64"),
        ("original_sha256", "String"),
        ("at", TIME),
    ),
    ("source_topic", "partition", "offset"),
    "toYYYYMM(at)",
    "Records the pipeline or this sink could not process; the bytes stay in Kafka",
)
WEBHOOK_DELIVERIES = Table(
    "webhook_deliveries",
    (
        ("tenant_id", LC),
        ("delivery_id", "String"),
        ("attempt", "UInt32"),
        ("subscription_id", "String"),
        ("event_type", LC),
        ("url", "String"),
        ("status", LC),
        ("http_status", "Nullable(UInt16)"),
        ("error", "String"),
        ("payload_size", "UInt32"),
        ("at", TIME),
    ),
    ("tenant_id", "delivery_id", "attempt"),
    "toYYYYMM(at)",
    "Every webhook delivery attempt",
)
ANALYTICS_EVENTS = Table(
    "analytics_events",
    (
        ("tenant_id", LC),
        ("event_id", "String"),
        ("turn_id", "String"),
        ("event_type", LC),
        ("at", TIME),
        ("attributes", "Map(String, String)"),
    ),
    ("tenant_id", "event_id"),
    "toYYYYMM(at)",
    "Fine-grained analytics events (attribute values are JSON)",
)

TURN_TABLES: tuple[Table, ...] = (
    TURNS,
    PHASE_TIMINGS,
    RETRIEVAL_RESULTS,
    RULE_MATCHES,
    SCENARIO_EVENTS,
    TOOL_CALLS,
    ENFORCEMENT_RESULTS,
    ENFORCEMENT_VIOLATIONS,
    OUTCOMES,
)
ALL_TABLES: tuple[Table, ...] = (*TURN_TABLES, DEAD_LETTERS, WEBHOOK_DELIVERIES, ANALYTICS_EVENTS)
TABLES_BY_NAME: dict[str, Table] = {table.name: table for table in ALL_TABLES}
