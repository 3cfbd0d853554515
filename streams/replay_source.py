"""Where ``turnstream replay`` reads recorded turns: the topics, or an export file.

**Topics.** ``turn.completed`` holds each finished turn's record, ``turn.requested`` each
request. A read takes the records of one tenant and agent in a time range (by the record's
``received_at``; the topics are searched from the range's start with the broker's
time index) or in an offset range of ``turn.completed`` (the same range on every partition),
reads up to the end offsets it found when it started, and pairs each record with its
request by turn id. Records whose request is not found (before the range read, or deleted
by retention) are skipped and counted; so are messages that do not decode.

**Export files** are JSON lines: a header ``{"turnstream_export": 1, "masked": ...}``, then
one ``{"request": ..., "record": ...}`` per turn
(:meth:`processors.replay.recording.RecordedTurn.to_json`). By default the export masks
the texts the way analytics masks them (:mod:`sinks.analytics.privacy`: the pack's
sensitive values, the channel address, emails, cards, phone numbers) in the message, the
answer, tool errors, violation details, and every string of the recorded LLM outputs and
errors (a generated answer, a judge's reason). It does not mask structured values
(customer data, tool inputs and outputs): the replay needs them, so a masked export is less
revealing, not anonymous. A replay of masked messages can differ where the mask hid a value
the pack reads (an email the customer typed), and an LLM call whose prompt held a masked
text is not found in the recording any more; ``--no-mask`` keeps texts as recorded.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from processors.replay.recording import RecordedTurn, recorded_turn
from schemas.domain.llm_call import LlmCall
from schemas.domain.turn_record import TurnRecord
from schemas.events.turn_requested import TurnRequested
from schemas.fields import json_text
from streams.settings import Settings

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer

EXPORT_FORMAT = 1
REQUEST_LEAD = timedelta(minutes=10)
"""How far before a time range's start requests are searched (a request is sent before its
record's ``received_at``; a queue of that age is far past any turn budget)."""


@dataclass
class ReadResult:
    """The turns found and what was skipped, for the report."""

    turns: list[RecordedTurn] = field(default_factory=list)
    without_request: int = 0
    undecodable: int = 0
    bad_lines: list[str] = field(default_factory=list)
    masked: bool | None = None
    """Whether an export's texts were masked (its header line says); None for topics."""


@dataclass(frozen=True)
class TopicRange:
    """Which records: by time (``since``/``until``, either open) or by ``turn.completed``
    offsets (``first``/``last``, inclusive, either open)."""

    since: datetime | None = None
    until: datetime | None = None
    first: int | None = None
    last: int | None = None


async def read_topics(
    settings: Settings, tenant_id: str, agent_id: str, span: TopicRange
) -> ReadResult:
    """The recorded turns of one tenant's agent from the topics of ``settings``."""
    from schemas.codec import CodecError, decode_as
    from schemas.events.completed_turn import CompletedTurn
    from streams.topics import TURN_COMPLETED, TURN_REQUESTED

    result = ReadResult()
    records: list[TurnRecord] = []
    requests: dict[str, TurnRequested] = {}
    completed = await _read_topic(
        settings, TURN_COMPLETED.name(settings.topic_prefix), span.since, span
    )
    for value in completed:
        try:
            record = decode_as(value, CompletedTurn).record
        except (CodecError, ValueError):
            result.undecodable += 1
            continue
        if (record.tenant_id, record.agent_id) != (tenant_id, agent_id):
            continue
        received = record.context.received_at
        if span.since is not None and received < span.since:
            continue
        if span.until is not None and received > span.until:
            continue
        records.append(record)
    start = min((r.context.received_at for r in records), default=None)
    lead = start - REQUEST_LEAD if start is not None else None
    wanted = {r.turn_id for r in records}
    for value in await _read_topic(
        settings, TURN_REQUESTED.name(settings.topic_prefix), lead, TopicRange()
    ):
        try:
            request = decode_as(value, TurnRequested)
        except (CodecError, ValueError):
            result.undecodable += 1
            continue
        if request.turn_id in wanted:
            requests[request.turn_id] = request
    for record in records:
        found = requests.get(record.turn_id)
        if found is None:
            result.without_request += 1
            continue
        result.turns.append(recorded_turn(found, record))
    return result


async def _read_topic(
    settings: Settings, topic: str, since: datetime | None, span: TopicRange
) -> list[bytes]:
    """Every value of ``topic`` from ``since`` (or ``span.first``) to the end offsets seen
    now (or ``span.last``), all partitions; a consumer of its own per topic (a consumer's
    metadata covers the topics it was given)."""
    from aiokafka import AIOKafkaConsumer

    from streams.kafka_clients import consumer_kwargs

    consumer = AIOKafkaConsumer(**consumer_kwargs(settings), enable_auto_commit=False)
    try:
        await consumer.start()
        return await _read_assigned(consumer, topic, since, span)
    finally:
        await consumer.stop()  # also after a failed start: it closes the client


