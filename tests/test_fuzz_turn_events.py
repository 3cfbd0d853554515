"""Hostile turn events: missing fields, wrong types, unicode edge cases and 10 MB messages are
refused with a ``ValidationError`` that names the field (or a ``CodecError`` on the wire),
never a crash; whatever is accepted survives the codec unchanged. Records the pipeline cannot
use become dead letters whatever their key, headers and size.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    RecordTooLargeError,
)
from aiokafka.producer.producer import DefaultRecordBatchBuilder
from faust.exceptions import ProducerSendError
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from schemas.codec import CodecError, decode_as, encode
from schemas.domain.phase import Phase
from schemas.domain.turn_input import Channel
from schemas.events.dead_letter import DeadLetter
from schemas.events.turn_requested import TurnRequested
from schemas.events.turn_response import ResponseStatus
from schemas.fields import MAX_MESSAGE_CHARS
from schemas.samples import T0, turn_input
from schemas.settings import DEFAULT_PRODUCER_MAX_REQUEST_SIZE
from sinks.analytics.rows import dead_letter_rows
from streams.pipeline.rejects import (
    AGENT_ID_HEADER,
    KEPT_BY_DEFAULT,
    MAX_KEY_BYTES,
    TURN_ID_HEADER,
    RawRecord,
    dead_letter,
    deliver,
    input_from_record,
    letter_for,
    original_bound,
    rejection,
)

TEN_MB = 10 * 1024 * 1024
VALID = TurnRequested(turn_id="turn-1", input=turn_input(), sent_at=T0).model_dump(mode="json")

REQUIRED = [
    ("turn_id",),
    ("input",),
    ("sent_at",),
    ("input", "tenant_id"),
    ("input", "agent_id"),
    ("input", "channel"),
    ("input", "channel_id"),
    ("input", "message"),
]
EVERY_FIELD = [
    *REQUIRED,
    ("input", "customer_id"),
    ("input", "session_id"),
    ("input", "metadata"),
]
TEXT_FIELDS = [
    ("turn_id",),
    ("input", "tenant_id"),
    ("input", "agent_id"),
    ("input", "channel_id"),
    ("input", "customer_id"),
    ("input", "session_id"),
    ("input", "message"),
]


def _changed(path: tuple[str, ...], value: object = None, *, drop: bool = False) -> dict[str, Any]:
    datum: dict[str, Any] = json.loads(json.dumps(VALID))
    target = datum
    for part in path[:-1]:
        target = target[part]
    if drop:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return datum


def _accepted_or_refused(datum: object) -> TurnRequested | None:
    """The model, round-tripped through the codec, or None when it was refused as it should be:
    a ValidationError at construction or a CodecError at encoding."""
    try:
        request = TurnRequested.model_validate(datum)
    except ValidationError as exc:
        assert exc.errors(), "a ValidationError names what is wrong"
        return None
    try:
        data = encode(request)
    except CodecError:
        return None
    assert decode_as(data, TurnRequested) == request
    return request


@pytest.mark.parametrize("path", REQUIRED, ids=".".join)
def test_a_missing_field_is_named_in_the_validation_error(path: tuple[str, ...]) -> None:
    with pytest.raises(ValidationError) as caught:
        TurnRequested.model_validate(_changed(path, drop=True))
    assert (path, "missing") in {(e["loc"], e["type"]) for e in caught.value.errors()}


SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)


def _nested(leaves: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    return st.recursive(
        leaves,
        lambda children: (
            st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children)
        ),
        max_leaves=8,
    )


JSON_VALUES = _nested(SCALARS)
PYTHON_VALUES = _nested(SCALARS | st.binary(max_size=10) | st.datetimes())


@settings(max_examples=300, deadline=None)
@given(path=st.sampled_from(EVERY_FIELD), value=PYTHON_VALUES)
def test_a_field_of_the_wrong_type_is_refused_or_round_trips(
    path: tuple[str, ...], value: object
) -> None:
    _accepted_or_refused(_changed(path, value))


EDGE_TEXTS = [
    "\x00",
    "a\x00b",
    "\ud800",  # lone surrogates cannot be UTF-8
    "x\udfffy",
    "\ufeffBOM",
    "\u202egnp.exe",  # right-to-left override
    "e\u0301" * 50,  # combining marks
    "\U0001f469\u200d\U0001f469\u200d\U0001f467",  # a ZWJ emoji sequence
    "\u2028\u2029\x85",  # unicode line breaks
    "\uffff\ufffe",  # non-characters
    "\u200b",  # zero-width space
    "\u3000",  # ideographic space
    "\U0010ffff",
    "\t\r\n",
    "\U0001f600" * MAX_MESSAGE_CHARS,  # the longest message, of 4-byte characters
    "\U0001f600" * (MAX_MESSAGE_CHARS + 1),
]


@pytest.mark.parametrize("path", TEXT_FIELDS, ids=".".join)
@pytest.mark.parametrize("text", EDGE_TEXTS, ids=range(len(EDGE_TEXTS)))
def test_unicode_edge_cases_are_refused_or_round_trip(path: tuple[str, ...], text: str) -> None:
    accepted = _accepted_or_refused(_changed(path, text))
    if accepted is not None:
        given: Any = accepted.model_dump()
        for part in path:
            given = given[part]
        assert given == text  # kept exactly: no normalisation behind the sender's back


@settings(max_examples=200, deadline=None)
@given(
    path=st.sampled_from(TEXT_FIELDS),
    text=st.text(st.characters(codec=None, exclude_categories=()), max_size=40),
)
def test_any_unicode_text_is_refused_or_round_trips(path: tuple[str, ...], text: str) -> None:
    _accepted_or_refused(_changed(path, text))


@pytest.mark.parametrize(
    "path", [("input", "message"), ("input", "channel_id"), ("turn_id",)], ids=".".join
)
def test_a_10_mb_field_is_refused_with_a_short_error(path: tuple[str, ...]) -> None:
    with pytest.raises(ValidationError) as caught:
        TurnRequested.model_validate(_changed(path, "x" * TEN_MB))
    assert [(e["loc"], e["type"]) for e in caught.value.errors()] == [(path, "string_too_long")]
    assert len(str(caught.value)) < 2000  # pydantic shows a cut of the value, not all of it


def test_10_mb_of_metadata_is_refused() -> None:
    many = {f"k{i}": "v" * 1000 for i in range(TEN_MB // 1000)}
    one_huge = {"k": "v" * TEN_MB}
    for metadata in (many, one_huge):
        with pytest.raises(ValidationError) as caught:
            TurnRequested.model_validate(_changed(("input", "metadata"), metadata))
        assert caught.value.errors()[0]["loc"][:2] == ("input", "metadata")


def test_a_10_mb_json_document_is_refused() -> None:
    document = json.dumps(_changed(("input", "message"), "y" * TEN_MB))
    with pytest.raises(ValidationError):
        TurnRequested.model_validate_json(document)


@pytest.mark.parametrize("depth", [100, 10_000, 1_000_000])
def test_deeply_nested_json_is_refused_not_a_recursion_error(depth: int) -> None:
    document = json.dumps(VALID)[:-1] + ', "extra": ' + "[" * depth + "]" * depth + "}"
    with pytest.raises(ValidationError):
        TurnRequested.model_validate_json(document)


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=200) | JSON_VALUES.map(json.dumps).map(str.encode))
def test_random_json_bytes_are_refused_with_a_validation_error(raw: bytes) -> None:
    with contextlib.suppress(ValidationError):
        TurnRequested.model_validate_json(raw)


# -- what the pipeline does with a record it cannot use --------------------------------------

KEYS = st.one_of(
    st.none(),
    st.binary(max_size=40),
    st.sampled_from([b"acme-shop:webchat:bob", b"acme-shop:fax:bob", b"::", b"acme-shop"]),
)
HEADER_VALUES = st.binary(max_size=40) | st.sampled_from([b"turn-9", b"support", b"\xff\xfe"])


@settings(max_examples=200, deadline=None)
@given(
    key=KEYS,
    value=st.binary(max_size=300),
    headers=st.dictionaries(st.sampled_from([TURN_ID_HEADER, AGENT_ID_HEADER, "x"]), HEADER_VALUES),
)
def test_any_record_becomes_a_dead_letter_with_its_bytes(
    key: bytes | None, value: bytes, headers: dict[str, bytes]
) -> None:
    record = RawRecord("turn.requested", 0, 7, key, value, headers)

    letter = decode_as(dead_letter(record, "codec.bad_marker", "detail"), DeadLetter)

    assert (letter.key, letter.original) == (key, value)


PRODUCER_LIMITS = [128 * 1024, DEFAULT_PRODUCER_MAX_REQUEST_SIZE, 8 * 1024 * 1024]
HOSTILE_KEYS = [None, b"acme-shop:webchat:bob", b"k" * 5000, b"\xff" * 1_000_000]
WIDE_DETAIL = "\U0001f600" * 10_000  # 40,000 bytes of UTF-8 offered as the detail


def _produced_size(key: bytes | None, value: bytes) -> int:
    """What aiokafka's producer measures against its ``max_request_size``."""
    return int(DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, []))


