"""A fix to faust-streaming's offset bookkeeping that the chaos soak (bench/chaos.py) needed.

During a rebalance Faust's stream skips the events it fetched before it (their generation
is stale, or flow control is paused) so that they are read again from the committed offset
afterwards, but it also *acks* them, which marks their offsets safe to commit. When the
commit of those acks lands before the consumer seeks back to the committed offset (the
partition stayed with the same worker), the records are never read again: the soak lost
four customer requests this way (offsets 32-34 of one partition were committed as 36
without ever reaching the session agent; see faust-streaming#221/#223 for where the skip
comes from).

The fix: an ack of a message fetched in an earlier generation, or made while the flow is
paused for a rebalance, is refused. Its offset is not committed, so it is read and
processed again after the rebalance (at least once: every agent of the pipeline drops what
it has already seen by turn id). The message is still let go from the unacked set, so that
Faust's wait for in-progress events before a rebalance does not wait for it.
"""

from __future__ import annotations

import logging
from typing import Any

from faust.transport.consumer import Consumer
from mode.utils.futures import notify

logger = logging.getLogger(__name__)

_PATCHED = "_turnstream_refuses_stale_acks"


def refuse_stale_acks() -> None:
    """Install the fix once per process (every topology calls it)."""
    if getattr(Consumer, _PATCHED, False):
        return
    original = Consumer.ack

    def ack(self: Any, message: Any) -> bool:
        app = self.app
        stale = message.generation_id is not None and (
            message.generation_id != app.consumer_generation_id
        )
        if stale or not app.flow_control.is_active():
            logger.info(
                "not acking %s[%d]@%d: fetched before a rebalance, it will be read again",
                message.topic,
                message.partition,
                message.offset,
            )
            self._unacked_messages.discard(message)
            notify(self._waiting_for_ack)
            return False
        result: bool = original(self, message)
        return result

    Consumer.ack = ack  # type: ignore[method-assign]
    setattr(Consumer, _PATCHED, True)
