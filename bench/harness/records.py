"""The records a pipeline wrote, read back from its topics: every record of the traced
topics (the turn topics, the retrieval topics and the table changelogs) of one topic prefix,
counted by topic and, for the turns asked about, grouped by turn id (bench/turn_trace.py,
and ``records_per_turn`` of bench/turns.py)."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

from aiokafka import AIOKafkaConsumer
from pydantic import BaseModel

from schemas.codec import CodecError, decode
from streams.settings import Settings

TRACED = ("turn.", "retrieval.", "table.")
IDLE_POLLS = 3
"""Reading stops after this many empty one-second polls in a row."""


def turn_of(model: BaseModel) -> str | None:
    """The turn a pipeline record belongs to (a gate names its turn in flight, if any)."""
    for holder in (model, getattr(model, "record", None), getattr(model, "in_flight", None)):
        turn_id = getattr(holder, "turn_id", None)
        if isinstance(turn_id, str):
            return turn_id
    return None


async def read_records(
    settings: Settings, turns: set[str]
) -> tuple[dict[str, list[tuple[int, str]]], Counter[str]]:
    """Turn id -> [(producer timestamp ms, topic without prefix)] over the traced topics, and
    every record counted by topic (state records name no turn). With no ``turns``, only the
    counts (no record is decoded)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers, auto_offset_reset="earliest"
    )
    await consumer.start()
    records: dict[str, list[tuple[int, str]]] = defaultdict(list)
    counts: Counter[str] = Counter()
    try:
        prefix = f"{settings.topic_prefix}."
        names = [
            t
            for t in await consumer.topics()
            if t.startswith(prefix) and t[len(prefix) :].startswith(TRACED)
        ]
        consumer.subscribe(names)
        idle = 0
        while idle < IDLE_POLLS:
            batch = await consumer.getmany(timeout_ms=1000)
            idle = 0 if batch else idle + 1
            for tp, messages in batch.items():
                topic = tp.topic[len(prefix) :]
                counts[topic] += len(messages)
                for message in messages if turns else ():
                    try:
                        turn_id = turn_of(decode(message.value or b""))
                    except CodecError:
                        continue
                    if turn_id in turns:
                        records[turn_id].append((message.timestamp, topic))
    finally:
        await consumer.stop()
    return records, counts


def per_turn(counts: Counter[str], turns: int) -> dict[str, Any]:
    """``records_per_turn`` (by topic) and ``records_per_turn_total`` over ``turns`` sent."""
    n = max(1, turns)
    return {
        "records_per_turn": {t: round(c / n, 2) for t, c in sorted(counts.items())},
        "records_per_turn_total": round(sum(counts.values()) / n, 2),
    }
