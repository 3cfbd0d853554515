"""Record-size limits through the real broker and an in-process worker (issue 20, "nothing
vanishes"): a request near the producer's 1,000,000-byte limit, uncompressed, and a 5 MB
one sent gzip-compressed (the broker limits the compressed batch, ``message.max.bytes``
1,048,588 by default, so it is accepted; the worker's consumer gets it decompressed) each
become a ``too_large`` dead letter, below the worker producer's limit, with a prefix of the
original and the whole original's size and SHA-256, and an error response; the session's
next turn is answered. So does 20 MiB of gzip-compressed junk, addressed by its key and
headers, and a letter the broker itself refuses is sent minimal. Before the fix the dead
letter kept the whole original, Faust's producer refused it (``MessageSizeTooLargeError``),
the actor restarted and the offset was committed: no dead letter, no response."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from schemas.codec import decode_as, encode
from schemas.events.dead_letter import DeadLetter
from schemas.events.turn_requested import TurnRequested
from schemas.events.turn_response import ResponseStatus
from streams.kafka_clients import producer_kwargs
from streams.pipeline.rejects import AGENT_ID_HEADER, TURN_ID_HEADER
from streams.settings import Settings
from streams.topics import TURN_REQUESTED
from streams.turn_client import TurnClient
from tests.pipeline_support import (
    AGENT,
    customer_says,
    dead_letter_of,
    pipeline_settings,
    prepare,
    running_worker,
)

pytestmark = pytest.mark.integration

SMILE = "\U0001f600"  # 4 bytes of UTF-8
CLIENT_MAX_REQUEST = 32 * 1024 * 1024
"""The test producer's own limit: aiokafka checks a record's uncompressed size against it."""


@pytest.fixture(scope="module")
async def settings(kafka_settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return pipeline_settings(kafka_settings, tmp_path_factory.mktemp("record-size"))


@pytest.fixture(scope="module")
async def client(settings: Settings) -> AsyncIterator[TurnClient]:
    await prepare(settings)
    async with running_worker(settings), TurnClient(settings) as turn_client:
        yield turn_client


def _request_of(channel_id: str, turn_id: str, size: int) -> bytes:
    """An encoded, valid ``TurnRequested`` of about ``size`` bytes (64 metadata values of
    4-byte characters: hostile but within every field's limit)."""
    base = TurnRequested(
        turn_id=turn_id, input=customer_says(channel_id, "hello"), sent_at=datetime.now(UTC)
    )
    per_value = (size - len(encode(base))) // 64 // 4 - 2
    metadata = {f"k{i:02d}": SMILE * per_value for i in range(64)}
    while True:
        given = base.input.model_copy(update={"metadata": metadata})
        request = base.model_copy(update={"input": given})
        data = encode(request)
        if len(data) > size - 4:
            break
        metadata["k00"] += SMILE * max(1, (size - len(data)) // 4)
    assert decode_as(data, TurnRequested) == request
    return data


async def _produce(
    settings: Settings, key: bytes, value: bytes, turn_id: str, compression: str | None
) -> None:
    producer = AIOKafkaProducer(
        compression_type=compression,
        max_request_size=CLIENT_MAX_REQUEST,
        **producer_kwargs(settings),
    )
    await producer.start()
    try:
        await producer.send_and_wait(
            TURN_REQUESTED.name(settings.topic_prefix),
            value,
            key=key,
            headers=[(TURN_ID_HEADER, turn_id.encode()), (AGENT_ID_HEADER, AGENT.encode())],
        )
    finally:
        await producer.stop()


async def _oversized_request_is_dead_lettered_and_answered(
    client: TurnClient,
    settings: Settings,
    size: int,
    compression: str | None,
    *,
    undecodable: bool = False,
) -> tuple[int, DeadLetter]:
    who = f"big-{uuid.uuid4().hex[:10]}"
    key = customer_says(who, "x").session_key.encode()
    turn_id = f"big-{uuid.uuid4().hex[:8]}"
    value = b"Z" * size if undecodable else _request_of(who, turn_id, size)
    await _produce(settings, key, value, turn_id, compression)

    response = await client.response(turn_id, timeout=120)
    assert response.status is ResponseStatus.ERROR
    assert response.error is not None and response.error.code == "too_large"

    letter = await dead_letter_of(settings, key)
    limit = settings.producer_max_request_size
    assert letter.reason == "too_large"
    assert letter.source_topic == TURN_REQUESTED.name(settings.topic_prefix)
    assert (letter.original_size, letter.original_sha256) == (
        len(value),
        hashlib.sha256(value).hexdigest(),
    )
    assert 0 < len(letter.original) < len(value) and value.startswith(letter.original)
    assert len(encode(letter)) + len(key) < limit
    assert "original not kept" not in letter.detail  # the full letter went, not the minimal

    after = await client.send(customer_says(who, "where is my order A-10024?"))
    assert (await client.response(after, timeout=120)).status is ResponseStatus.OK
    return len(value), letter


async def test_a_1_mb_request_becomes_a_dead_letter_and_an_error_and_the_next_turn_goes_on(
    client: TurnClient, settings: Settings
) -> None:
    size, letter = await _oversized_request_is_dead_lettered_and_answered(
        client, settings, 1_000_075, compression=None
    )
    assert settings.producer_max_request_size < size < 1_048_576  # over the worker's limit
    assert letter.truncated


async def test_a_gzip_5_mb_request_becomes_a_dead_letter_and_an_error_and_the_next_turn_goes_on(
    client: TurnClient, settings: Settings
) -> None:
    size, letter = await _oversized_request_is_dead_lettered_and_answered(
        client, settings, 5 * 1024 * 1024, compression="gzip"
    )
    assert size > 5_000_000 and letter.truncated


async def test_an_undecodable_gzip_20_mb_record_is_dead_lettered_and_answered_by_its_headers(
    client: TurnClient, settings: Settings
) -> None:
    """Larger than any valid request can be: answered from its key and headers."""
    size, letter = await _oversized_request_is_dead_lettered_and_answered(
        client, settings, 20 * 1024 * 1024, compression="gzip", undecodable=True
    )
    assert size == 20 * 1024 * 1024 and letter.original == b"Z" * len(letter.original)


async def test_a_letter_the_broker_refuses_is_sent_minimal_and_the_request_still_answered(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    """A worker whose producer limit is set above the broker's ``message.max.bytes`` keeps a
    5 MiB original whole; the broker refuses that letter (its produce is awaited), so the
    minimal letter goes instead: no original, the whole original's size and hash, and the
    refusal in its detail. The request is still answered and the session goes on."""
    roomy = pipeline_settings(kafka_settings, tmp_path, producer_max_request_size=8 * 1024**2)
    await prepare(roomy)
    async with running_worker(roomy), TurnClient(roomy) as turn_client:
        who = f"huge-{uuid.uuid4().hex[:10]}"
        key = customer_says(who, "x").session_key.encode()
        turn_id = f"huge-{uuid.uuid4().hex[:8]}"
        value = _request_of(who, turn_id, 5 * 1024 * 1024)
        await _produce(roomy, key, value, turn_id, "gzip")

        response = await turn_client.response(turn_id, timeout=120)
        assert response.error is not None and response.error.code == "too_large"
        letter = await dead_letter_of(roomy, key)
        assert letter.original == b"" and letter.reason == "too_large"
        assert (letter.original_size, letter.original_sha256) == (
            len(value),
            hashlib.sha256(value).hexdigest(),
        )
        assert "original not kept" in letter.detail and "TooLarge" in letter.detail

        after = await turn_client.send(customer_says(who, "where is my order A-10024?"))
        assert (await turn_client.response(after, timeout=120)).status is ResponseStatus.OK
