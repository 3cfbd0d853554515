"""Fixes to faust-streaming's offset bookkeeping that the chaos soak (bench/chaos.py)
needed: each of the first three defects let Faust commit the offset of a record the agent
had not processed, which a crash or a rebalance then turns into a lost customer request;
the fourth part reads such a record again instead of waiting for the next rebalance.

**Acks of stale messages.**
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

**The commit past a record still in progress.** With agent concurrency > 1, records of a
partition finish out of order. Faust's ``Consumer._new_offset`` refuses to commit when the
lowest acked offset is above the committed one by more than one, but the committed offset is
already the *next* offset to read, so a record still in progress right at the committed
offset was stepped over: acked [98] with 97 committed committed 99 while 97 was still queued
behind busy actors; the rebalance that followed dropped 97 from the queue and nothing read it
again (two requests lost in two soak runs, at the same kill). The fix: no commit while the
lowest acked offset is above the committed offset. Upstream: faust-streaming#312 (fixed in
#313 for a gap of more than one) and the ``batch[-1] + 1`` change discussed in #318.

**Offsets taken as done because they were not delivered.** When Faust's fetch loop sees a
record whose offset jumps past the last one it read, it records the offsets in between as a
"gap" and commits them as if processed: right for compacted or transactional topics, which
the pipeline's topics are not (delete retention, no transactions), so here a jump only means
records that were fetched and dropped around a rebalance (a third soak run lost two requests
this way: 36 committed as done, never seen by the agent). Gaps are no longer recorded, so
such a record holds the commit back instead. Upstream: faust-streaming#606 (open: "Wrong
offset commit in case of gaps", the behaviour #378 brought back for non-compacted topics).

**A hole that holds the commit back is read again.** If the record at the committed offset
is still not done :data:`REREAD_AFTER_S` after later records were, the partition is sought
back to it: the record is delivered again, and the records after it, which every agent
drops as already seen (by turn id).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from faust.transport.consumer import Consumer
from mode.utils.futures import notify

from streams.pipeline.faust_versions import check_patched_libraries

logger = logging.getLogger(__name__)

_PATCHED = "_turnstream_offset_fixes"
REREAD_AFTER_S = 30.0
"""Longer than a slow turn stage (an LLM call with retries), shorter than ``turn_stall_s``."""


def fix_offset_commits() -> None:
    """Install the fixes once per process (every app build calls it)."""
    if getattr(Consumer, _PATCHED, False):
        return
    check_patched_libraries()
    _refuse_stale_acks()
    _no_commit_past_the_head()
    _no_gaps()
    setattr(Consumer, _PATCHED, True)


def _refuse_stale_acks() -> None:
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


def _no_commit_past_the_head() -> None:
    original = Consumer._new_offset

    def _new_offset(self: Any, tp: Any) -> int | None:
        acked = self._acked[tp]
        committed = self._committed_offset[tp]
        held: dict[Any, float] = self.__dict__.setdefault("_turnstream_held_since", {})
        if acked and committed is not None and min(acked) > committed:
            since = held.setdefault(tp, time.monotonic())
            if time.monotonic() - since > REREAD_AFTER_S:
                logger.warning(
                    "%s[%d]@%d not done %.0f s after later records: reading it again",
                    tp.topic,
                    tp.partition,
                    committed,
                    REREAD_AFTER_S,
                )
                held[tp] = time.monotonic()
                rereads: set[Any] = self.__dict__.setdefault("_turnstream_rereads", set())
                task = asyncio.ensure_future(self.seek(tp, committed))
                rereads.add(task)
                task.add_done_callback(rereads.discard)
            return None  # the record at `committed` is not done yet
        held.pop(tp, None)
        result: int | None = original(self, tp)
        return result

    Consumer._new_offset = _new_offset  # type: ignore[method-assign]


def _no_gaps() -> None:
    async def _add_gap(self: Any, tp: Any, offset_from: int, offset_to: int) -> None:
        logger.warning(
            "%s[%d]: offsets %d..%d were not delivered; they stay uncommitted",
            tp.topic,
            tp.partition,
            offset_from,
            offset_to - 1,
        )

    Consumer._add_gap = _add_gap  # type: ignore[method-assign]
