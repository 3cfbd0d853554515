"""Exactly once by (tenant, session, turn id), and nothing forged, through the real broker
with one in-process worker (issue 20): a garbage record naming a victim's turn in flight
does not replace the victim's answer, a request sent again after 100 turns of its session
is not answered again, and a turn id reused by another session is answered in each, with
analytics keeping both turns."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import pytest

from schemas.events.turn_response import ResponseStatus
from streams.settings import Settings
from streams.turn_client import TurnClient
from streams.worker_process import worker_env
from tests.pipeline_support import (
    customer_says,
    dead_letter_of,
    pipeline_settings,
    prepare,
    running_worker,
    settle,
)
from tests.test_analytics_cli import free_port, run_cli

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def settings(kafka_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    base = pipeline_settings(kafka_settings, tmp_path_factory.mktemp("exactly-once"))
    analytics = base.analytics.model_copy(
        update={"enabled": True, "query_port": free_port(), "flush_interval_s": 0.2}
    )
    return base.model_copy(update={"analytics": analytics})


@pytest.fixture(scope="module")
async def client(settings: Settings) -> AsyncIterator[TurnClient]:
    await prepare(settings)
    async with running_worker(settings), TurnClient(settings) as turn_client:
        yield turn_client


def visitor() -> str:
    return f"v-{uuid.uuid4().hex[:10]}"


async def test_a_forged_record_naming_a_turn_in_flight_is_dead_lettered_and_the_victim_answered(
    client: TurnClient, settings: Settings
) -> None:
    who = visitor()
    victim = await client.send(customer_says(who, "where is my order A-10024?"))
    key = f"acme-shop:webchat:{who}".encode()
    forged = {"turn_id": victim.encode(), "agent_id": b"support"}
    await client.send_raw(key, b"\x00\x01forged, not avro", forged)

    answer = await client.response(victim, timeout=120)
    assert answer.status is ResponseStatus.OK and answer.text
    await settle(2.0)
    assert client.response_counts[victim] == 1
    letter = await dead_letter_of(settings, key, timeout=30)
    assert letter.reason == "codec.bad_marker"
    assert f"not answered: turn {victim} is admitted or answered" in letter.detail


async def test_a_request_sent_again_after_a_hundred_turns_is_answered_once(
    client: TurnClient,
) -> None:
    who = visitor()
    first = await client.send(customer_says(who, "hi"))
    assert (await client.response(first, timeout=120)).status is ResponseStatus.OK
    for n in range(100):
        await client.ask(customer_says(who, f"ok {n}"), timeout=60)
    again = await client.send(customer_says(who, "hi"), turn_id=first)
    last = await client.ask(customer_says(who, "thanks"), timeout=60)  # after the resend
    assert last.status is ResponseStatus.OK
    await settle(1.0)
    assert again == first and client.response_counts[first] == 1


async def test_a_turn_id_reused_by_another_session_is_answered_in_each_and_kept_twice(
    client: TurnClient, settings: Settings
) -> None:
    turn_id = f"reused-{uuid.uuid4().hex[:8]}"
    one, two = visitor(), visitor()
    for who in (one, two):
        await client.send(customer_says(who, "where is my order A-10024?"), turn_id=turn_id)
    async with asyncio.timeout(120):
        while client.response_counts[turn_id] < 2:
            await client.response(turn_id, timeout=120)
            await asyncio.sleep(0.2)
    await settle(1.0)
    for who in (one, two):
        assert client.response_keys[(turn_id, f"acme-shop:webchat:{who}".encode())] == 1
    env = worker_env(settings, inherit=False)
    sql = f"SELECT count() AS n FROM turns FINAL WHERE turn_id = '{turn_id}'"
    async with asyncio.timeout(60):
        while (n := await _count(env, sql)) != 2:
            assert n is None or n < 2
            await asyncio.sleep(0.5)


async def _count(env: dict[str, str], sql: str) -> int | None:
    rc, out, _ = await run_cli(env, "sql", sql, "--format", "json")
    if rc != 0:
        return None
    rows = json.loads(out)
    return int(rows[0]["n"]) if rows else None