@pytest.mark.parametrize("limit", PRODUCER_LIMITS)
@pytest.mark.parametrize("key", HOSTILE_KEYS, ids=["no-key", "session", "5k", "1m"])
def test_a_10_mb_record_becomes_a_dead_letter_below_the_producer_limit_with_its_size_and_hash(
    limit: int, key: bytes | None
) -> None:
    """The promise the real produce needs (issue 20): whatever the record, its encoded dead
    letter, keyed as the pipeline sends it, fits the producer's request limit, keeps the
    original's first bytes and names the whole original by size and SHA-256."""
    value = bytes(range(256)) * (TEN_MB // 256)
    record = RawRecord("turn.requested", 0, 7, key, value, {})

    encoded = dead_letter(record, "too_large", WIDE_DETAIL, keep=original_bound(limit))
    letter = decode_as(encoded, DeadLetter)

    assert _produced_size(letter.key, encoded) <= limit
    assert 0 < len(letter.original) < len(value) and letter.truncated
    assert value.startswith(letter.original)
    assert letter.original_size == TEN_MB
    assert letter.original_sha256 == hashlib.sha256(value).hexdigest()
    assert f"first {len(letter.original)} of {TEN_MB} bytes" in letter.detail
    if key is not None:
        assert letter.key == key[:MAX_KEY_BYTES]


def test_a_record_that_fits_is_kept_whole_with_its_size_and_hash() -> None:
    value = b"z" * (KEPT_BY_DEFAULT - 1)
    record = RawRecord("turn.requested", 0, 7, b"acme-shop:webchat:bob", value, {})
    letter = decode_as(dead_letter(record, "too_large", "over the limit"), DeadLetter)
    assert letter.original == value and not letter.truncated
    assert (letter.original_size, letter.original_sha256) == (
        len(value),
        hashlib.sha256(value).hexdigest(),
    )
    assert "truncated" not in letter.detail


def test_analytics_counts_the_whole_original_of_a_truncated_letter() -> None:
    value = b"q" * TEN_MB
    record = RawRecord("turn.requested", 0, 7, b"acme-shop:webchat:bob", value, {})
    letter = letter_for(record, "too_large", "over the limit")
    (row,) = dead_letter_rows(letter).rows["dead_letters"]
    assert row[6:8] == (TEN_MB, hashlib.sha256(value).hexdigest())


# -- delivering a dead letter: retried, then minimal, never an exception ----------------------


class FlakySend:
    """A producer that fails each send with the next of ``failures`` (None: delivered)."""

    def __init__(self, *failures: Exception | None) -> None:
        self.failures = list(failures)
        self.sent: list[tuple[bytes | None, bytes]] = []
        self.tried = 0

    async def __call__(self, key: bytes | None, value: bytes) -> None:
        self.tried += 1
        failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            raise failure
        self.sent.append((key, value))


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def _big_letter() -> DeadLetter:
    record = RawRecord("turn.requested", 2, 9, b"acme-shop:webchat:bob", b"v" * 5000, {})
    return letter_for(record, "too_large", "over the limit")


def _faust_wrapped(error: Exception) -> Exception:
    """What Faust's producer raises: its own ProducerSendError, from aiokafka's error."""
    try:
        raise ProducerSendError(f"Error while sending: {error!r}") from error
    except ProducerSendError as wrapped:
        return wrapped


@pytest.mark.parametrize(
    "refusal",
    [
        MessageSizeTooLargeError("too big"),
        _faust_wrapped(MessageSizeTooLargeError("too big")),
        RecordTooLargeError(),
    ],
    ids=["aiokafka", "faust", "broker"],
)
async def test_a_dead_letter_the_producer_refuses_as_too_large_is_sent_minimal_at_once(
    refusal: Exception,
) -> None:
    letter = _big_letter()
    send, sleeps = FlakySend(refusal), Sleeps()

    sent = await deliver(letter, send, sleep=sleeps)

    assert send.tried == 2 and sleeps.delays == []  # a size error is not retried
    ((key, value),) = send.sent
    got = decode_as(value, DeadLetter)
    assert got == sent and key == letter.key
    assert got.original == b"" and type(refusal).__name__ in got.detail
    assert (got.reason, got.offset, got.original_size, got.original_sha256) == (
        letter.reason,
        letter.offset,
        letter.original_size,
        letter.original_sha256,
    )


async def test_a_dead_letter_is_retried_with_backoff_then_sent_whole() -> None:
    letter = _big_letter()
    send, sleeps = FlakySend(KafkaTimeoutError(), KafkaConnectionError()), Sleeps()
    sent = await deliver(letter, send, sleep=sleeps)
    assert sent == letter and decode_as(send.sent[0][1], DeadLetter) == letter
    assert sleeps.delays == [0.2, 0.4]


async def test_a_dead_letter_that_cannot_be_sent_ends_minimal_and_nothing_escapes() -> None:
    letter = _big_letter()
    down = [KafkaConnectionError() for _ in range(12)]
    send, sleeps = FlakySend(*down), Sleeps()
    sent = await deliver(letter, send, sleep=sleeps)
    assert send.tried == 13 and len(send.sent) == 1
    assert sent.original == b"" and sent.original_sha256 == letter.original_sha256
    assert max(sleeps.delays) == 5.0  # backoff capped, retried until the broker has it


async def test_a_cancelled_delivery_is_not_swallowed() -> None:
    async def hangs(key: bytes | None, value: bytes) -> None:
        await asyncio.sleep(3600)

    task = asyncio.create_task(deliver(_big_letter(), hangs))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


ID_TEXT = st.from_regex(r"\A[A-Za-z0-9._\-]{1,20}\Z")
ADDRESSABLE_KEYS = st.builds(
    lambda tenant, channel, channel_id: f"{tenant}:{channel.value}:{channel_id}".encode(),
    ID_TEXT,
    st.sampled_from(list(Channel)),
    st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=40),
)


