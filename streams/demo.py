"""``turnstream demo``: the example pack's refund flow, end to end on a local broker.

What it shows, turn by turn: the customer gives the order number and the reason in one
message, so the refund scenario skips those two questions; the order, customer and
eligibility tools run; the first answer names the 900 USD the customer asked for, which
breaks the GLOBAL hard constraint ``refund_within_tier_limit`` (gold tier: 500), so
enforcement sends it back to generation, which drops that sentence; the customer confirms and
the refund is issued; and the state (scenario step, customer variables) carries across turns.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path

from processors.pack import load_pack
from schemas.domain.turn_input import Channel, TurnInput
from schemas.domain.turn_record import TurnRecord
from schemas.events.turn_response import TurnResponse
from streams.local_kafka import LocalKafka
from streams.pack_publisher import publish_pack
from streams.settings import Settings
from streams.topic_admin import ensure_topics
from streams.turn_client import TurnClient
from streams.worker import Worker

EXAMPLE_PACK = Path("packs/acme-shop/support")
SCRIPT = (
    "Hi, I'd like a refund of 900 dollars for order A-10023, it arrived broken.",
    "Yes please, go ahead.",
)
CUSTOMER_ID = "C-1001"
"""The demo customer is logged in on the web chat: the gateway knows their id."""


def describe(record: TurnRecord, response: TurnResponse) -> list[str]:
    """The lines the demo prints for one turn."""
    context = record.context
    lines = [f"  agent> {response.text or response.error}"]
    lines.append(f"    intent: {context.canonical_intent}")
    for decision in context.scenario_decisions:
        skipped = (
            f", skipped {', '.join(decision.skipped_step_ids)}" if decision.skipped_step_ids else ""
        )
        lines.append(
            f"    scenario {decision.scenario_id}: {decision.action.value} -> "
            f"{decision.entered_step_id}{skipped}"
        )
    for call in context.tool_calls:
        state = "ok" if call.success else f"FAILED ({call.error})"
        lines.append(f"    tool {call.tool}: {state} in {call.latency_ms:.1f} ms")
    for result in context.enforcement:
        verdict = (
            "passed"
            if result.passed
            else "violated " + ", ".join(v.rule_id for v in result.violations)
        )
        lines.append(f"    enforcement attempt {result.attempt}: {verdict}")
    if context.outcome is not None:
        categories = ",".join(c.value for c in context.outcome.categories) or "-"
        lines.append(f"    outcome: {context.outcome.resolution.value} ({categories})")
    timings = "  ".join(f"{k} {v:.1f}" for k, v in response.timings_ms.items())
    lines.append(f"    timings ms: {timings}")
    return lines


async def run_demo(settings: Settings, pack_dir: Path = EXAMPLE_PACK) -> int:
    broker = LocalKafka(settings)
    started_broker = False
    if not settings.kafka_bootstrap and not broker.status().running:
        print(f"starting the local Kafka broker on {settings.bootstrap_servers} ...")
        broker.up()
        started_broker = True
    try:
        await ensure_topics(settings)
        pack = load_pack(pack_dir)
        published = await publish_pack(settings, pack)
        print(f"pack {pack.agent.tenant_id}/{pack.agent.agent_id} v{published.version} loaded")
        worker = Worker(settings)
        await worker.start()
        try:
            return await _converse(settings, pack.agent.tenant_id, pack.agent.agent_id)
        finally:
            await worker.stop()
    finally:
        if started_broker:
            broker.down()


async def _converse(settings: Settings, tenant: str, agent: str) -> int:
    visitor = f"demo-{uuid.uuid4().hex[:8]}"
    async with TurnClient(settings, records=True) as client:
        for message in SCRIPT:
            print(f"\ncustomer> {message}")
            given = TurnInput(
                tenant_id=tenant,
                agent_id=agent,
                channel=Channel.WEBCHAT,
                channel_id=visitor,
                customer_id=CUSTOMER_ID,
                message=message,
            )
            turn_id = await client.send(given)
            response = await client.response(turn_id, timeout=120.0)
            record = await client.record(turn_id, timeout=30.0)
            print("\n".join(describe(record, response)))
            if response.error is not None:
                return 1
    return 0


def main(settings: Settings) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return asyncio.run(run_demo(settings))
