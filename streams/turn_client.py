"""A producer's view of the pipeline: send a customer message, wait for its response.

Used by ``turnstream send`` and ``turnstream demo``, and by the integration tests, exactly
as a channel gateway would use Kafka: publish a ``TurnRequested`` keyed by the session key,
read ``TurnResponse`` records and match them by turn id (a response also answers the
requests coalesced into its turn). With ``records=True`` it also reads ``turn.completed``,
for callers that want the whole trace of a turn (the demo prints it).
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from types import TracebackType

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from schemas.codec import CodecError, decode_as, encode
from schemas.domain.turn_input import TurnInput
from schemas.domain.turn_record import TurnRecord
from schemas.events.completed_turn import CompletedTurn
from schemas.events.turn_requested import TurnRequested
from schemas.events.turn_response import TurnResponse
from streams.kafka_clients import consumer_kwargs, producer_kwargs
from streams.pipeline.rejects import AGENT_ID_HEADER, TURN_ID_HEADER
from streams.settings import Settings
from streams.topics import TURN_COMPLETED, TURN_REQUESTED, TURN_RESPONSES


def new_turn_id() -> str:
    return f"turn-{uuid.uuid4().hex}"


class TurnClient:
    """``async with TurnClient(settings) as client: response = await client.ask(input)``."""

    def __init__(self, settings: Settings, *, records: bool = False) -> None:
        self.settings = settings
        prefix = settings.topic_prefix
        self._requested = TURN_REQUESTED.name(prefix)
        self._topics = [TURN_RESPONSES.name(prefix)]
        if records:
            self._topics.append(TURN_COMPLETED.name(prefix))
        self._producer = AIOKafkaProducer(**producer_kwargs(settings))
        self._consumer = AIOKafkaConsumer(**consumer_kwargs(settings), enable_auto_commit=False)
        self._responses: dict[str, TurnResponse] = {}
        self.response_counts: Counter[str] = Counter()
        """How many response records answered each turn id (exactly one is the promise)."""
        self.response_keys: Counter[tuple[str, bytes]] = Counter()
        """The same per (turn id, session key): a turn id is unique within its session."""
        self.response_places: dict[str, list[str]] = {}
        """Where each response record of a turn lies (``partition@offset sha256-prefix``): when
        a turn is answered twice, identical bytes at two offsets mean a producer retry wrote
        one record twice, different bytes mean the turn was answered again."""
        self._records: dict[str, TurnRecord] = {}
        """The first completed record of each turn: the one its response was made from (the
        session agent answers a turn once and drops a later completion of a re-driven turn)."""
        self.record_counts: Counter[str] = Counter()
        self._arrived = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._producer.start()
        await self._consumer.start()
        partitions = [
            TopicPartition(topic, p)
            for topic in self._topics
            for p in (await self._partitions(topic))
        ]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_end(*partitions)
        for tp in partitions:
            await self._consumer.position(tp)
        self._reader = asyncio.create_task(self._read(), name="turn-client reader")

    async def _partitions(self, topic: str) -> Iterable[int]:
        found = self._consumer.partitions_for_topic(topic)
        if not found:
            await self._consumer._client.force_metadata_update()
            found = self._consumer.partitions_for_topic(topic)
        if not found:
            raise RuntimeError(f"topic {topic} does not exist: run `turnstream topics create`")
        return sorted(found)

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        await self._consumer.stop()
        await self._producer.stop()

    async def __aenter__(self) -> TurnClient:
        try:
            await self.start()
        except BaseException:
            await self.stop()  # else the clients of a failed start are left unclosed
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _read(self) -> None:
        completed = TURN_COMPLETED.name(self.settings.topic_prefix)
        while True:
            batches = await self._consumer.getmany(timeout_ms=200)
            for tp, messages in batches.items():
                for message in messages:
                    try:
                        if tp.topic == completed:
                            record = decode_as(message.value, CompletedTurn).record
                            self._records.setdefault(record.turn_id, record)
                            self.record_counts[record.turn_id] += 1
                        else:
                            response = decode_as(message.value, TurnResponse)
                            for turn_id in [response.turn_id, *response.coalesced_turn_ids]:
                                self._responses.setdefault(turn_id, response)
                                self.response_counts[turn_id] += 1
                                self.response_keys[(turn_id, message.key or b"")] += 1
                                self.response_places.setdefault(turn_id, []).append(
                                    f"{tp.partition}@{message.offset} "
                                    f"{hashlib.sha256(message.value).hexdigest()[:12]}"
                                )
                    except CodecError:
                        continue
            if batches:
                async with self._arrived:
                    self._arrived.notify_all()

    async def send(self, given: TurnInput, turn_id: str | None = None) -> str:
        """Publish one request; returns its turn id."""
        request = TurnRequested(
            turn_id=turn_id or new_turn_id(), input=given, sent_at=datetime.now(UTC)
        )
        await self._producer.send_and_wait(
            self._requested,
            key=given.session_key.encode(),
            value=encode(request),
            headers=[
                (TURN_ID_HEADER, request.turn_id.encode()),
                (AGENT_ID_HEADER, given.agent_id.encode()),
            ],
        )
        return request.turn_id

    async def send_raw(self, key: bytes, value: bytes, headers: dict[str, bytes]) -> None:
        """Publish arbitrary bytes (tests of bad input use it)."""
        await self._producer.send_and_wait(
            self._requested, key=key, value=value, headers=list(headers.items())
        )

    async def response(self, turn_id: str, timeout: float = 30.0) -> TurnResponse:
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: turn_id in self._responses)
        return self._responses[turn_id]

    async def record(self, turn_id: str, timeout: float = 30.0) -> TurnRecord:
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(lambda: turn_id in self._records)
        return self._records[turn_id]

    def records(self) -> dict[str, TurnRecord]:
        """The first completed record of every turn seen so far (``records=True``)."""
        return dict(self._records)

    def responses(self) -> dict[str, TurnResponse]:
        """Every response seen so far, by each turn id it answers."""
        return dict(self._responses)

    async def ask(self, given: TurnInput, timeout: float = 30.0) -> TurnResponse:
        return await self.response(await self.send(given), timeout)
