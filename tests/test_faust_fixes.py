"""The Faust fix the chaos soak needed: a message fetched before a rebalance is not acked, so
its offset is not committed and it is read again (streams/pipeline/faust_fixes.py)."""

from __future__ import annotations

import faust
from faust.types import TP
from faust.types.tuples import Message

from streams.pipeline.faust_fixes import refuse_stale_acks

TOPIC = "t.turn.requested"


def _app_and_consumer() -> tuple[faust.App, faust.transport.consumer.Consumer]:
    refuse_stale_acks()
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
