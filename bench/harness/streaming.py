"""Turns sent through a running pipeline by one :class:`TurnClient`, as a bench sees them:
each timed from just before its ``TurnRequested`` is produced to when its ``TurnResponse``
is consumed, in the bench process, on the loop's clock; and the run's lost and duplicate
answers, from the client's count of response records."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from bench.harness.load import Turn, turn_input
from streams.turn_client import TurnClient


class StreamTurns:
    """The :data:`bench.harness.load.Ask` of a pipeline, over ``client``."""

    def __init__(self, client: TurnClient) -> None:
        self.client = client

    async def ask(self, channel_id: str, message: str, deadline: float) -> Turn:
        """One turn; unanswered (no response) when none came by ``deadline``."""
        loop = asyncio.get_running_loop()
        t = loop.time()
        turn = Turn(await self.client.send(turn_input(channel_id, message)))
        try:
            response = await self.client.response(turn.turn_id, max(0.0, deadline - loop.time()))
        except TimeoutError:
            return turn
        turn.answered_at = loop.time()
        turn.e2e_ms = (turn.answered_at - t) * 1000
        turn.response = response
        return turn

    def counted(self, turns: Sequence[Turn]) -> dict[str, int]:
        """Turns with no response record so far (lost) and extra response records."""
        counts = [self.client.response_counts[t.turn_id] for t in turns]
        return {
            "lost": sum(1 for c in counts if c == 0),
            "duplicates": sum(c - 1 for c in counts if c > 1),
        }
