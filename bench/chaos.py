"""Soak with faults: a steady load of conversations while workers are SIGKILLed and restarted
at random, and the broker is stopped and restarted once; then every turn is counted and every
session's state is compared with a replay of its turns.

    python bench/chaos.py [--duration 240] [--rate 4] [--sessions 24] [--workers 2]
                          [--partitions 8] [--kill-every 20:45] [--restart-after 1:5]
                          [--broker-at 0.5] [--broker-down 5] [--no-broker-restart]
                          [--seed 7] [--keep] [--json PATH]

Setup (loopback only): a private broker on free ports, its data dir on disk in a temporary
directory, a fresh topic prefix with ``--partitions`` partitions, the example pack published,
``--workers`` processes of ``python -m streams.cli worker`` (each with its own data dir;
analytics off unless ``--analytics``, webhooks off), ready when their consumer groups are
stable.

**Load.** ``--sessions`` conversation slots; each runs conversations one after another, a
conversation being one of :data:`SCRIPTS` sent turn by turn (the next message once the
answer is in, as a customer types), each by a new anonymous web-chat customer. Sends are
paced to at most ``--rate`` turns/s in total. A turn not answered within ``--turn-timeout``
ends its conversation (counted as ``stalled``; it may still be answered before the end).

**Faults.** After ``--calm`` seconds and until ``--calm`` seconds before the end, each
worker is SIGKILLed after a random ``--kill-every`` interval and started again after a random
``--restart-after`` delay. At ``--broker-at`` of the duration the broker is stopped (SIGTERM:
controlled shutdown) and started again ``--broker-down`` seconds later on the same data dir;
no worker is killed from 15 s before the broker's stop until 15 s after it is back, so the
running workers ride the outage out. A worker that exits
on its own is started again and counted in ``unplanned_exits``.

**Counts** (after the load, ``--drain`` seconds for late answers and 3 s of settling):
``sent`` turns, ``received`` turns answered, ``lost`` = sent - received, ``duplicates`` =
response records beyond the first for a turn, ``error_responses`` (status not OK).
``recovery`` per fault: the turns in flight at the fault, and ``in_flight_answered_s``, the
time from the fault until the last of them was answered (what a customer caught by the
fault waited); ``first_answer_s``, until the next answer from any turn.

**State** (``state_mismatches``): the same conversations are replayed, turn by turn with the
same turn ids, through ``processors.turn.in_process.run_turn`` (the same processors over
in-memory state, no Kafka, no faults). For every turn, the state the streaming turn started
from (its TurnRecord's session state and customer data: turn count, recent messages,
scenarios and steps, rule fire counts, variable values; timestamps left out) must equal the
replay's. A session counts once however many of its turns differ; ``mismatch_examples``
shows the first differences. This checks the state after every turn of a conversation but
its last. The workers run with a retrieval deadline of ``--retrieval-deadline`` s (default
30 s, not 0.5 s) so that a retrieval slowed by a restart is waited for instead of becoming a
gap, which would change the turn legitimately (gaps are tested in tests/test_turn_stages.py);
``retrieval_gaps`` counts the turns that still had one. Memories are not part of the
replay (it runs no memory ingestion); they do not enter the compared state.

Defaults take about 6 minutes on a 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import random
import shutil
import sys
import tempfile
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from turns import AGENT, EXAMPLE_PACK, REPO, TENANT, in_process_deps, summary

from processors.pack import load_pack
from schemas.domain.turn_context import TurnContext
from schemas.domain.turn_input import Channel, TurnInput
from schemas.domain.turn_record import TurnRecord
from schemas.events.turn_response import ResponseStatus
from streams.local_kafka import LocalKafka, private_broker_settings
from streams.pack_publisher import publish_pack
from streams.settings import Settings
from streams.topic_admin import ensure_topics
from streams.topics import MEMORY_GROUP, pipeline_group
from streams.turn_client import TurnClient
from streams.worker_process import WorkerProcess, wait_for_groups

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

SETTLE_S = 3.0
BROKER_CALM_S = 15.0


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
            fault = Fault("kill", f"worker{i}", self.elapsed(), self.in_flight())
            await asyncio.to_thread(worker.kill)
            delay = self.rng.uniform(*self.args.restart_after)
            fault.down_s = round(delay, 2)
            self.faults.append(fault)
            print(f"[{fault.at_s:6.1f} s] SIGKILL worker{i}, {len(fault.in_flight)} in flight")
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
        await asyncio.to_thread(self.broker.up)
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
                self.unplanned_exits.append(
                    {"worker": i, "at_s": round(self.elapsed(), 1), "code": worker.exit_code()}
                )
                print(f"[{self.elapsed():6.1f} s] worker{i} exited ({worker.exit_code()}): restart")
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
                    "in_flight": len(fault.in_flight),
                    "in_flight_answered_s": done,
                    "first_answer_s": round(min(later) - at, 2) if later else None,
                }
            )
        return found


# -- state replay ---------------------------------------------------------------------------


def state_view(context: TurnContext) -> dict[str, Any]:
    """What a turn starts from, without timestamps: the part a replay must reproduce."""
    session = context.session
    data = context.customer_data
    return {
        "turn_count": session.turn_count if session else 0,
        "last_turn_id": session.last_turn_id if session else None,
        "messages": [(m.role.value, m.text, m.turn_id) for m in session.recent_messages]
        if session
        else [],
        "scenarios": [s.model_dump(mode="json") for s in session.scenarios] if session else [],
        "rule_fires": {k: (v.fire_count, v.last_fired_turn) for k, v in session.rule_fires.items()}
        if session
        else {},
        "session_variables": {k: v.value for k, v in session.variables.items()} if session else {},
        "customer_data": {k: v.value for k, v in data.variables.items()} if data else {},
    }


def differences(streamed: dict[str, Any], replayed: dict[str, Any]) -> dict[str, Any]:
    return {
        key: {"streamed": streamed[key], "replayed": replayed[key]}
        for key in streamed
        if streamed[key] != replayed[key]
    }


async def replay(
    conversations: list[Conversation], records: dict[str, TurnRecord]
) -> dict[str, Any]:
    """Each conversation again through ``run_turn`` with the same turn ids; compare states."""
    from processors.turn.in_process import MemoryState, run_turn
    from schemas.events.turn_requested import TurnRequested

    pack, deps = in_process_deps()
    compared = mismatched_turns = answers_differ = skipped = 0
    mismatched_sessions: list[dict[str, Any]] = []
    for conversation in conversations:
        if not conversation.turn_ids:
            continue
        if any(t not in records for t in conversation.turn_ids):
            skipped += 1  # a lost turn: counted in `lost`, nothing to compare it with
            continue
        state = MemoryState()
        state.add_pack(pack)
        first: dict[str, Any] | None = None
        for turn_id in conversation.turn_ids:
            streamed = records[turn_id]
            request = TurnRequested(
                turn_id=turn_id, input=streamed.context.input, sent_at=datetime.now(UTC)
            )
            _, replayed = await run_turn(request, state, deps)
            compared += 1
            diff = differences(state_view(streamed.context), state_view(replayed.context))
            if streamed.context.response_text != replayed.context.response_text:
                answers_differ += 1
            if diff:
                mismatched_turns += 1
                if first is None:
                    first = {"channel_id": conversation.channel_id, "turn_id": turn_id, **diff}
        if first is not None:
            mismatched_sessions.append(first)
    return {
        "state_mismatches": len(mismatched_sessions),
        "state_compared_sessions": sum(1 for c in conversations if c.turn_ids) - skipped,
        "state_compared_turns": compared,
        "state_mismatched_turns": mismatched_turns,
        "answers_differ": answers_differ,
        "mismatch_examples": mismatched_sessions[:5],
    }


# -- the run --------------------------------------------------------------------------------


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="turnstream-chaos-"))
    base = private_broker_settings(root)
    broker = LocalKafka(base)
    await asyncio.to_thread(broker.up)
    settings = base.model_copy(
        update={
            "topic_prefix": f"chaos{uuid.uuid4().hex[:8]}",
            "packs_dir": REPO / "packs",
            "partitions": args.partitions,
            "analytics": base.analytics.model_copy(
                update={"enabled": args.analytics, "query_port": 0}
            ),
            "webhooks": base.webhooks.model_copy(update={"enabled": False}),
        }
    )
    worker_env = {"TURNSTREAM_PHASES__RETRIEVAL__TIMEOUT_S": str(args.retrieval_deadline)}
    soak = Soak(args, settings, broker)
    soak.workers = [
        WorkerProcess(
            settings.model_copy(update={"data_dir": root / f"w{i}"}),
            root / f"worker{i}.log",
            env=worker_env,
            log_level=args.worker_log_level,
        )
        for i in range(args.workers)
    ]
    result: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "loadavg_at_start": [round(v, 2) for v in os.getloadavg()],
    }
    failed = True
    tasks: list[asyncio.Task[None]] = []
    try:
        await ensure_topics(settings)
        await publish_pack(settings, load_pack(EXAMPLE_PACK))
        for worker in soak.workers:
            worker.start()
        groups = [pipeline_group(settings.topic_prefix), MEMORY_GROUP.name(settings.topic_prefix)]
        await wait_for_groups(settings.bootstrap_servers, groups, args.workers, soak.workers)
        print(f"{args.workers} worker(s) ready; load for {args.duration:.0f} s at <= {args.rate}/s")
        async with TurnClient(settings, records=True) as client:
            soak.t0 = soak.now()
            end = soak.t0 + args.duration
            tasks = [
                asyncio.create_task(soak.supervise()),
                asyncio.create_task(soak.watch_answers(client)),
            ]
            faults = [
                asyncio.create_task(soak.kill_loop(i, soak.t0 + args.calm, end - args.calm))
                for i in range(args.workers)
            ]
            if not args.no_broker_restart:
                faults.append(
                    asyncio.create_task(
                        soak.broker_restart(soak.t0 + args.broker_at * args.duration)
                    )
                )
            await asyncio.gather(*(soak.slot(client, n, end) for n in range(args.sessions)))
            loaded_s = soak.elapsed()
            await asyncio.gather(*faults)
            drain_until = soak.now() + args.drain
            while soak.in_flight() and soak.now() < drain_until:
                await asyncio.sleep(0.5)
            await asyncio.sleep(SETTLE_S)
            counts = client.response_counts
            responses = client.responses()
            sent = len(soak.turns)
            received = sum(1 for t in soak.turns if counts[t] > 0)
            seen = client.records()
            records = {t: seen[t] for t in soak.turns if t in seen}
            result.update(
                {
                    "sent": sent,
                    "received": received,
                    "lost": sent - received,
                    "duplicates": sum(max(0, counts[t] - 1) for t in soak.turns),
                    "error_responses": sum(
                        1
                        for t in soak.turns
                        if t in responses and responses[t].status is not ResponseStatus.OK
                    ),
                    "stalled": soak.stalled,
                    "send_retries": soak.send_retries,
                    "conversations": len(soak.conversations),
                    "load_s": round(loaded_s, 1),
                    "turns_per_s": round(received / max(loaded_s, 1e-9), 2),
                    "e2e_ms": summary(
                        [
                            (t.answered_at - t.sent_at) * 1000
                            for t in soak.turns.values()
                            if t.answered_at is not None
                        ],
                        1,
                    ),
                    "lost_turn_ids": [t for t in soak.turns if counts[t] == 0],
                    "recovery": soak.recovery(),
                    "unplanned_exits": soak.unplanned_exits,
                    "completed_records_per_turn": dict(
                        Counter(client.record_counts[t] for t in soak.turns)
                    ),
                    "retrieval_gaps": sum(1 for r in records.values() if r.context.retrieval_gaps),
                }
            )
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        tasks = []
        await asyncio.gather(*(asyncio.to_thread(w.stop) for w in soak.workers))
        await asyncio.to_thread(broker.down)
        print("replaying every conversation in-process ...")
        result.update(await replay(soak.conversations, records))
        failed = False
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*(asyncio.to_thread(w.stop) for w in soak.workers))
        await asyncio.to_thread(broker.down)
        if failed or args.keep:
            print(f"logs and data kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    result["loadavg_at_end"] = [round(v, 2) for v in os.getloadavg()]
    return result


def _range(text: str) -> tuple[float, float]:
    low, _, high = text.partition(":")
    values = (float(low), float(high or low))
    if values[0] < 0 or values[1] < values[0]:
        raise argparse.ArgumentTypeError("LOW:HIGH seconds, 0 <= LOW <= HIGH")
    return values


def print_result(result: dict[str, Any]) -> None:
    print("\nresult")
    for key in ("sent", "received", "lost", "duplicates", "state_mismatches"):
        print(f"  {key}: {result[key]}")
    e2e = result["e2e_ms"]
    print(
        f"  {result['turns_per_s']} turns/s over {result['load_s']} s; e2e p50/p99/max "
        f"{e2e.get('p50')}/{e2e.get('p99')}/{e2e.get('max')} ms; error responses "
        f"{result['error_responses']}; stalled {result['stalled']}; send retries "
        f"{result['send_retries']}; unplanned exits {len(result['unplanned_exits'])}"
    )
    print(
        f"  state compared on {result['state_compared_turns']} turns of "
        f"{result['state_compared_sessions']} sessions; answers differing from the replay: "
        f"{result['answers_differ']}; turns with a retrieval gap: {result['retrieval_gaps']}"
    )
    for fault in result["recovery"]:
        print(
            f"  {fault['kind']} {fault['target']} at {fault['at_s']} s (down {fault['down_s']} s):"
            f" {fault['in_flight']} in flight, all answered after {fault['in_flight_answered_s']}"
            f" s, next answer after {fault['first_answer_s']} s"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=240.0, help="seconds of load")
    parser.add_argument("--rate", type=float, default=4.0, help="turns/s at most, all sessions")
    parser.add_argument("--sessions", type=int, default=24, help="conversations at once")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--kill-every", type=_range, default=(20.0, 45.0), help="LOW:HIGH s")
    parser.add_argument("--restart-after", type=_range, default=(1.0, 5.0), help="LOW:HIGH s")
    parser.add_argument("--calm", type=float, default=20.0, help="no kill this close to the ends")
    parser.add_argument("--broker-at", type=float, default=0.5, help="fraction of the duration")
    parser.add_argument("--broker-down", type=float, default=5.0, help="seconds stopped")
    parser.add_argument("--no-broker-restart", action="store_true")
    parser.add_argument("--turn-timeout", type=float, default=180.0)
    parser.add_argument("--drain", type=float, default=180.0, help="seconds for late answers")
    parser.add_argument("--retrieval-deadline", type=float, default=30.0)
    parser.add_argument("--analytics", action="store_true", help="workers write ClickHouse too")
    parser.add_argument("--worker-log-level", default="WARNING", help="e.g. INFO (--keep)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="keep logs and data")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # expected while the broker is down

    result = asyncio.run(soak(args))
    print_result(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    clean = result["lost"] == result["duplicates"] == result["state_mismatches"] == 0
    return 0 if clean else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