@settings(max_examples=200, deadline=None)
@given(key=ADDRESSABLE_KEYS, agent=ID_TEXT.map(str.encode))
def test_an_undecodable_record_is_answered_when_its_key_and_headers_address_it(
    key: bytes, agent: bytes
) -> None:
    record = RawRecord("t", 0, 1, key, b"junk", {TURN_ID_HEADER: b"turn-9", AGENT_ID_HEADER: agent})

    addressed = input_from_record(record)

    assert addressed is not None, key
    turn_id, given = addressed
    tenant, channel, channel_id = key.decode().split(":", 2)
    assert (given.tenant_id, given.channel.value, given.channel_id, given.agent_id) == (
        tenant,
        channel,
        channel_id,
        agent.decode(),
    )
    assert given.session_key.encode() == key
    response = rejection(turn_id, given, Phase.IDENTIFICATION, "codec.bad_marker", "bad")
    assert response.status is ResponseStatus.ERROR
    assert response.turn_id == "turn-9"
    assert (response.tenant_id, response.channel.value, response.channel_id) == (
        tenant,
        channel,
        channel_id,
    )
    assert response.error is not None and response.error.code == "codec.bad_marker"


@settings(max_examples=200, deadline=None)
@given(
    key=KEYS,
    headers=st.dictionaries(st.sampled_from([TURN_ID_HEADER, AGENT_ID_HEADER, "x"]), HEADER_VALUES),
)
def test_an_undecodable_record_is_left_unaddressed_unless_its_key_and_headers_are_valid(
    key: bytes | None, headers: dict[str, bytes]
) -> None:
    record = RawRecord("t", 0, 1, key, b"junk", headers)
    addressed = input_from_record(record)
    assert (addressed is not None) == _addresses(key, headers)
    if addressed is not None:
        rejection(*addressed, Phase.IDENTIFICATION, "codec.bad_marker", "bad")


