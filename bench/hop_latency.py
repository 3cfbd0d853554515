"""Produce -> consume latency of one Kafka hop, with the client settings the app uses.

    python bench/hop_latency.py [--n 2000] [--rate 500] [--json PATH]

Uses TURNSTREAM_KAFKA_BOOTSTRAP when set; otherwise the local broker (started if it is not
running, and then stopped again at the end). Two runs on a fresh topic (``--partitions``,
default 1; messages go round-robin over them, one consumer reads them all):

* ping-pong: send one message, wait until the consumer has it, send the next;
* steady: send at a fixed rate while the consumer receives, so fetches overlap sends.

Latency is measured from just before ``send`` to the consumer's receipt, in one process, on
one clock. ``--linger-ms`` / ``--fetch-max-wait-ms`` override the recommended client settings
so that alternatives can be compared.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import struct
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from streams.kafka_clients import consumer_kwargs, producer_kwargs
from streams.local_kafka import LocalKafka
from streams.settings import Settings, load_settings

WARMUP = 500  # not counted: the JIT of a fresh broker JVM is still warming up
_STAMP = struct.Struct(">q")


def _summary(latencies_ms: list[float]) -> dict[str, float]:
    ordered = sorted(latencies_ms)

    def pct(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))], 3)

    return {
        "count": len(ordered),
        "mean_ms": round(statistics.fmean(ordered), 3),
        "p50_ms": pct(50),
        "p95_ms": pct(95),
        "p99_ms": pct(99),
        "max_ms": round(ordered[-1], 3),
    }


def _latency_ms(value: bytes) -> float:
    sent_ns: int = _STAMP.unpack_from(value)[0]
    return (time.perf_counter_ns() - sent_ns) / 1e6


async def _ping_pong(
    producer: AIOKafkaProducer, consumer: AIOKafkaConsumer, topic: str, n: int, partitions: int
) -> list[float]:
    latencies = []
    for i in range(n + WARMUP):
        stamp = _STAMP.pack(time.perf_counter_ns())
        await producer.send(topic, stamp, partition=i % partitions)
        record = await consumer.getone()
        if i >= WARMUP:
            latencies.append(_latency_ms(record.value))
    return latencies


async def _steady(
    producer: AIOKafkaProducer,
    consumer: AIOKafkaConsumer,
    topic: str,
    n: int,
    partitions: int,
    rate: float,
) -> list[float]:
    async def send_all() -> None:
        start = time.perf_counter()
        for i in range(n + WARMUP):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            stamp = _STAMP.pack(time.perf_counter_ns())
            await producer.send(topic, stamp, partition=i % partitions)

    sender = asyncio.create_task(send_all())
    latencies = []
    for i in range(n + WARMUP):
        record = await consumer.getone()
        if i >= WARMUP:
            latencies.append(_latency_ms(record.value))
    await sender
    return latencies


async def _bench(settings: Settings, bootstrap: str, args: argparse.Namespace) -> dict[str, Any]:
    topic = f"bench-hop-{uuid.uuid4().hex[:12]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(topic, num_partitions=args.partitions, replication_factor=1)]
        )
        p_kwargs = producer_kwargs(settings) | {"bootstrap_servers": bootstrap}
        c_kwargs = consumer_kwargs(settings) | {"bootstrap_servers": bootstrap}
        if args.linger_ms is not None:
            p_kwargs["linger_ms"] = args.linger_ms
        if args.fetch_max_wait_ms is not None:
            c_kwargs["fetch_max_wait_ms"] = args.fetch_max_wait_ms
        producer = AIOKafkaProducer(**p_kwargs)
        consumer = AIOKafkaConsumer(**c_kwargs)
        await producer.start()
        await consumer.start()
        try:
            assigned = [TopicPartition(topic, p) for p in range(args.partitions)]
            consumer.assign(assigned)  # no group: a rebalance is not what we measure
            await consumer.seek_to_end(*assigned)
            ping = await _ping_pong(producer, consumer, topic, args.n, args.partitions)
            steady = await _steady(producer, consumer, topic, args.n, args.partitions, args.rate)
        finally:
            await consumer.stop()
            await producer.stop()
        await admin.delete_topics([topic])
    finally:
        await admin.close()
    shown = {"bootstrap_servers"}
    return {
        "bootstrap": bootstrap,
        "n": args.n,
        "partitions": args.partitions,
        "producer_kwargs": {k: v for k, v in p_kwargs.items() if k not in shown},
        "consumer_kwargs": {k: v for k, v in c_kwargs.items() if k not in shown},
        "ping_pong": _summary(ping),
        "steady": {"rate_per_s": args.rate, **_summary(steady)},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="messages per run (after warm-up)")
    parser.add_argument("--rate", type=float, default=500.0, help="steady run: messages/s")
    parser.add_argument(
        "--partitions", type=int, default=1, help="topic partitions; messages go round-robin"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--linger-ms", type=int, help="override the producer's linger_ms")
    parser.add_argument("--fetch-max-wait-ms", type=int, help="override the consumer's")
    args = parser.parse_args(argv)

    settings = load_settings()
    broker = None if settings.kafka_bootstrap else LocalKafka(settings)
    started = broker is not None and not broker.status().running
    if broker is not None:
        t0 = time.monotonic()
        broker.up()
        if started:
            print(f"started the local broker in {time.monotonic() - t0:.1f} s")
    try:
        result = asyncio.run(_bench(settings, settings.bootstrap_servers, args))
    finally:
        if started and broker is not None:
            broker.down()

    print(f"producer {result['producer_kwargs']}\nconsumer {result['consumer_kwargs']}")
    for run in ("ping_pong", "steady"):
        r = result[run]
        print(
            f"{run:9} n={r['count']:<6} p50={r['p50_ms']:.2f} p95={r['p95_ms']:.2f} "
            f"p99={r['p99_ms']:.2f} max={r['max_ms']:.2f} ms"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
