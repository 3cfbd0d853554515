"""Splicing the bytes a field value was decoded from gives the bytes encoding would."""

from __future__ import annotations

import gc

import pytest

from schemas.avro_files import AVRO_DIR
from schemas.codec import Codec, CodecError, CodecErrorReason, default_codec
from schemas.events.pipeline_state import RetrievalJoin, SessionGate
from schemas.events.retrieval import RetrievalResult
from schemas.events.turn_envelope import TurnEnvelope
from schemas.events.turn_requested import TurnRequested
from schemas.registry import EVENT_MODELS
from schemas.samples import sample_events


def fresh(recent_bytes: int = 0) -> Codec:
    """A codec that remembers nothing: what encoding without splicing gives."""
    return Codec(EVENT_MODELS, AVRO_DIR, recent_bytes=recent_bytes)


def samples_of(kind: type) -> list:  # type: ignore[type-arg]
    return [e for e in sample_events() if isinstance(e, kind)]


def test_a_join_with_a_decoded_envelope_and_results_encodes_the_same_bytes() -> None:
    codec = default_codec()
    (envelope,) = samples_of(TurnEnvelope)
    results = samples_of(RetrievalResult)
    decoded_envelope = codec.decode_as(codec.encode(envelope), TurnEnvelope)
    decoded_result = codec.decode_as(codec.encode(results[0]), RetrievalResult)
    assert codec._body(decoded_envelope) is not None
    for join in (
        RetrievalJoin(turn_id=envelope.turn_id, envelope=decoded_envelope),
        RetrievalJoin(turn_id="t", envelope=decoded_envelope, results=[decoded_result]),
        RetrievalJoin(turn_id="t", envelope=decoded_envelope, results=[results[1], decoded_result]),
        RetrievalJoin(turn_id="t", results=[decoded_result, results[1]], done=True),
        RetrievalJoin(turn_id="t", envelope=envelope, results=[decoded_result]),
        RetrievalJoin(
            turn_id="t", envelope=decoded_envelope, deadline=envelope.emitted_at, done=True
        ),
    ):
        data = codec.encode(join)
        assert data == fresh().encode(join)
        assert codec.decode_as(data, RetrievalJoin) == join


def test_a_gate_with_a_decoded_request_encodes_the_same_bytes() -> None:
    codec = default_codec()
    (request,) = samples_of(TurnRequested)
    decoded = codec.decode_as(codec.encode(request), TurnRequested)
    (gate,) = samples_of(SessionGate)
    for changed in (
        gate.model_copy(update={"in_flight": decoded}),
        gate.model_copy(update={"in_flight": None, "waiting": [decoded, request, decoded]}),
    ):
        data = codec.encode(changed)
        assert data == fresh().encode(changed)
        assert codec.decode_as(data, SessionGate) == changed


def test_only_models_that_are_fields_elsewhere_are_remembered_and_only_while_alive() -> None:
    writer, codec = fresh(), fresh()
    (envelope,) = samples_of(TurnEnvelope)
    (request,) = samples_of(TurnRequested)
    response = sample_events()[-1]
    codec.decode(writer.encode(response))
    decoded = codec.decode_as(writer.encode(envelope), TurnEnvelope)
    assert len(codec._bodies) == 1 and codec._body(decoded) is not None
    codec.decode_as(writer.encode(request), TurnRequested)  # dropped at once: not kept
    del decoded
    gc.collect()
    assert codec._bodies == {}


def test_a_record_encoded_or_decoded_lately_decodes_to_the_same_model_without_parsing() -> None:
    codec = fresh(recent_bytes=1024 * 1024)
    (envelope,) = samples_of(TurnEnvelope)
    data = codec.encode(envelope)
    assert codec.decode_as(bytes(bytearray(data)), TurnEnvelope) is envelope
    read = fresh(recent_bytes=1024 * 1024)
    first = read.decode_as(bytes(bytearray(data)), TurnEnvelope)
    assert first == envelope and first is not envelope
    assert read.decode_as(bytes(bytearray(data)), TurnEnvelope) is first


def test_a_recent_record_of_another_type_still_fails_as_unexpected() -> None:
    codec = fresh(recent_bytes=1024 * 1024)
    (envelope,) = samples_of(TurnEnvelope)
    data = codec.encode(envelope)
    with pytest.raises(CodecError) as caught:
        codec.decode_as(data, TurnRequested)
    assert caught.value.reason is CodecErrorReason.UNEXPECTED_TYPE


def test_recent_records_are_forgotten_oldest_first_past_the_byte_limit() -> None:
    events = [e for e in sample_events() if type(e) in EVENT_MODELS.values()]
    sizes = [len(default_codec().encode(e)) for e in events[:3]]
    codec = fresh(recent_bytes=sizes[1] + sizes[2])
    datas = [codec.encode(e) for e in events[:3]]
    newest, middle, oldest = (codec.decode(bytes(bytearray(d))) for d in reversed(datas))
    assert newest is events[2] and middle is events[1]
    assert oldest is not events[0] and oldest == events[0]


def test_recent_records_are_forgotten_oldest_first_past_the_entry_limit() -> None:
    """Small records: 8 MiB of 71-byte gates would be 100k models, ten times their bytes."""
    gates = [SessionGate(customer_id=f"c-{n}") for n in range(5)]
    codec = Codec(EVENT_MODELS, AVRO_DIR, recent_bytes=1024 * 1024, recent_entries=3)
    datas = [codec.encode(g) for g in gates]
    newest_first = [codec.decode_as(bytes(bytearray(d)), SessionGate) for d in reversed(datas)]
    decoded = newest_first[::-1]
    assert all(d is g for d, g in zip(decoded[2:], gates[2:], strict=True))
    assert all(d == g and d is not g for d, g in zip(decoded[:2], gates[:2], strict=True))


def test_a_decode_without_keep_leaves_the_recent_records_as_they_were() -> None:
    """A whole-table scan reads every session once: it must not push out the turns in flight."""
    kept, scanned = SessionGate(customer_id="in-flight"), SessionGate(customer_id="idle")
    codec = Codec(EVENT_MODELS, AVRO_DIR, recent_bytes=1024 * 1024, recent_entries=1)
    data = codec.encode(kept)
    idle = bytes(bytearray(fresh().encode(scanned)))
    assert codec.decode_as(idle, SessionGate, keep=False) == scanned
    assert codec.decode_as(bytes(bytearray(data)), SessionGate) is kept
    assert codec.decode_as(idle, SessionGate, keep=False) is not codec.decode_as(
        idle, SessionGate, keep=False
    )