_ID = re.compile(r"[^\s\x00-\x1f]{1,128}")


def _addresses(key: bytes | None, headers: dict[str, bytes]) -> bool:
    """The oracle, from the schema's rules: a session key of a known channel, and valid
    ``turn_id`` and ``agent_id`` headers."""
    turn, agent = headers.get(TURN_ID_HEADER), headers.get(AGENT_ID_HEADER)
    if key is None or turn is None or agent is None:
        return False
    parts = key.decode("utf-8", "replace").split(":", 2)
    if len(parts) != 3:
        return False
    tenant, channel, channel_id = parts
    texts = (tenant, agent.decode("utf-8", "replace"), turn.decode("utf-8", "replace"))
    return (
        all(_ID.fullmatch(text) for text in texts)
        and channel in {c.value for c in Channel}
        and 1 <= len(channel_id) <= 256
    )


@pytest.mark.parametrize("turn_id", [b"has space", b"x" * 200, b""])
def test_an_undecodable_record_with_an_invalid_turn_id_header_is_left_unaddressed(
    turn_id: bytes,
) -> None:
    record = RawRecord(
        "t",
        0,
        1,
        b"acme-shop:webchat:bob",
        b"junk",
        {TURN_ID_HEADER: turn_id, AGENT_ID_HEADER: b"support"},
    )
    addressed = input_from_record(record)
    if addressed is not None:
        rejection(*addressed, Phase.IDENTIFICATION, "codec.bad_marker", "bad")


def test_timestamps_without_a_zone_are_refused() -> None:
    naive = datetime(2025, 1, 1)  # no zone: the point of the test
    with pytest.raises(ValidationError):
        TurnRequested(turn_id="t", input=turn_input(), sent_at=naive)
    assert TurnRequested(turn_id="t", input=turn_input(), sent_at=datetime.now(UTC))
