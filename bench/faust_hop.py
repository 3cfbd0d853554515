"""What one Faust hop costs with nothing else running: a chain of agents that only forward.

    python bench/faust_hop.py [--hops 4] [--partitions 12] [--turns 200] [--json PATH]

Starts its own broker and, in this process, a Faust app built like the pipeline's
(``streams.pipeline.topology.build_app``, which installs both Faust fixes) with ``--hops``
agents: agent i reads topic i and sends the record on to topic i + 1 (5 kB values, keys over 20
sessions, concurrency 8). A plain aiokafka producer sends one record at a time and waits until
a plain consumer has read it from the last topic. Prints and writes e2e percentiles and the
p50 per hop, and where a hop's time goes: from the record's producer timestamp to aiokafka's
fetch result in Faust's consumer thread, from there until aiokafka hands it to Faust, and from
there to the agent. Compare with ``bench/hop_latency.py`` (aiokafka alone).
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # `python bench/faust_hop.py`: import `bench.*` from the repository
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import argparse
import asyncio
import json
import time
import uuid
from collections import defaultdict
from typing import Any

import aiokafka.consumer.fetcher as aiokafka_fetcher
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.harness.figures import summary
from bench.harness.pipeline import private_cluster
from streams.pipeline.topology import RAW, build_app
from streams.roles import Role

VALUE = b"x" * 5000
SESSIONS = 20
WARM = 20
SETTLE_S = 8.0


class Stamps:
    """When aiokafka fetched and handed out each partition's latest records (wall clock)."""

    def __init__(self) -> None:
        self.fetched: dict[tuple[str, int], float] = {}
        self.handed: dict[tuple[str, int], float] = {}

    def install(self) -> None:
        fetch_result_init = aiokafka_fetcher.FetchResult.__init__
        fetched_records = aiokafka_fetcher.Fetcher.fetched_records
        stamps = self

        def init(self: Any, tp: Any, **kwargs: Any) -> None:
            fetch_result_init(self, tp, **kwargs)
            stamps.fetched[(tp.topic, tp.partition)] = time.time()

        async def handed(self: Any, *args: Any, **kwargs: Any) -> Any:
            records = await fetched_records(self, *args, **kwargs)
            now = time.time()
            for tp in records:
                stamps.handed[(tp.topic, tp.partition)] = now
            return records

        aiokafka_fetcher.FetchResult.__init__ = init  # type: ignore[method-assign]
        aiokafka_fetcher.Fetcher.fetched_records = handed  # type: ignore[method-assign]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    async with private_cluster("faust-hop") as cluster:
        prefix = f"hop{uuid.uuid4().hex[:8]}"
        update = {"topic_prefix": prefix, "partitions": args.partitions}
        settings = cluster.base.model_copy(update=update)
        names = [f"{prefix}.chain{i}" for i in range(args.hops + 1)]
        stamps = Stamps()
        stamps.install()
        parts: dict[str, list[float]] = defaultdict(list)
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
        await admin.start()
        await admin.create_topics([NewTopic(n, args.partitions, 1) for n in names])
        await admin.close()
        app = build_app(settings, Role.ALL)
        topics = [app.topic(n, partitions=args.partitions, **RAW) for n in names]
        for i in range(args.hops):
            name = f"hop{i}"
            app.agent(topics[i], name=name, concurrency=8)(
                forward(topics[i + 1], stamps, parts, name)
            )
        await app.start()
        await asyncio.sleep(SETTLE_S)  # the group forms
        e2e = await ping(settings.bootstrap_servers, names, args.turns)
        await app.stop()
    measured = e2e[WARM:]
    p50 = summary(measured)["p50"]
    result = {
        "hops": args.hops,
        "partitions": args.partitions,
        "e2e_ms": summary(measured),
        "per_hop_p50_ms": round(p50 / args.hops, 2),
        "hop_parts_ms": {k: summary(v[WARM * args.hops :]) for k, v in parts.items()},
    }
    print(f"{args.hops} hops, {args.partitions} partitions: e2e {result['e2e_ms']}")
    print(f"per hop (p50): {result['per_hop_p50_ms']} ms")
    for name, stats in result["hop_parts_ms"].items():
        print(f"  {name:28s} p50 {stats['p50']:.2f}  p95 {stats['p95']:.2f} ms")
    return result


def forward(out: Any, stamps: Stamps, parts: dict[str, list[float]], name: str) -> Any:
    async def agent(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            now = time.time()
            key = (message.topic, message.partition)
            fetched, handed = stamps.fetched.get(key), stamps.handed.get(key)
            if fetched is not None and handed is not None:
                parts["producer -> fetch result"].append((fetched - message.timestamp) * 1000)
                parts["fetch result -> handed out"].append((handed - fetched) * 1000)
                parts["handed out -> agent"].append((now - handed) * 1000)
            await out.send(key=message.key, value=message.value)

    agent.__name__ = agent.__qualname__ = name
    return agent


async def ping(bootstrap: str, names: list[str], turns: int) -> list[float]:
    """Send one record at a time into the chain; ms until it comes out of the last topic."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    consumer = AIOKafkaConsumer(names[-1], bootstrap_servers=bootstrap, auto_offset_reset="latest")
    await producer.start()
    await consumer.start()
    await asyncio.sleep(2)
    e2e: list[float] = []
    try:
        for i in range(turns + WARM):
            value = VALUE + str(i).encode()
            t0 = time.perf_counter()
            await producer.send_and_wait(
                names[0], key=f"session-{i % SESSIONS}".encode(), value=value
            )
            while (await consumer.getone()).value != value:
                pass
            e2e.append((time.perf_counter() - t0) * 1000)
    finally:
        await producer.stop()
        await consumer.stop()
    return e2e


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hops", type=int, default=4)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
