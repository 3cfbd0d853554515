"""``turnstream pack test``: play a pack's conversation tests in this process or through Kafka.

In process, each turn is :func:`processors.turn.in_process.run_turn` over the real embedder,
Qdrant in memory and the pack's own tools. With Kafka, the same conversations go to a worker
(started here, in this process) on a broker, under a topic prefix of the run's own, exactly as
a channel gateway sends them; the worker's response and ``turn.completed`` record are what is
checked. The broker is the configured one (``TURNSTREAM_KAFKA_BOOTSTRAP``), else a private
embedded broker in a temporary folder on free ports, stopped at the end. Topics of the run's
prefix stay on a configured cluster (they are small; delete ``<prefix>.*`` when you like).
"""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

from processors.pack.conversation_check import Observed
from processors.pack.conversation_run import SuiteReport, format_report, play
from processors.pack.conversations import load_suite
from processors.tool_policy import ToolPolicy
from schemas.domain.turn_input import TurnInput
from schemas.events.turn_requested import TurnRequested
from schemas.pack import AgentPack
from sinks.pack_files import PackFiles, load_pack
from streams.settings import Settings

RESPONSE_TIMEOUT_S = 120.0
"""Per turn through Kafka: the first turn also waits for the worker to index the pack."""
RECORD_TIMEOUT_S = 30.0


def new_run_id() -> str:
    return uuid.uuid4().hex[:10]


async def play_in_process(
    pack_dir: Path, settings: Settings, *, only: Sequence[str] = (), run_id: str | None = None
) -> SuiteReport:
    """The pack's conversations through ``run_turn``, one process, no broker."""
    from processors.turn.in_process import MemoryState, run_turn
    from sinks.http_tools import pack_tool_executor
    from sinks.outbound_http import guarded_session
    from sinks.turn_deps import RetrievalPorts

    pack = load_pack(pack_dir)
    suite = load_suite(PackFiles(pack_dir), pack)
    ports = RetrievalPorts.in_memory(settings)
    ports.sync(pack)
    policy = ToolPolicy.of(settings.tools)
    session = guarded_session(allow_private=policy.allow_private_http)
    executor = pack_tool_executor(pack_dir, policy, session)
    deps = ports.turn_deps(settings, lambda _pack: executor)
    state = MemoryState()
    state.add_pack(pack)

    async def say(given: TurnInput) -> Observed:
        request = TurnRequested(
            turn_id=f"turn-{uuid.uuid4().hex}", input=given, sent_at=datetime.now(UTC)
        )
        response, record = await run_turn(request, state, deps)
        return Observed(response, record)

    try:
        return await play(
            suite,
            pack.agent.tenant_id,
            pack.agent.agent_id,
            say,
            run_id=run_id or new_run_id(),
            only=only,
        )
    finally:
        await session.close()
        ports.close()


async def play_through_kafka(
    pack_dir: Path, settings: Settings, *, only: Sequence[str] = (), run_id: str | None = None
) -> SuiteReport:
    """The pack's conversations through a worker on the broker ``settings`` name (which must
    be running), under a fresh topic prefix and data folder."""
    from streams.pack_publisher import publish_pack
    from streams.topic_admin import ensure_topics
    from streams.turn_client import TurnClient
    from streams.worker import Worker, inside_a_command

    pack = load_pack(pack_dir)
    suite = load_suite(PackFiles(pack_dir), pack)
    run_id = run_id or new_run_id()
    with tempfile.TemporaryDirectory(
        prefix="turnstream-pack-test-", ignore_cleanup_errors=True
    ) as data:
        run = _run_settings(settings, pack_dir, pack, Path(data), run_id)
        await ensure_topics(run)
        await publish_pack(run, pack)
        worker = Worker(inside_a_command(run))
        await worker.start()
        try:
            async with TurnClient(run, records=True) as client:

                async def say(given: TurnInput) -> Observed:
                    turn_id = await client.send(given)
                    response = await client.response(turn_id, timeout=RESPONSE_TIMEOUT_S)
                    try:
                        record = await client.record(turn_id, timeout=RECORD_TIMEOUT_S)
                    except TimeoutError:
                        return Observed(response, None)
                    return Observed(response, record)

                return await play(
                    suite, pack.agent.tenant_id, pack.agent.agent_id, say, run_id=run_id, only=only
                )
        finally:
            await worker.stop()


def _run_settings(
    settings: Settings, pack_dir: Path, pack: AgentPack, data_dir: Path, run_id: str
) -> Settings:
    """The broker's settings for one run: its own topics and state, tools reading the pack
    from where it is (``packs_dir`` is the folder above ``<tenant>/<agent>``), no analytics
    and no webhooks (a test run must not call a tenant's endpoints)."""
    folder = pack_dir.resolve()
    packs_dir = folder.parent.parent
    if (folder.parent.name, folder.name) != (pack.agent.tenant_id, pack.agent.agent_id):
        raise ValueError(
            f"{pack_dir}: a pack tested through Kafka must sit in "
            f"<packs>/{pack.agent.tenant_id}/{pack.agent.agent_id}/ (its tools find it there)"
        )
    return settings.model_copy(
        update={
            "topic_prefix": f"packtest{run_id}",
            "data_dir": data_dir,
            "packs_dir": packs_dir,
            "analytics": settings.analytics.model_copy(update={"enabled": False}),
            "webhooks": settings.webhooks.model_copy(update={"enabled": False}),
        }
    )


@asynccontextmanager
async def broker_for(settings: Settings) -> AsyncIterator[Settings]:
    """The configured cluster's settings, or those of a private embedded broker started for
    the run (in a temporary folder, on free ports) and stopped after it."""
    if settings.kafka_bootstrap:
        yield settings
        return
    from streams.local_kafka import LocalKafka, private_broker_settings

    with tempfile.TemporaryDirectory(
        prefix="turnstream-pack-test-kafka-", ignore_cleanup_errors=True
    ) as home:
        private = private_broker_settings(Path(home))
        broker = LocalKafka(private)
        await asyncio.to_thread(broker.up)  # it blocks: starting a JVM and waiting for it
        try:
            yield private
        finally:
            await asyncio.to_thread(broker.down)


def main(pack_dir: Path, *, kafka: bool, only: Sequence[str] = ()) -> int:
    """The CLI's work: check the pack, play its tests, print the report; 1 on any failure."""
    from processors.pack import PackValidationError, Severity
    from streams.settings import load_settings

    try:
        load_pack(pack_dir)
    except PackValidationError as exc:
        for error in exc.errors:
            if error.severity is Severity.ERROR:
                print(dataclasses.replace(error, file=str(pack_dir / error.file)))
        print(f"{pack_dir}: the pack does not validate (turnstream pack validate); no test ran")
        return 1
    settings = load_settings()

    async def run() -> tuple[SuiteReport, str]:
        if not kafka:
            return await play_in_process(pack_dir, settings, only=only), "in process"
        async with broker_for(settings) as on_broker:
            report = await play_through_kafka(pack_dir, on_broker, only=only)
            return report, f"through Kafka at {on_broker.bootstrap_servers}"

    report, mode = asyncio.run(run())
    for line in format_report(report, str(pack_dir), mode):
        print(line)
    return 0 if report.passed else 1
