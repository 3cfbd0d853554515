"""``turnstream demo``: the example pack's refund flow, end to end on a local broker.

What it shows, turn by turn: the customer gives the order number and the reason in one
message, so the refund scenario skips those two questions; the order, customer and
eligibility tools run; the first answer names the 900 USD the customer asked for, which
breaks the GLOBAL hard constraint ``refund_within_tier_limit`` (gold tier: 500), so
enforcement sends it back to generation, which drops that sentence; the customer confirms and
the refund is issued; and the state (scenario step, customer variables) carries across turns.

It runs from any working directory: the example pack is looked up under
``TURNSTREAM_PACKS_DIR`` and then in the source tree this module comes from. With no
``TURNSTREAM_KAFKA_BOOTSTRAP`` it uses the local broker: one that runs is used and left
running; one it has to start is stopped at the end, whatever happens in between.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import uuid
from pathlib import Path

from schemas.domain.turn_input import Channel, TurnInput
from schemas.domain.turn_record import TurnRecord
from schemas.events.turn_response import TurnResponse
from schemas.pack import AgentPack
from sinks.pack_files import load_pack
from streams.cli_errors import CliError
from streams.local_kafka import LocalKafka
from streams.pack_publisher import publish_pack
from streams.settings import Settings
from streams.topic_admin import ensure_topics
from streams.turn_client import TurnClient
from streams.worker import Worker, inside_a_command

EXAMPLE_PACK = Path("acme-shop") / "support"
"""The example pack, under a packs root (``<root>/<tenant>/<agent>``)."""
SOURCE_PACKS = Path(__file__).resolve().parents[1] / "packs"
"""The packs of the source tree (an editable install or a clone run in place)."""
SCRIPT = (
    "Hi, I'd like a refund of 900 dollars for order A-10023, it arrived broken.",
    "Yes please, go ahead.",
)
CUSTOMER_ID = "C-1001"
"""The demo customer is logged in on the web chat: the gateway knows their id."""
PROGRESS_LOGGERS = ("streams.worker", "streams.pipeline.runtime")
"""Their INFO lines (model loading, pack indexing, worker started) are the demo's progress."""


def example_packs_root(settings: Settings) -> Path:
    """The packs root that holds the example pack: ``TURNSTREAM_PACKS_DIR`` (relative to the
    working directory, as for a worker), else the source tree's ``packs/``."""
    for root in (settings.packs_dir, SOURCE_PACKS):
        if (root / EXAMPLE_PACK / "agent.yaml").is_file():
            return root.resolve()
    raise CliError(
        f"the example pack {EXAMPLE_PACK} is in neither {settings.packs_dir.resolve()} nor "
        f"{SOURCE_PACKS}",
        "run the demo from a clone of the repository, or set TURNSTREAM_PACKS_DIR to the "
        "folder that holds acme-shop/support",
    )


def describe(record: TurnRecord, response: TurnResponse) -> list[str]:
    """The lines the demo prints for one turn."""
    context = record.context
    lines = [f"  agent> {response.text or response.error}"]
    lines.append(f"    intent: {context.canonical_intent or '(none recognised)'}")
    reading = context.dialogue
    if reading is not None and reading.step_id is not None:
        lines.append(
            f"    read as: {reading.kind.value} to {reading.scenario_id}.{reading.step_id}"
        )
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
        categories = ", ".join(c.value for c in context.outcome.categories)
        lines.append(
            f"    outcome: {context.outcome.resolution.value}"
            + (f" ({categories})" if categories else "")
        )
    lines += _wrapped("    timings ms: ", [f"{k} {v:.1f}" for k, v in response.timings_ms.items()])
    return lines


def _wrapped(first: str, items: list[str], width: int = 100) -> list[str]:
    """``items`` after ``first``, two spaces apart, on as many lines as ``width`` needs; an
    item is never split (a phase and its time stay together)."""
    indent = " " * (len(first) - len(first.lstrip()) + 2)
    lines: list[str] = []
    line = first + (items[0] if items else "")
    for item in items[1:]:
        if len(line) + 2 + len(item) > width:
            lines.append(line)
            line = indent + item
        else:
            line += "  " + item
    lines.append(line.rstrip())
    return lines


async def run_demo(settings: Settings, pack: AgentPack) -> int:
    """Topics, the pack, a worker and the conversation, on a broker that already serves."""
    await ensure_topics(settings)
    published = await publish_pack(settings, pack)
    how = "published" if published.published else "unchanged since the last run"
    print(f"pack {published.tenant}/{published.agent} v{published.version} {how}")
    worker = Worker(inside_a_command(settings))
    await worker.start()
    try:
        return await _converse(settings, published.tenant, published.agent)
    finally:
        await worker.stop()


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
    report = "; `turnstream report` shows what the analytics recorded of them"
    print(
        f"\ndemo done: {len(SCRIPT)} turns answered"
        + (report if settings.analytics.enabled else "")
    )
    return 0


class _ProgressFormatter(logging.Formatter):
    """Progress (INFO) as an indented line; anything louder keeps its level and logger."""

    def format(self, record: logging.LogRecord) -> str:
        if record.levelno <= logging.INFO:
            return f"  {record.getMessage()}"
        return f"{record.levelname} {record.name}: {record.getMessage()}"


def _quiet_logging() -> None:
    """Warnings and errors only, except the worker's progress lines."""
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", force=True
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_ProgressFormatter())
    for name in PROGRESS_LOGGERS:
        progress = logging.getLogger(name)
        progress.setLevel(logging.INFO)
        progress.addHandler(handler)
        progress.propagate = False


def main(settings: Settings) -> int:
    _quiet_logging()
    root = example_packs_root(settings)
    pack = load_pack(root / EXAMPLE_PACK)  # an invalid pack fails before a broker starts
    print(
        f"turnstream demo: the example pack ({root / EXAMPLE_PACK}), one worker, and a "
        f"scripted {len(SCRIPT)}-turn refund conversation; each answer comes with what the "
        "pipeline did for it",
        flush=True,
    )
    settings = settings.model_copy(update={"packs_dir": root})
    broker = None if settings.kafka_bootstrap else LocalKafka(settings)
    started_broker = False
    if broker is not None:
        print(f"local Kafka broker on {broker.bootstrap} (data in {broker.home}) ...", flush=True)
        began = time.monotonic()
        was_running = broker.status().running
        try:
            started_broker = broker.ensure_running()
        except KeyboardInterrupt:  # Ctrl-C while the broker starts: do not leave it behind
            if not was_running:
                broker.down()
            raise
        how = f"started in {time.monotonic() - began:.1f} s" if started_broker else "running"
        print(f"  {how}")
    try:
        return asyncio.run(run_demo(settings, pack))
    finally:
        if broker is not None and started_broker:
            print("stopping the local Kafka broker the demo started ...", flush=True)
            broker.down()
