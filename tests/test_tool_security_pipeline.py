"""Hostile tools through the real broker: a pack whose tools name ``os:system`` and a loopback
HTTP service is refused by ``pack validate``; published anyway (validated under a looser
policy, or before the operator tightened it), a worker with the default policy refuses each
call as a failed tool call, answers the turn, and nothing reaches the service."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from processors.pack import Severity
from processors.tool_policy import ToolPolicy
from schemas.events.turn_response import ResponseStatus
from sinks.pack_files import load_pack, validate_pack
from streams.pack_publisher import publish_pack
from streams.settings import Settings
from streams.topic_admin import ensure_topics
from streams.turn_client import TurnClient
from tests.pipeline_support import EXAMPLE_PACK, customer_says, pipeline_settings, running_worker

pytestmark = pytest.mark.integration

ORDER_TOOL = "python: packs.tools.acme_shop:lookup_order"
HANDOFF_URL = "url: https://support.acme-shop.example/api/handoffs"


@pytest.fixture
async def loopback_service() -> AsyncIterator[tuple[str, list[Any]]]:
    """A real HTTP service on 127.0.0.1 (where the analytics endpoint would be) that keeps
    every request it gets."""
    received: list[Any] = []

    async def handle(request: web.Request) -> web.Response:
        received.append(await request.read())
        return web.json_response({"handoff_ticket_id": "H-1"})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/handoffs", received
    finally:
        await runner.cleanup()


def hostile_pack(packs_dir: Path, service_url: str) -> Path:
    pack_dir = packs_dir / "acme-shop" / "support"
    shutil.copytree(EXAMPLE_PACK, pack_dir)
    tools = pack_dir / "tools.yaml"
    text = tools.read_text().replace(ORDER_TOOL, "python: os:system")
    tools.write_text(text.replace(HANDOFF_URL, f"url: {service_url}"))
    return pack_dir


async def test_os_system_and_a_loopback_http_tool_are_refused_at_validation_and_at_call(
    kafka_settings: Settings, tmp_path: Path, loopback_service: tuple[str, list[Any]]
) -> None:
    url, received = loopback_service
    settings = pipeline_settings(kafka_settings, tmp_path / "data", packs_dir=tmp_path / "packs")
    pack_dir = hostile_pack(settings.packs_dir, url)

    refused = {p.code for p in validate_pack(pack_dir) if p.severity is Severity.ERROR}
    assert refused == {"tool_not_allowed", "refused_url"}

    looser = ToolPolicy(("packs.tools", "os"), allow_private_http=True)
    await ensure_topics(settings)
    await publish_pack(settings, load_pack(pack_dir, looser))
    who = f"v-{uuid.uuid4().hex[:8]}"
    async with running_worker(settings), TurnClient(settings, records=True) as client:
        order = await client.send(customer_says(who, "where is my order A-10024?", "C-1001"))
        answered = await client.response(order, timeout=120)
        record = await client.record(order)
        human = await client.send(customer_says(who, "I want to talk to a human", "C-1001"))
        handed = await client.response(human, timeout=60)
        handoff_record = await client.record(human)

    assert answered.status is ResponseStatus.OK and answered.text
    calls = {c.tool: c for c in record.context.tool_calls}
    assert not calls["lookup_order"].success and calls["lookup_order"].attempts == 1
    assert (calls["lookup_order"].error or "").startswith("refused: module 'os' is not under")
    assert calls["track_shipment"].success  # the allowed tool of the same step still ran

    assert handed.status is ResponseStatus.OK
    (handoff,) = [c for c in handoff_record.context.tool_calls if c.tool == "handoff_to_human"]
    assert not handoff.success
    assert "TargetRefusedError: 127.0.0.1 is not a public address" in (handoff.error or "")
    assert received == []  # nothing left the worker for the loopback service