async def _read_assigned(
    consumer: AIOKafkaConsumer, topic: str, since: datetime | None, span: TopicRange
) -> list[bytes]:
    from aiokafka.structs import TopicPartition

    partitions = consumer.partitions_for_topic(topic)
    if not partitions:  # the client has no metadata yet (the metadata of every topic)
        await consumer._client.force_metadata_update()
        partitions = consumer.partitions_for_topic(topic)
    if not partitions:
        raise LookupError(f"topic {topic} does not exist: is the topic prefix right?")
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(tps)
    ends: dict[TopicPartition, int] = await consumer.end_offsets(tps)
    starts: dict[TopicPartition, int] = await consumer.beginning_offsets(tps)
    stop = {tp: ends[tp] if span.last is None else min(ends[tp], span.last + 1) for tp in tps}
    if since is not None:
        found = await consumer.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in tps})
        for tp in tps:
            hit = found.get(tp)
            consumer.seek(tp, hit.offset if hit is not None else ends[tp])
    else:
        for tp in tps:
            consumer.seek(tp, max(starts[tp], span.first or 0))
    values: list[bytes] = []
    open_tps = {tp for tp in tps if await consumer.position(tp) < stop[tp]}
    while open_tps:
        batch = await consumer.getmany(*open_tps, timeout_ms=1000)
        for tp, messages in batch.items():
            values.extend(m.value for m in messages if m.offset < stop[tp] and m.value)
        for tp in list(open_tps):
            if await consumer.position(tp) >= stop[tp]:
                open_tps.discard(tp)
    return values


def read_export(path: Path) -> ReadResult:
    """The turns of an export file; a line that does not parse is listed (by line number
    and why), the others are read."""
    result = ReadResult()
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            if number == 1 and line.startswith('{"turnstream_export"'):
                result.masked = bool(json.loads(line).get("masked"))
                continue
            try:
                result.turns.append(RecordedTurn.from_json(line))
            except ValueError as exc:
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                result.bad_lines.append(f"{path}:{number}: {first}")
    return result


def mask_turn(turn: RecordedTurn, sensitive_fields: Collection[str] | None) -> RecordedTurn:
    """The turn with its free texts masked as analytics masks them (see the module doc)."""
    from sinks.analytics.privacy import turn_masker

    mask = turn_masker(turn.record, sensitive_fields)
    request = turn.request.model_copy(
        update={
            "input": turn.request.input.model_copy(
                update={"message": mask(turn.request.input.message)}
            )
        }
    )
    ctx = turn.record.context
    context = ctx.model_copy(
        update={
            "input": ctx.input.model_copy(update={"message": mask(ctx.input.message)}),
            "response_text": mask(ctx.response_text) if ctx.response_text else ctx.response_text,
            "tool_calls": [
                c.model_copy(update={"error": mask(c.error)}) if c.error else c
                for c in ctx.tool_calls
            ],
            "enforcement": [
                e.model_copy(
                    update={
                        "violations": [
                            v.model_copy(update={"detail": mask(v.detail)}) for v in e.violations
                        ]
                    }
                )
                for e in ctx.enforcement
            ],
            "llm_calls": [_masked_call(c, mask) for c in ctx.llm_calls],
        }
    )
    return RecordedTurn(request, turn.record.model_copy(update={"context": context}))


def _masked_call(call: LlmCall, mask: Callable[[str], str]) -> LlmCall:
    if call.output is not None:
        return call.model_copy(
            update={"output": json_text(_mask_strings(json.loads(call.output), mask))}
        )
    return call.model_copy(update={"error": mask(call.error)}) if call.error else call


def _mask_strings(value: Any, mask: Callable[[str], str]) -> Any:
    """Every string inside a JSON value masked; keys and other values as they are."""
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, list):
        return [_mask_strings(v, mask) for v in value]
    if isinstance(value, dict):
        return {k: _mask_strings(v, mask) for k, v in value.items()}
    return value


def write_export(
    turns: Iterable[RecordedTurn],
    path: Path,
    sensitive_fields: Collection[str] | None,
    *,
    mask: bool,
) -> int:
    """Write the turns as JSON lines (masked unless ``mask`` is false); returns how many."""
    count = 0
    with path.open("w", encoding="utf-8") as out:
        out.write(json.dumps({"turnstream_export": EXPORT_FORMAT, "masked": mask}) + "\n")
        for turn in turns:
            out.write((mask_turn(turn, sensitive_fields) if mask else turn).to_json() + "\n")
            count += 1
    return count
