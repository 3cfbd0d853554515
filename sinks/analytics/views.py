"""Analyst views: the standard questions, per tenant, over deduplicated (``FINAL``) tables.

Every view has a ``tenant_id`` column: filter on it (``WHERE tenant_id = 'acme'``). The
definitions are migrations (:mod:`sinks.analytics.migrations`); :data:`REPORT` says how
``turnstream report`` lists them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class View:
    name: str
    title: str
    select: str
    """The SELECT, with ``{db}`` standing for the database."""
    order_by: str
    """How ``turnstream report`` orders the view's rows."""

    def ddl(self, database: str) -> str:
        return f"CREATE OR REPLACE VIEW `{database}`.`{self.name}` AS\n" + self.select.format(
            db=f"`{database}`"
        )


PHASE_LATENCY = View(
    "v_phase_latency",
    "Phase latency (ms) by day: p50 / p95 / p99; 'turn' is received -> completed",
    """
SELECT tenant_id, day, phase, count() AS turns,
       round(quantileExactInclusive(0.5)(ms), 3) AS p50_ms,
       round(quantileExactInclusive(0.95)(ms), 3) AS p95_ms,
       round(quantileExactInclusive(0.99)(ms), 3) AS p99_ms,
       round(max(ms), 3) AS max_ms
FROM (
    SELECT tenant_id, toDate(completed_at) AS day, timing_key AS phase, ms
    FROM {db}.phase_timings FINAL
    UNION ALL
    SELECT tenant_id, toDate(completed_at) AS day, 'turn' AS phase, total_ms AS ms
    FROM {db}.turns FINAL
)
GROUP BY tenant_id, day, phase
""",
    "day, phase",
)

RULE_HIT_RATE = View(
    "v_rule_hit_rate",
    "Rule hit rate: turns where the rule applied / all the agent's turns",
    """
SELECT r.tenant_id AS tenant_id, r.agent_id AS agent_id, r.rule_id AS rule_id,
       r.turns_retrieved AS turns_retrieved, r.turns_applied AS turns_applied,
       r.turns_via_relationship AS turns_via_relationship, t.turns AS agent_turns,
       round(r.turns_applied / t.turns, 4) AS hit_rate,
       if(r.turns_retrieved = 0, NULL,
          round(r.applied_when_retrieved / r.turns_retrieved, 4)) AS apply_rate
FROM (
    SELECT tenant_id, agent_id, rule_id,
           sum(retrieved) AS turns_retrieved, sum(applied) AS turns_applied,
           sum(via) AS turns_via_relationship,
           sum(retrieved AND applied) AS applied_when_retrieved
    FROM (
        SELECT tenant_id, agent_id, turn_id, rule_id,
               max(retrieved) AS retrieved, max(applied) AS applied, max(via) AS via
        FROM (
            SELECT tenant_id, agent_id, turn_id, item_id AS rule_id,
                   toUInt8(1) AS retrieved, toUInt8(0) AS applied, toUInt8(0) AS via
            FROM {db}.retrieval_results FINAL
            WHERE retrieval_type = 'rules' AND selected = 1
            UNION ALL
            SELECT tenant_id, agent_id, turn_id, rule_id,
                   toUInt8(0), toUInt8(1), toUInt8(via_rule_id != '')
            FROM {db}.rule_matches FINAL
        )
        GROUP BY tenant_id, agent_id, turn_id, rule_id
    )
    GROUP BY tenant_id, agent_id, rule_id
) AS r
INNER JOIN (
    SELECT tenant_id, agent_id, count() AS turns FROM {db}.turns FINAL
    GROUP BY tenant_id, agent_id
) AS t ON r.tenant_id = t.tenant_id AND r.agent_id = t.agent_id
""",
    "agent_id, hit_rate DESC, rule_id",
)

INTENT_HEATMAP = View(
    "v_intent_heatmap",
    "Intent heatmap: turns per canonical intent and day",
    """
SELECT tenant_id, day, intent, turns,
       round(turns / sum(turns) OVER (PARTITION BY tenant_id, day), 4) AS share_of_day,
       resolved, round(resolved / turns, 4) AS resolved_rate
FROM (
    SELECT tenant_id, toDate(completed_at) AS day,
           if(canonical_intent = '', '(none)', canonical_intent) AS intent,
           count() AS turns, countIf(resolution = 'RESOLVED') AS resolved
    FROM {db}.turns FINAL
    GROUP BY tenant_id, day, intent
)
""",
    "day, turns DESC, intent",
)

SCENARIO_FUNNEL = View(
    "v_scenario_funnel",
    "Scenario funnel: sessions reaching each step, and those whose last step it was "
    "without completing the scenario (drop-off)",
    """
SELECT s.tenant_id AS tenant_id, s.agent_id AS agent_id, s.scenario_id AS scenario_id,
       s.step_id AS step_id,
       count() AS sessions_reached,
       countIf(s.entered) AS sessions_entered,
       countIf(s.skipped AND NOT s.entered) AS sessions_skipped,
       countIf(l.last_step_id = s.step_id AND NOT l.completed) AS dropped_here,
       round(dropped_here / sessions_reached, 4) AS drop_off_rate
FROM (
    SELECT tenant_id, agent_id, scenario_id, session_id, step_id,
           max(event = 'step_entered') AS entered, max(event = 'step_skipped') AS skipped
    FROM {db}.scenario_events FINAL
    WHERE event IN ('step_entered', 'step_skipped')
    GROUP BY tenant_id, agent_id, scenario_id, session_id, step_id
) AS s
INNER JOIN (
    SELECT tenant_id, agent_id, scenario_id, session_id,
           argMaxIf(step_id, (completed_at, turn_id, seq),
                    event IN ('step_entered', 'step_skipped')) AS last_step_id,
           max(event = 'completed') AS completed
    FROM {db}.scenario_events FINAL
    GROUP BY tenant_id, agent_id, scenario_id, session_id
) AS l
ON s.tenant_id = l.tenant_id AND s.agent_id = l.agent_id AND s.scenario_id = l.scenario_id
   AND s.session_id = l.session_id
GROUP BY tenant_id, agent_id, scenario_id, step_id
""",
    "agent_id, scenario_id, sessions_reached DESC, step_id",
)

