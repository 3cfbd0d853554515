"""The Faust fixes the chaos soak needed (streams/pipeline/faust_fixes.py): a message fetched
before a rebalance is not acked, and no offset is committed past a record still in progress;
either way its offset stays uncommitted and it is read again after a crash or rebalance."""

from __future__ import annotations

import asyncio

import faust
import pytest
from faust.types import TP
from faust.types.tuples import Message

from streams.pipeline import faust_fixes
from streams.pipeline.faust_fixes import fix_offset_commits

TOPIC = "t.turn.requested"


def _app_and_consumer() -> tuple[faust.App, faust.transport.consumer.Consumer]:
    fix_offset_commits()
    app = faust.App("faust-fixes-test", broker="kafka://127.0.0.1:9")
    app.topic(TOPIC)  # acks are enabled for the topics agents read
    app.topics._acking_topics.add(TOPIC)
    app.consumer_generation_id = 7
    app.flow_control.resume()
    return app, app.consumer


def _message(offset: int, generation_id: int) -> Message:
    return Message(TOPIC, 0, offset, 0.0, 0, None, b"k", b"v", None, generation_id=generation_id)


def test_a_message_of_the_current_generation_is_acked_for_commit() -> None:
    _app, consumer = _app_and_consumer()
    message = _message(5, generation_id=7)
    consumer._unacked_messages.add(message)
    assert consumer.ack(message)
    assert list(consumer._acked[TP(TOPIC, 0)]) == [5]


def test_a_message_fetched_before_the_last_rebalance_is_not_acked() -> None:
    _app, consumer = _app_and_consumer()
    message = _message(5, generation_id=6)
    consumer._unacked_messages.add(message)
    assert not consumer.ack(message)
    assert not consumer._acked[TP(TOPIC, 0)]  # nothing to commit: it is read again
    assert message not in consumer._unacked_messages  # and the rebalance does not wait for it


def test_an_ack_while_the_flow_is_paused_for_a_rebalance_is_refused() -> None:
    app, consumer = _app_and_consumer()
    app.flow_control.suspend()
    message = _message(5, generation_id=7)
    assert not consumer.ack(message)
    assert not consumer._acked[TP(TOPIC, 0)]


def test_no_commit_past_a_record_still_in_progress_at_the_committed_offset() -> None:
    _app, consumer = _app_and_consumer()
    tp = TP(TOPIC, 0)
    consumer._committed_offset[tp] = 97  # 96 was the last record done: 97 is next
    later = _message(98, generation_id=7)
    consumer._unacked_messages.add(later)
    assert consumer.ack(later)  # 98 finished first (another actor)
    assert consumer._new_offset(tp) is None  # committing 99 would step over 97
    first = _message(97, generation_id=7)
    consumer._unacked_messages.add(first)
    assert consumer.ack(first)
    assert consumer._new_offset(tp) == 99  # both done: commit past both


async def test_offsets_skipped_by_the_fetch_loop_are_not_taken_as_done() -> None:
    _app, consumer = _app_and_consumer()
    tp = TP(TOPIC, 0)
    consumer._committed_offset[tp] = 36
    await consumer._add_gap(tp, 36, 38)  # the loop read 35, then 38: 36 and 37 were dropped
    later = _message(38, generation_id=7)
    consumer._unacked_messages.add(later)
    assert consumer.ack(later)
    assert consumer._new_offset(tp) is None  # not 39: 36 and 37 were never processed


async def test_a_record_that_holds_the_commit_back_is_read_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _app, consumer = _app_and_consumer()
    tp = TP(TOPIC, 0)
    sought: list[tuple[TP, int]] = []

    async def seek(partition: TP, offset: int) -> None:
        sought.append((partition, offset))

    monkeypatch.setattr(consumer, "seek", seek)
    monkeypatch.setattr(faust_fixes, "REREAD_AFTER_S", 0.05)
    consumer._committed_offset[tp] = 36
    later = _message(37, generation_id=7)
    consumer._unacked_messages.add(later)
    assert consumer.ack(later)
    assert consumer._new_offset(tp) is None  # first seen held: the clock starts
    await asyncio.sleep(0.1)
    assert consumer._new_offset(tp) is None  # held too long: 36 is read again
    await asyncio.sleep(0)
    assert sought == [(tp, 36)]
