"""Errors are events: a record the pipeline cannot process goes to the dead-letter topic
with its reason, and whoever sent it gets an error response when it can be addressed.

A record that cannot even be decoded can still be answered when its key is a session key
(``tenant:channel:channel_id``) and it carries the headers ``turn_id`` and ``agent_id``
(producers should set them for this reason); otherwise only the dead letter remains.

A dead letter always fits below the producer's request limit (``producer_max_request_size``):
it keeps a prefix of the original of at most :func:`original_bound` bytes, with the size and
SHA-256 of the whole original, and a key of at most :data:`MAX_KEY_BYTES`. Its produce is
awaited until the broker has it (:func:`deliver`): a failure is retried, then a minimal letter
(no original) is sent, and nothing escapes to crash the agent or let it commit past the record.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka.errors import (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)
from pydantic import ValidationError

from processors.backoff import Backoff
from processors.turn.persist import error_response
from schemas.codec import encode
from schemas.domain.errors import TurnError
from schemas.domain.phase import Phase
from schemas.domain.turn_input import Channel, TurnInput
from schemas.events.dead_letter import DeadLetter
from schemas.events.turn_response import TurnResponse
from schemas.settings import DEFAULT_PRODUCER_MAX_REQUEST_SIZE

logger = logging.getLogger(__name__)

TURN_ID_HEADER = "turn_id"
AGENT_ID_HEADER = "agent_id"
_PLACEHOLDER_MESSAGE = "(undecodable)"

DEAD_LETTER_HEADROOM = 64 * 1024
"""Bytes of a dead letter's record besides its original's prefix: the record key and the
letter's copy of it (:data:`MAX_KEY_BYTES` each), the detail (4,000 characters, up to 16,000
bytes of UTF-8), topic name (256 characters), reason, hash, size, the codec's header and
Kafka's record framing (under 30 KiB together), with room to spare."""
MAX_KEY_BYTES = 4096
"""A dead letter keeps at most this much of the record's key (a session key is at most 512
characters); it is also the dead letter's own record key."""
MAX_DETAIL_CHARS = 4000
DELIVERY_ATTEMPTS = 3
"""Sends of the full letter before the minimal one (one that is too large is not retried)."""
BACKOFF_S = 0.2
BACKOFF_MAX_S = 5.0
SIZE_ERRORS = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError)
"""What a producer or broker says of a record too large: sending it again cannot help."""


def too_large(exc: BaseException) -> bool:
    """Whether ``exc`` or what caused it is a :data:`SIZE_ERRORS` (Faust raises its own
    ``ProducerSendError`` from aiokafka's)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, SIZE_ERRORS):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def original_bound(max_request_size: int) -> int:
    """How many bytes of an original a dead letter keeps, for a producer that sends records of
    up to ``max_request_size`` bytes (its ``max_request_size``)."""
    return max(0, max_request_size - DEAD_LETTER_HEADROOM)


KEPT_BY_DEFAULT = original_bound(DEFAULT_PRODUCER_MAX_REQUEST_SIZE)


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
    record: RawRecord,
    reason: str,
    detail: str,
    at: datetime | None = None,
    *,
    keep: int = KEPT_BY_DEFAULT,
) -> DeadLetter:
    """The DeadLetter of ``record`` (at ``at``, else now): the first ``keep`` bytes of the
    original (see :func:`original_bound`), the size and SHA-256 of all of it, and a key cut
    to :data:`MAX_KEY_BYTES`; a cut says so in the detail. Pipeline stages and sink
    consumers both build theirs here."""
    value = record.value
    original = value[:keep]
    cuts = []
    if len(original) < len(value):
        cuts.append(f"original truncated to its first {len(original)} of {len(value)} bytes")
    key = record.key
    if key is not None and len(key) > MAX_KEY_BYTES:
        cuts.append(f"key truncated to its first {MAX_KEY_BYTES} of {len(key)} bytes")
        key = key[:MAX_KEY_BYTES]
    suffix = f" ({'; '.join(cuts)})" if cuts else ""
    return DeadLetter(
        source_topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=key,
        reason=reason,
        detail=detail[: MAX_DETAIL_CHARS - len(suffix)] + suffix,
        original=original,
        at=at or datetime.now(UTC),
        original_size=len(value),
        original_sha256=hashlib.sha256(value).hexdigest(),
    )


def minimal_letter(letter: DeadLetter, why: str) -> DeadLetter:
    """``letter`` without its original (its size and hash stay): what is sent when the full
    letter could not be."""
    detail = f"{letter.detail[:2000]} (original not kept: {why[:1000]})"
    return letter.model_copy(update={"original": b"", "detail": detail})


def dead_letter(record: RawRecord, reason: str, detail: str, keep: int = KEPT_BY_DEFAULT) -> bytes:
    """The encoded DeadLetter for ``record``, logged."""
    letter = letter_for(record, reason, detail, keep=keep)
    logger.warning(
        "dead letter %s[%d]@%d: %s", record.topic, record.partition, record.offset, reason
    )
    return encode(letter)


Send = Callable[[bytes | None, bytes], Awaitable[None]]
"""Produces (key, value) and returns once the broker has it, or raises."""


async def deliver(
    letter: DeadLetter,
    send: Send,
    *,
    attempts: int = DELIVERY_ATTEMPTS,
    backoff_s: float = BACKOFF_S,
    backoff_max_s: float = BACKOFF_MAX_S,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> DeadLetter:
    """Send ``letter`` (keyed by its key) and return what the broker got. A failed send is
    retried up to ``attempts`` times in all with exponential backoff, at once abandoned when
    the record is too large; then the :func:`minimal_letter` is sent, again and again (backoff
    capped at ``backoff_max_s``) until the broker has it: the caller's record must not be
    committed without its dead letter, and no exception but a cancellation leaves here."""
    delays = Backoff(backoff_s, backoff_max_s).delays()
    failure = "not sent"
    for attempt in range(1, attempts + 1):
        try:
            await send(letter.key, encode(letter))
            return letter
        except Exception as exc:  # every failure is handled here (a cancellation is not one)
            failure = f"{type(exc).__name__}: {exc}"
            logger.warning(
                "dead letter %s[%d]@%d not sent (attempt %d of %d): %s: %s",
                letter.source_topic,
                letter.partition,
                letter.offset,
                attempt,
                attempts,
                type(exc).__name__,
                exc,
            )
            if too_large(exc) or attempt == attempts:
                break
            await sleep(next(delays))
    minimal = minimal_letter(letter, failure)
    value = encode(minimal)
    failures = 0
    while True:
        try:
            await send(minimal.key, value)
            return minimal
        except Exception as exc:  # retried until the broker has it
            failures += 1
            delay = next(delays)
            logger.warning(
                "minimal dead letter %s[%d]@%d not sent (attempt %d; retrying in %.1f s): %s: %s",
                letter.source_topic,
                letter.partition,
                letter.offset,
                failures,
                delay,
                type(exc).__name__,
                exc,
            )
            await sleep(delay)


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
