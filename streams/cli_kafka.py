"""`turnstream kafka up [--nodes N] | down | status | fetch`: the embedded local broker.

`up --nodes 3` starts a replicated local cluster instead: three KRaft nodes, each broker and
controller, from the same jars, replication factor 3 and min.insync.replicas 2; node i
listens on TURNSTREAM_KAFKA_PORT + 2i (controller TURNSTREAM_KAFKA_CONTROLLER_PORT + 2i).
Clients and workers then need TURNSTREAM_KAFKA_BOOTSTRAP (every node) and
TURNSTREAM_REPLICATION_FACTOR=3, which `up` prints; `down` and `status` act on the cluster
of the data dir (with or without those variables).

Exit codes:
  up      0 ready (started, or already running); 1 could not start; 2 an external cluster
          is configured (TURNSTREAM_KAFKA_BOOTSTRAP), so there is no local broker to start
  down    0 stopped, or was not running (says which); 1 could not stop; 2 as for up
  fetch   0 jars cached (fetched with Maven if missing); 1 the fetch failed
  status  0 the broker answers a metadata request (the local one, or the external cluster;
          of a local cluster: any node, each node's state and the active controller listed);
          3 stopped, or alive but not answering yet (starting), as in LSB init scripts
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING

from streams.settings import Settings, load_settings

if TYPE_CHECKING:
    from streams.local_kafka import LocalCluster

EXIT_FAILED = 1
EXIT_EXTERNAL = 2
EXIT_STOPPED = 3


def _external(settings: Settings, action: str) -> int | None:
    """With an external cluster configured, up/down have nothing to act on: say so (the
    data dir's own local cluster, named by its bootstrap, is not external)."""
    if not settings.kafka_bootstrap or _own_cluster(settings):
        return None
    print(
        f"kafka {action}: TURNSTREAM_KAFKA_BOOTSTRAP is set ({settings.kafka_bootstrap}); "
        "the local broker is not used",
        file=sys.stderr,
    )
    return EXIT_EXTERNAL


def _own_cluster(settings: Settings) -> bool:
    from streams.local_kafka import LocalCluster

    cluster = LocalCluster.recorded(settings)
    return cluster is not None and cluster.bootstrap == settings.kafka_bootstrap


def _up_cluster(settings: Settings, nodes: int) -> int:
    from streams.local_kafka import LocalCluster, LocalKafkaError

    started = time.monotonic()
    try:
        cluster = LocalCluster(settings, nodes)
        was_running = cluster.running()
        bootstrap = cluster.up()
    except LocalKafkaError as exc:
        print(f"kafka up: {exc}", file=sys.stderr)
        return EXIT_FAILED
    how = (
        "already running"
        if len(was_running) == nodes
        else f"ready in {time.monotonic() - started:.1f} s"
    )
    print(f"kafka: {nodes}-node cluster running at {bootstrap} ({how})")
    for nid, node in cluster.nodes.items():
        state = node.status()
        print(f"  node {nid}: {node.bootstrap} (pid {state.pid}); log {state.log_file}")
    print(
        "  clients and workers: "
        f"TURNSTREAM_KAFKA_BOOTSTRAP={bootstrap} "
        f"TURNSTREAM_REPLICATION_FACTOR={cluster.replication_factor}"
    )
    return 0


def _up(args: argparse.Namespace) -> int:
    from streams.local_kafka import LocalKafka, LocalKafkaError

    settings = load_settings()
    if (code := _external(settings, "up")) is not None:
        return code
    if args.nodes > 1:
        return _up_cluster(settings, args.nodes)
    broker = LocalKafka(settings)
    was_running = broker.status().running
    started = time.monotonic()
    try:
        bootstrap = broker.up()
    except LocalKafkaError as exc:
        print(f"kafka up: {exc}", file=sys.stderr)
        return EXIT_FAILED
    state = broker.status()
    how = "already running" if was_running else f"ready in {time.monotonic() - started:.1f} s"
    print(f"kafka: running at {bootstrap} (pid {state.pid}, {how}); log {state.log_file}")
    return 0


def _down(_args: argparse.Namespace) -> int:
    from streams.local_kafka import LocalCluster, LocalKafka, LocalKafkaError

    settings = load_settings()
    if (code := _external(settings, "down")) is not None:
        return code
    broker = LocalKafka(settings)
    try:
        cluster = LocalCluster.recorded(settings)
        if cluster is not None and cluster.down():
            print(f"kafka: {len(cluster.nodes)}-node cluster stopped")
            return 0
        stopped = broker.down()
    except LocalKafkaError as exc:
        print(f"kafka down: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print("kafka: stopped" if stopped else f"kafka: not running (data dir {broker.home})")
    return 0


def _fetch(_args: argparse.Namespace) -> int:
    from streams.local_kafka import LocalKafka, LocalKafkaError

    settings = load_settings()
    try:
        libs = LocalKafka(settings).fetch_jars()
    except LocalKafkaError as exc:
        print(f"kafka fetch: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"kafka: broker jars for {settings.kafka_version} in {libs}")
    return 0


def _cluster_status(cluster: LocalCluster) -> int:
    import asyncio
    import contextlib

    from streams.local_kafka import LocalKafkaError, probe

    answering = []
    for nid, node in cluster.nodes.items():
        state = node.status()
        answers = state.running and probe(node.bootstrap, timeout_s=5.0)
        answering += [nid] if answers else []
        how = "answers" if answers else ("alive, not answering" if state.running else "stopped")
        print(f"  node {nid}: {node.bootstrap} {how} (pid {state.pid}); log {state.log_file}")
    controller = "none"
    if answering:
        with contextlib.suppress(LocalKafkaError):
            controller = f"node {asyncio.run(cluster.active_controller(timeout_s=5.0))}"
    print(
        f"kafka: {len(cluster.nodes)}-node cluster, {len(answering)} node(s) answering, "
        f"active controller {controller}; bootstrap {cluster.bootstrap}"
    )
    return 0 if answering else EXIT_STOPPED


def _status(_args: argparse.Namespace) -> int:
    from streams.local_kafka import LocalCluster, LocalKafka, probe

    settings = load_settings()
    cluster = LocalCluster.recorded(settings)
    if cluster is not None and (
        cluster.running() or not (settings.kafka_bootstrap or LocalKafka(settings).status().running)
    ):
        return _cluster_status(cluster)
    if settings.kafka_bootstrap:
        answers = probe(settings.kafka_bootstrap, timeout_s=5.0)
        print(
            f"kafka: external cluster {settings.kafka_bootstrap} "
            + ("answers" if answers else "does NOT answer")
        )
        return 0 if answers else EXIT_STOPPED
    state = LocalKafka(settings).status()
    answers = state.running and probe(state.bootstrap, timeout_s=5.0)
    if answers:
        print(f"kafka: running at {state.bootstrap} (pid {state.pid})")
    elif state.running:
        print(
            f"kafka: pid {state.pid} is alive but does not answer on {state.bootstrap} yet "
            "(starting, or stuck: see its log)"
        )
    else:
        print(f"kafka: stopped (would listen on {state.bootstrap})")
    print(f"  data dir {state.data_dir}\n  log      {state.log_file}")
    return 0 if answers else EXIT_STOPPED


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    kafka = subparsers.add_parser(
        "kafka",
        help="the embedded local Kafka broker",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = kafka.add_subparsers(dest="kafka_command", required=True)
    up = actions.add_parser(
        "up", help="start the local broker (fetching its jars once); print its address"
    )
    up.add_argument(
        "--nodes",
        type=int,
        default=1,
        choices=range(1, 10),
        metavar="N",
        help="N > 1: a replicated local cluster of N KRaft nodes (RF min(3, N), "
        "min.insync.replicas RF-1); default 1",
    )
    up.set_defaults(handler=_up)
    actions.add_parser("down", help="stop the local broker").set_defaults(handler=_down)
    actions.add_parser(
        "fetch", help="fetch the broker jars with Maven into the cache (once); start nothing"
    ).set_defaults(handler=_fetch)
    actions.add_parser(
        "status", help="exit 0 if the broker answers metadata, 3 if it does not"
    ).set_defaults(handler=_status)