SCENARIO_SUMMARY = View(
    "v_scenario_summary",
    "Scenarios: sessions that started, completed or cancelled each",
    """
SELECT tenant_id, agent_id, scenario_id,
       count() AS sessions, countIf(started) AS started, countIf(completed) AS completed,
       countIf(cancelled) AS cancelled, round(completed / sessions, 4) AS completion_rate
FROM (
    SELECT tenant_id, agent_id, scenario_id, session_id,
           max(event = 'started') AS started, max(event = 'completed') AS completed,
           max(event = 'cancelled') AS cancelled
    FROM {db}.scenario_events FINAL
    GROUP BY tenant_id, agent_id, scenario_id, session_id
)
GROUP BY tenant_id, agent_id, scenario_id
""",
    "agent_id, scenario_id",
)

ENFORCEMENT_VIOLATIONS = View(
    "v_enforcement_violations",
    "Enforcement violations by rule and remediation outcome",
    """
SELECT tenant_id, agent_id, rule_id, lane, remediation_outcome,
       count() AS violations, uniqExact(turn_id) AS turns
FROM {db}.enforcement_violations FINAL
GROUP BY tenant_id, agent_id, rule_id, lane, remediation_outcome
""",
    "violations DESC, rule_id, remediation_outcome",
)

RESOLUTION_RATES = View(
    "v_resolution_rates",
    "Resolution rates",
    """
SELECT tenant_id, resolution, turns,
       round(turns / sum(turns) OVER (PARTITION BY tenant_id), 4) AS rate
FROM (
    SELECT tenant_id, resolution, count() AS turns FROM {db}.outcomes FINAL
    GROUP BY tenant_id, resolution
)
""",
    "turns DESC, resolution",
)

OUTCOME_CATEGORY_RATES = View(
    "v_outcome_category_rates",
    "Outcome-category rates: turns with the category / turns with an outcome",
    """
SELECT c.tenant_id AS tenant_id, c.category AS category, c.turns AS turns,
       round(c.turns / t.turns, 4) AS rate
FROM (
    SELECT tenant_id, arrayJoin(categories) AS category, count() AS turns
    FROM {db}.outcomes FINAL
    GROUP BY tenant_id, category
) AS c
INNER JOIN (
    SELECT tenant_id, count() AS turns FROM {db}.outcomes FINAL GROUP BY tenant_id
) AS t ON c.tenant_id = t.tenant_id
""",
    "turns DESC, category",
)

TOOL_STATS = View(
    "v_tool_stats",
    "Tools: error rate and latency (ms)",
    """
SELECT tenant_id, tool, count() AS calls, countIf(success = 0) AS errors,
       round(errors / calls, 4) AS error_rate,
       round(quantileExactInclusive(0.5)(latency_ms), 3) AS p50_ms,
       round(quantileExactInclusive(0.95)(latency_ms), 3) AS p95_ms,
       round(avg(attempts), 3) AS avg_attempts
FROM {db}.tool_calls FINAL
GROUP BY tenant_id, tool
""",
    "calls DESC, tool",
)

WEBHOOK_DELIVERY = View(
    "v_webhook_delivery",
    "Webhook delivery success per subscription",
    """
SELECT tenant_id, subscription_id,
       uniqExact(delivery_id) AS deliveries,
       uniqExactIf(delivery_id, status = 'DELIVERED') AS delivered,
       uniqExactIf(delivery_id, status = 'EXHAUSTED') AS exhausted,
       count() AS attempts,
       round(delivered / deliveries, 4) AS success_rate,
       round(attempts / deliveries, 3) AS attempts_per_delivery
FROM {db}.webhook_deliveries FINAL
GROUP BY tenant_id, subscription_id
""",
    "subscription_id",
)

DEAD_LETTER_REASONS = View(
    "v_dead_letters",
    "Dead letters by day, source topic and reason",
    """
SELECT tenant_id, toDate(at) AS day, source_topic, reason, count() AS records
FROM {db}.dead_letters FINAL
GROUP BY tenant_id, day, source_topic, reason
""",
    "day, records DESC",
)

REPORT: tuple[View, ...] = (
    PHASE_LATENCY,
    RULE_HIT_RATE,
    INTENT_HEATMAP,
    SCENARIO_SUMMARY,
    SCENARIO_FUNNEL,
    ENFORCEMENT_VIOLATIONS,
    RESOLUTION_RATES,
    OUTCOME_CATEGORY_RATES,
    TOOL_STATS,
    WEBHOOK_DELIVERY,
    DEAD_LETTER_REASONS,
)
