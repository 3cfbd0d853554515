"""Errors are events: a record the pipeline cannot process goes to the dead-letter topic
with its reason, and whoever sent it gets an error response when it can be addressed.

A record that cannot even be decoded can still be answered when its key is a session key
(``tenant:channel:channel_id``) and it carries the headers ``turn_id`` and ``agent_id``
(producers should set them for this reason); otherwise only the dead letter remains.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import ValidationError

from processors.turn.persist import error_response
from schemas.codec import encode
from schemas.domain.errors import TurnError
from schemas.domain.phase import Phase
from schemas.domain.turn_input import Channel, TurnInput
from schemas.events.dead_letter import MAX_ORIGINAL_BYTES, DeadLetter
from schemas.events.turn_response import TurnResponse

logger = logging.getLogger(__name__)

TURN_ID_HEADER = "turn_id"
AGENT_ID_HEADER = "agent_id"
_PLACEHOLDER_MESSAGE = "(undecodable)"


@dataclass(frozen=True)
class RawRecord:
    """What the pipeline knows of a record it could not use."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]


def letter_for(
    record: RawRecord, reason: str, detail: str, at: datetime | None = None
) -> DeadLetter:
    """The DeadLetter of ``record`` (at ``at``, else now); an oversized original is truncated,
    and says so. Pipeline stages and sink consumers both build theirs here."""
    original = record.value
    if len(original) > MAX_ORIGINAL_BYTES:
        original = original[:MAX_ORIGINAL_BYTES]
        detail = f"{detail} (original truncated to {MAX_ORIGINAL_BYTES} bytes)"
    return DeadLetter(
        source_topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        reason=reason,
        detail=detail[:4000],
        original=original,
        at=at or datetime.now(UTC),
    )


def dead_letter(record: RawRecord, reason: str, detail: str) -> bytes:
    """The encoded DeadLetter for ``record``, logged."""
    letter = letter_for(record, reason, detail)
    logger.warning(
        "dead letter %s[%d]@%d: %s", record.topic, record.partition, record.offset, reason
    )
    return encode(letter)


def input_from_record(record: RawRecord) -> tuple[str, TurnInput] | None:
    """(turn id, a stand-in input) for an undecodable record, from its key and headers."""
    turn_id = record.headers.get(TURN_ID_HEADER)
    agent_id = record.headers.get(AGENT_ID_HEADER)
    if record.key is None or turn_id is None or agent_id is None:
        return None
    tenant, sep, rest = record.key.decode("utf-8", "replace").partition(":")
    channel, sep2, channel_id = rest.partition(":")
    if not (sep and sep2):
        return None
    try:
        given = TurnInput(
            tenant_id=tenant,
            agent_id=agent_id.decode("utf-8", "replace"),
            channel=Channel(channel),
            channel_id=channel_id,
            message=_PLACEHOLDER_MESSAGE,
        )
        turn = turn_id.decode("utf-8", "replace")
        rejection(turn, given, Phase.IDENTIFICATION, "probe", "")  # the id must make a response
    except (ValueError, ValidationError):
        return None
    return turn, given


def rejection(
    turn_id: str, given: TurnInput, phase: Phase, code: str, message: str
) -> TurnResponse:
    """The error response for a rejected turn."""
    return error_response(
        turn_id, given, TurnError(phase=phase, code=code, message=message), datetime.now(UTC)
    )
