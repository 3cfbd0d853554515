"""The chaos soak's load and faults (bench/chaos.py): conversation slots paced to a rate, worker
SIGKILLs and restarts, one broker restart, and what each fault left in flight."""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import uuid
from dataclasses import dataclass, field
from typing import Any

from bench.harness.pipeline import AGENT, TENANT
from schemas.domain.turn_input import Channel, TurnInput
from streams.local_kafka import LocalKafka, LocalKafkaError
from streams.settings import Settings
from streams.turn_client import TurnClient
from streams.worker_process import WorkerProcess

SCRIPTS: tuple[tuple[str, ...], ...] = (
    (
        "Hi, I'd like a refund for order A-10023, it arrived broken.",
        "Yes please, go ahead.",
        "thanks",
    ),
    ("hi", "where is my order A-10024?", "and A-10023?", "thanks, bye"),
    (
        "I need to change my shipping address",
        "it's for order A-10024",
        "12 Baker Street, London NW1 6XE",
        "thank you",
    ),
    ("do you ship to Canada?", "what is your return policy?", "I want to return a jacket", "ok"),
)
"""Conversations that move state: scenarios entered and stepped through, variables set,
rules fired, tools called."""


BROKER_CALM_S = 15.0
BROKER_UP_TRIES = 3
"""Starts of the broker after its planned stop: on a loaded machine a start can miss
:class:`LocalKafka`'s readiness deadline (it is then killed); the soak starts it again on the
same data dir and records how many starts it took (``up_attempts``)."""


@dataclass
class Turn:
    turn_id: str
    conversation: int
    sent_at: float
    answered_at: float | None = None


@dataclass
class Conversation:
    channel_id: str
    messages: tuple[str, ...]
    turn_ids: list[str] = field(default_factory=list)


@dataclass
class Fault:
    kind: str
    target: str
    at_s: float
    in_flight: list[str]
    down_s: float = 0.0
    up_attempts: int = 1


