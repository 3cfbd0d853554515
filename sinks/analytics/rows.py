"""Row builders: from events to the rows of :mod:`sinks.analytics.tables`.

Pure functions, no I/O. Every row is a tuple in its table's column order; a
:class:`RowBatch` gathers them per table so the writer inserts one block per table. Row
values depend only on the event (and the sink's pseudonym key and the pack's sensitive
fields), never on when it is processed, so a replay yields equal rows with equal keys (see
the tables' module docstring).

What identifies a customer is not stored as it is (:mod:`sinks.analytics.privacy`): the
session key (``tenant:channel:channel_id``, the channel id being an email address or a phone
number on some channels) becomes a keyed pseudonym, and texts are masked: message and answer
(only with ``store_texts``, and only when the pack's sensitive fields are known), tool
errors, violation details and dead-letter details.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from schemas.domain.enforcement import EnforcementResult, JudgeVerdict
from schemas.domain.retrieval import RetrievalType
from schemas.domain.scenario import ScenarioAction
from schemas.domain.turn_record import TurnRecord
from schemas.events.analytics import AnalyticsEvent
from schemas.events.completed_turn import CompletedTurn
from schemas.events.dead_letter import DeadLetter
from schemas.events.webhook import WebhookDelivery
from sinks.analytics import tables
from sinks.analytics.privacy import PROCESS_PSEUDONYMS, Pseudonyms, address_masker, turn_masker

Row = tuple[Any, ...]

SCENARIO_EVENT = {
    ScenarioAction.START: "started",
    ScenarioAction.CONTINUE: "continued",
    ScenarioAction.PAUSE: "paused",
    ScenarioAction.COMPLETE: "completed",
    ScenarioAction.CANCEL: "cancelled",
}
STEP_ENTERED = "step_entered"
STEP_SKIPPED = "step_skipped"

REGENERATED = "regenerated"
"""A violation whose turn passed on a later attempt."""
FALLBACK = "fallback"
"""A violation that no attempt fixed: the fallback template answered instead."""
UNREMEDIATED = "unremediated"
"""A violation that neither a later attempt nor a fallback fixed."""


@dataclass
class RowBatch:
    """Rows per table name, in insertion order; ``len()`` counts rows of every table."""

    rows: dict[str, list[Row]] = field(default_factory=dict)

    def add(self, table: tables.Table, row: Row) -> None:
        if len(row) != len(table.columns):
            raise ValueError(f"{table.name}: {len(row)} values for {len(table.columns)} columns")
        self.rows.setdefault(table.name, []).append(row)

    def extend(self, other: RowBatch) -> None:
        for name, rows in other.rows.items():
            self.rows.setdefault(name, []).extend(rows)

    def __len__(self) -> int:
        return sum(len(rows) for rows in self.rows.values())

    def counts(self) -> dict[str, int]:
        return {name: len(rows) for name, rows in self.rows.items()}


def _remediation_outcome(attempts: list[EnforcementResult], attempt: int) -> str:
    if any(later.passed for later in attempts if later.attempt > attempt):
        return REGENERATED
    if any(result.fallback_used for result in attempts):
        return FALLBACK
    return UNREMEDIATED


def turn_rows(
    record: TurnRecord,
    session_key: str = "",
    *,
    store_texts: bool = False,
    sensitive_fields: Collection[str] | None = None,
    pseudonyms: Pseudonyms = PROCESS_PSEUDONYMS,
) -> RowBatch:
    """The rows of one answered turn in every per-turn table.

    ``sensitive_fields``: the keys of the customer-data fields the turn's pack marks
    ``sensitive`` (None: the pack is not known, so message and answer are not stored even
    with ``store_texts``); ``pseudonyms`` turns the session key into ``turns.session_key``."""
    ctx = record.context
    mask = turn_masker(record, sensitive_fields)
    keep_texts = store_texts and sensitive_fields is not None
    session_ref = pseudonyms.session_key(session_key or ctx.input.session_key)
    head = (record.tenant_id, record.agent_id, record.turn_id, record.completed_at, session_ref)
    batch = RowBatch()

    attempts = sorted(ctx.enforcement, key=lambda result: result.attempt)
    final = attempts[-1] if attempts else None
    failed_tools = sum(1 for call in ctx.tool_calls if not call.success)
    outcome = ctx.outcome
    categories = [str(c) for c in outcome.categories] if outcome else []
    snapshot = ctx.snapshot
    batch.add(
        tables.TURNS,
        (
            *head,
            record.session_id,
            record.customer_id,
            session_ref,
            str(ctx.input.channel),
            ctx.pack_version,
            ctx.received_at,
            max(0.0, (record.completed_at - ctx.received_at).total_seconds() * 1000.0),
            ctx.coalesced_message_count,
            snapshot.language if snapshot else "",
            ctx.canonical_intent or "",
            (snapshot.new_intent_label or "") if snapshot else "",
            str(snapshot.frustration_level) if snapshot else "",
            str(ctx.plan.response_type) if ctx.plan else "",
            str(outcome.resolution) if outcome else "",
            categories,
            len(ctx.applied_rules),
            len(ctx.tool_calls),
            failed_tools,
            len(attempts),
            int(final.passed) if final else 1,
            int(any(result.fallback_used for result in attempts)),
            sum(usage.prompt_tokens for usage in ctx.token_usage),
            sum(usage.completion_tokens for usage in ctx.token_usage),
            [error.code for error in ctx.errors],
            [f"{gap.retrieval_type}:{gap.reason}" for gap in ctx.retrieval_gaps],
            mask(ctx.input.message) if keep_texts else "",
            mask(ctx.response_text or "") if keep_texts else "",
        ),
    )
    for key, ms in sorted(ctx.timings_ms.items()):
        batch.add(tables.PHASE_TIMINGS, (*head, key.split(".", 1)[0], key, float(ms)))

    retrieved_rules: set[str] = set()
    for selection in ctx.retrievals:
        selected = set(selection.selected_ids)
        if selection.retrieval_type is RetrievalType.RULES:
            retrieved_rules |= selected
        for rank, cand in enumerate(selection.candidates, start=1):
            batch.add(
                tables.RETRIEVAL_RESULTS,
                (
                    *head,
                    str(selection.retrieval_type),
                    cand.item_id,
                    rank,
                    cand.vector_score,
                    cand.lexical_score,
                    cand.fused_score,
                    cand.rerank_score,
                    int(cand.item_id in selected),
                    str(selection.strategy),
                    selection.latency_ms,
                ),
            )
    for rule in ctx.applied_rules:
        batch.add(
            tables.RULE_MATCHES,
            (
                *head,
                rule.rule_id,
                rule.score,
                str(rule.verdict),
                str(rule.via_relationship) if rule.via_relationship else "",
                rule.via_rule_id or "",
                int(rule.rule_id in retrieved_rules),
            ),
        )

    seq = 0
    for decision in ctx.scenario_decisions:
        events: list[tuple[str, str]] = [(SCENARIO_EVENT[decision.action], "")]
        events += [(STEP_SKIPPED, step) for step in decision.skipped_step_ids]
        if decision.entered_step_id:
            events.append((STEP_ENTERED, decision.entered_step_id))
        for event, step in events:
            batch.add(
                tables.SCENARIO_EVENTS,
                (
                    *head,
                    record.session_id,
                    decision.scenario_id,
                    decision.scenario_version,
                    seq,
                    event,
                    step,
                    decision.from_step_id or "",
                ),
            )
            seq += 1

    for seq, call in enumerate(ctx.tool_calls):
        batch.add(
            tables.TOOL_CALLS,
            (
                *head,
                seq,
                call.tool,
                int(call.success),
                mask(call.error or ""),
                call.latency_ms,
                call.attempts,
            ),
        )

    for result in attempts:
        not_evaluated = sum(1 for j in result.judgements if j.verdict is JudgeVerdict.NOT_EVALUATED)
        batch.add(
            tables.ENFORCEMENT_RESULTS,
            (
                *head,
                result.attempt,
                int(result.passed),
                len(result.violations),
                not_evaluated,
                int(result.remediated),
                int(result.fallback_used),
            ),
        )
        outcome_of = _remediation_outcome(attempts, result.attempt)
        for seq, violation in enumerate(result.violations):
            batch.add(
                tables.ENFORCEMENT_VIOLATIONS,
                (
                    *head,
                    result.attempt,
                    seq,
                    violation.rule_id,
                    str(violation.lane),
                    mask(violation.detail),
                    outcome_of,
                ),
            )

    if outcome is not None:
        batch.add(tables.OUTCOMES, (*head, str(outcome.resolution), categories))
    return batch


def completed_turn_rows(
    event: CompletedTurn,
    *,
    store_texts: bool = False,
    sensitive_fields: Collection[str] | None = None,
    pseudonyms: Pseudonyms = PROCESS_PSEUDONYMS,
) -> RowBatch:
    """:func:`turn_rows` of a completed turn (see there for the arguments)."""
    return turn_rows(
        event.record,
        event.session_key,
        store_texts=store_texts,
        sensitive_fields=sensitive_fields,
        pseudonyms=pseudonyms,
    )


MAX_MASKED_CHARS = 100_000
"""A poison record's error is cut to this before it is masked (then to 2,000 after): masking
first keeps a cut from splitting an email address or a number into an unmasked piece."""


def _key_text(key: bytes | None) -> str | None:
    return key.decode("utf-8", "replace") if key else None


def _tenant_of_key(key: bytes | None) -> str:
    """The tenant of a session or ``tenant:agent`` key, best effort ('' when unknown)."""
    if not key:
        return ""
    head = key.split(b":", 1)[0]
    try:
        text = head.decode()
    except UnicodeDecodeError:
        return ""
    return text if 0 < len(text) <= 128 and text.isprintable() and " " not in text else ""


def dead_letter_rows(letter: DeadLetter) -> RowBatch:
    batch = RowBatch()
    batch.add(
        tables.DEAD_LETTERS,
        (
            _tenant_of_key(letter.key),
            letter.source_topic,
            letter.partition,
            letter.offset,
            letter.reason,
            address_masker(_key_text(letter.key))(letter.detail),
            # the whole original's (a v2 letter may keep only a prefix of it)
            letter.original_size if letter.original_size is not None else len(letter.original),
            letter.original_sha256 or hashlib.sha256(letter.original).hexdigest(),
            letter.at,
        ),
    )
    return batch


def poison_rows(
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes,
    reason: str,
    detail: str,
    at: datetime,
) -> RowBatch:
    """A record this sink could not turn into rows, logged as a dead letter of its own."""
    batch = RowBatch()
    batch.add(
        tables.DEAD_LETTERS,
        (
            _tenant_of_key(key),
            topic,
            partition,
            offset,
            reason,
            address_masker(_key_text(key))(detail[:MAX_MASKED_CHARS])[:2000],
            len(value),
            hashlib.sha256(value).hexdigest(),
            at,
        ),
    )
    return batch


def redact_url(url: str) -> str:
    """``scheme://host[:port]/path``: user info and query strings may hold credentials."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path or "/", "", ""))


def webhook_delivery_rows(delivery: WebhookDelivery) -> RowBatch:
    batch = RowBatch()
    batch.add(
        tables.WEBHOOK_DELIVERIES,
        (
            delivery.tenant_id,
            delivery.delivery_id,
            delivery.attempt,
            delivery.subscription_id,
            delivery.event_type,
            redact_url(delivery.url),
            str(delivery.status),
            delivery.http_status,
            delivery.error or "",
            len(delivery.payload.encode()),
            delivery.at,
        ),
    )
    return batch


def analytics_event_rows(event: AnalyticsEvent) -> RowBatch:
    batch = RowBatch()
    batch.add(
        tables.ANALYTICS_EVENTS,
        (
            event.tenant_id,
            event.event_id,
            event.turn_id or "",
            event.event_type,
            event.at,
            dict(event.attributes),
        ),
    )
    return batch


def merge(batches: Iterable[RowBatch]) -> RowBatch:
    out = RowBatch()
    for batch in batches:
        out.extend(batch)
    return out
