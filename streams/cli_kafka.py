"""`turnstream kafka up | down | status | fetch`: the embedded local broker.

Exit codes:
  up      0 ready (started, or already running); 1 could not start; 2 an external cluster
          is configured (TURNSTREAM_KAFKA_BOOTSTRAP), so there is no local broker to start
  down    0 stopped, or was not running (says which); 1 could not stop; 2 as for up
  fetch   0 jars cached (fetched with Maven if missing); 1 the fetch failed
  status  0 the broker answers a metadata request (the local one, or the external cluster);
          3 stopped, or alive but not answering yet (starting), as in LSB init scripts
"""

from __future__ import annotations

import argparse
import sys
import time

from streams.settings import Settings, load_settings

EXIT_FAILED = 1
EXIT_EXTERNAL = 2
EXIT_STOPPED = 3


def _external(settings: Settings, action: str) -> int | None:
    """With an external cluster configured, up/down have nothing to act on: say so."""
    if not settings.kafka_bootstrap:
        return None
    print(
        f"kafka {action}: TURNSTREAM_KAFKA_BOOTSTRAP is set ({settings.kafka_bootstrap}); "
        "the local broker is not used",
        file=sys.stderr,
    )
    return EXIT_EXTERNAL


def _up(_args: argparse.Namespace) -> int:
    from streams.local_kafka import LocalKafka, LocalKafkaError

    settings = load_settings()
    if (code := _external(settings, "up")) is not None:
        return code
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
    from streams.local_kafka import LocalKafka, LocalKafkaError

    settings = load_settings()
    if (code := _external(settings, "down")) is not None:
        return code
    broker = LocalKafka(settings)
    try:
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


def _status(_args: argparse.Namespace) -> int:
    from streams.local_kafka import LocalKafka, probe

    settings = load_settings()
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
    actions.add_parser(
        "up", help="start the local broker (fetching its jars once); print its address"
    ).set_defaults(handler=_up)
    actions.add_parser("down", help="stop the local broker").set_defaults(handler=_down)
    actions.add_parser(
        "fetch", help="fetch the broker jars with Maven into the cache (once); start nothing"
    ).set_defaults(handler=_fetch)
    actions.add_parser(
        "status", help="exit 0 if the broker answers metadata, 3 if it does not"
    ).set_defaults(handler=_status)