class Soak:
    """The load, the faults and what was seen, on one clock (``loop.time()``)."""

    def __init__(self, args: argparse.Namespace, settings: Settings, broker: LocalKafka) -> None:
        self.args = args
        self.settings = settings
        self.broker = broker
        self.rng = random.Random(args.seed)
        self.run = uuid.uuid4().hex[:6]
        self.turns: dict[str, Turn] = {}
        self.conversations: list[Conversation] = []
        self.faults: list[Fault] = []
        self.unplanned_exits: list[dict[str, Any]] = []
        self.send_retries = 0
        self.stalled = 0
        self.workers: list[WorkerProcess] = []
        self.names: list[str] = []
        """Each worker's name in faults and messages (``worker0``, ..., ``analytics``)."""
        self.planned_down: set[int] = set()
        self.no_kills = (float("inf"), float("inf"))
        """No SIGKILL from a little before the broker stops until a while after it is back,
        so that the broker's restart is seen by running workers."""
        self.t0 = 0.0
        self.pace = 0.0

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def elapsed(self) -> float:
        return self.now() - self.t0

    def name(self, i: int) -> str:
        return self.names[i] if i < len(self.names) else f"worker{i}"

    def in_flight(self) -> list[str]:
        return [t.turn_id for t in self.turns.values() if t.answered_at is None]

    # -- load -----------------------------------------------------------------------------

    async def _paced(self) -> None:
        """At most ``--rate`` sends per second over all slots."""
        slot = max(self.now(), self.pace)
        self.pace = slot + 1.0 / self.args.rate
        await asyncio.sleep(max(0.0, slot - self.now()))

    async def _send(self, client: TurnClient, given: TurnInput, turn_id: str) -> None:
        """Send with retries: while the broker is down a send fails or times out; the same turn
        id is sent again (the pipeline treats a repeated request id as the same turn)."""
        while True:
            try:
                await client.send(given, turn_id)
                return
            except Exception as exc:  # broker down: aiokafka raises KafkaError / timeouts
                self.send_retries += 1
                logging.getLogger("chaos").info("send of %s failed (%s); retrying", turn_id, exc)
                await asyncio.sleep(1.0)

    async def slot(self, client: TurnClient, n: int, end: float) -> None:
        k = 0
        while self.now() < end:
            conversation = Conversation(
                channel_id=f"chaos-{self.run}-{n}-{k}",
                messages=SCRIPTS[(n + k) % len(SCRIPTS)],
            )
            index = len(self.conversations)
            self.conversations.append(conversation)
            k += 1
            for message in conversation.messages:
                if self.now() >= end:
                    break
                await self._paced()
                turn_id = f"turn-{uuid.uuid4().hex}"
                given = TurnInput(
                    tenant_id=TENANT,
                    agent_id=AGENT,
                    channel=Channel.WEBCHAT,
                    channel_id=conversation.channel_id,
                    message=message,
                )
                turn = Turn(turn_id, index, self.now())
                self.turns[turn_id] = turn
                conversation.turn_ids.append(turn_id)
                await self._send(client, given, turn_id)
                try:
                    await client.response(turn_id, timeout=self.args.turn_timeout)
                except TimeoutError:
                    self.stalled += 1
                    break
                self._answered(turn)

    def _answered(self, turn: Turn) -> None:
        if turn.answered_at is None:
            turn.answered_at = self.now()

    async def watch_answers(self, client: TurnClient) -> None:
        """Answer times of turns whose slot stopped waiting (stalled ones answered late)."""
        while True:
            seen = client.responses()
            for turn in self.turns.values():
                if turn.answered_at is None and turn.turn_id in seen:
                    self._answered(turn)
            await asyncio.sleep(0.2)

    # -- faults ---------------------------------------------------------------------------

    async def kill_loop(self, i: int, start: float, stop: float) -> None:
        low, high = self.args.kill_every
        await asyncio.sleep(max(0.0, start - self.now()))
        while True:
            await asyncio.sleep(self.rng.uniform(low, high))
            while self.no_kills[0] <= self.now() < self.no_kills[1]:
                await asyncio.sleep(1.0)
            if self.now() >= stop:
                return
            worker = self.workers[i]
            self.planned_down.add(i)
            fault = Fault("kill", self.name(i), self.elapsed(), self.in_flight())
            await asyncio.to_thread(worker.kill)
            delay = self.rng.uniform(*self.args.restart_after)
            fault.down_s = round(delay, 2)
            self.faults.append(fault)
            print(f"[{fault.at_s:6.1f} s] SIGKILL {fault.target}, {len(fault.in_flight)} in flight")
            await asyncio.sleep(delay)
            worker.start()
            self.planned_down.discard(i)

    async def broker_restart(self, at: float) -> None:
        self.no_kills = (at - BROKER_CALM_S, float("inf"))
        await asyncio.sleep(max(0.0, at - self.now()))
        fault = Fault("broker_restart", "broker", self.elapsed(), self.in_flight())
        print(f"[{fault.at_s:6.1f} s] stopping the broker, {len(fault.in_flight)} in flight")
        t = self.now()
        await asyncio.to_thread(self.broker.down)
        await asyncio.sleep(self.args.broker_down)
        for attempt in range(1, BROKER_UP_TRIES + 1):
            try:
                await asyncio.to_thread(self.broker.up)
                break
            except LocalKafkaError as exc:
                if attempt == BROKER_UP_TRIES:
                    raise
                why = str(exc).splitlines()[0]
                print(f"[{self.elapsed():6.1f} s] broker start {attempt} failed ({why}); again")
        fault.up_attempts = attempt
        fault.down_s = round(self.now() - t, 2)
        self.faults.append(fault)
        print(f"[{self.elapsed():6.1f} s] broker back after {fault.down_s} s")
        self.no_kills = (self.no_kills[0], self.now() + BROKER_CALM_S)

    async def supervise(self) -> None:
        """Start again a worker that exited without being killed here."""
        while True:
            await asyncio.sleep(1.0)
            for i, worker in enumerate(self.workers):
                if i in self.planned_down or worker.alive():
                    continue
                name, code = self.name(i), worker.exit_code()
                self.unplanned_exits.append(
                    {"worker": name, "at_s": round(self.elapsed(), 1), "code": code}
                )
                print(f"[{self.elapsed():6.1f} s] {name} exited ({code}): restart")
                worker.start()

    # -- figures --------------------------------------------------------------------------

    def recovery(self) -> list[dict[str, Any]]:
        found = []
        for fault in self.faults:
            at = self.t0 + fault.at_s
            answered = [self.turns[t].answered_at for t in fault.in_flight]
            done = None
            if all(a is not None for a in answered):
                done = round(max((a for a in answered if a is not None), default=at) - at, 2)
            later = [
                t.answered_at
                for t in self.turns.values()
                if t.answered_at is not None and t.answered_at > at
            ]
            found.append(
                {
                    "kind": fault.kind,
                    "target": fault.target,
                    "at_s": round(fault.at_s, 1),
                    "down_s": fault.down_s,
                    "up_attempts": fault.up_attempts,
                    "in_flight": len(fault.in_flight),
                    "in_flight_answered_s": done,
                    "first_answer_s": round(min(later) - at, 2) if later else None,
                }
            )
        return found
