"""Turns in ``llm`` mode against an OpenAI-compatible server that answers after a fixed delay.

    python -m bench.llm_turns [--delays 0.4,2.0] [--phases generation|all] [--sessions 300]
                                [--turns 3] [--burst 200] [--partitions 12] [--json PATH]

Setup: a private local broker, one ``turnstream worker`` process (role ``all``, defaults
otherwise: ``llm_stage_concurrency`` 256, ``llm_max_in_flight`` 256), the example pack, and,
in this process, a threaded HTTP server that answers every chat completion after ``delay``
seconds with a valid object for the schema asked (so no call falls back). The server counts
the requests it holds at once: ``llm_in_flight_max``.

Per mode (``heuristic`` first, then ``llm`` at each delay, the server's delay changed between
runs, the same worker):

* **unloaded**: 10 turns one at a time: ``overhead_ms_p50`` = e2e minus the model's time
  (``delay`` x the LLM phases in ``llm`` mode, one call each), and its share of e2e;
* **closed loop**: ``--sessions`` sessions, ``--turns`` turns each back to back:
  ``turns_per_s`` and ``llm_in_flight_max``;
* **burst**: ``--burst`` new sessions send one turn each at the same moment.

``retrieval_in_time_ratio``: the share of answered turns whose four retrieval types all
arrived (a type recorded as a gap has no ``retrieval.<type>`` timing in the response).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from bench.turns import Texts, Turn, closed_loop, quiet, summary, turn_input
from processors.llm_budget import LLM_PHASES, turn_llm_budget
from schemas.domain.retrieval import RetrievalType
from sinks.pack_files import load_pack
from streams.local_kafka import LocalKafka, private_broker_settings
from streams.pack_publisher import publish_pack
from streams.settings import EnforcementPhaseSettings, PhaseSettings, Settings, TaskMode
from streams.topic_admin import ensure_topics
from streams.topics import MEMORY_GROUP, pipeline_group
from streams.turn_client import TurnClient
from streams.worker_process import WorkerProcess, wait_for_groups

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_PACK = REPO / "packs" / "acme-shop" / "support"
REPLIES: Mapping[str, Mapping[str, Any]] = {
    "situational_snapshot": {
        "language": "en",
        "intent_changed": False,
        "new_intent_label": None,
        "topic_changed": False,
        "tone": "neutral",
        "frustration_level": "NONE",
        "situation_facts": [],
        "candidate_variables": [],
    },
    "rule_filter_verdicts": {"verdicts": []},
    "reply": {"text": "Thanks, I am looking into it.", "categories": [], "resolution": "PARTIAL"},
    "rule_verdicts": {"verdicts": []},
}
RETRIEVAL_KEYS = {f"retrieval.{t.value}" for t in RetrievalType}


class DelayServer:
    """Chat completions after ``delay`` seconds; counts the requests it holds at once."""

    def __init__(self) -> None:
        self.delay = 0.4
        self.in_flight = 0
        self.in_flight_max = 0
        self.requests = 0
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._httpd.request_queue_size = 1024
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def reset(self) -> None:
        with self._lock:
            self.in_flight_max = self.in_flight
            self.requests = 0

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                del format, args

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
                with server._lock:
                    server.in_flight += 1
                    server.requests += 1
                    server.in_flight_max = max(server.in_flight_max, server.in_flight)
                try:
                    time.sleep(server.delay)
                finally:
                    with server._lock:
                        server.in_flight -= 1
                name = body.get("response_format", {}).get("json_schema", {}).get("name")
                content = json.dumps(REPLIES.get(name, {}))
                payload = json.dumps(
                    {
                        "id": "x",
                        "object": "chat.completion",
                        "created": 1,
                        "model": body.get("model", "m"),
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": content},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
                    }
                ).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        return Handler

    @contextmanager
    def running(self) -> Iterator[DelayServer]:
        thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._httpd.shutdown()
            self._httpd.server_close()
            thread.join()


def in_time(turn: Turn) -> bool:
    return turn.response is not None and set(turn.response.timings_ms) >= RETRIEVAL_KEYS


def stage_figures(turns: Sequence[Turn], elapsed: float, model_s: float) -> dict[str, Any]:
    answered = [t for t in turns if t.e2e_ms is not None]
    e2e = [t.e2e_ms for t in answered if t.e2e_ms is not None]
    overhead = [ms - model_s * 1000 for ms in e2e]
    figures: dict[str, Any] = {
        "turns": len(turns),
        "answered": len(answered),
        "turns_per_s": round(len(answered) / elapsed, 2) if elapsed > 0 else 0.0,
        "e2e_ms": summary(e2e, 1),
        "overhead_ms": summary(overhead, 1),
        "retrieval_in_time_ratio": round(sum(in_time(t) for t in answered) / len(answered), 4)
        if answered
        else 0.0,
    }
    if e2e:
        p50 = summary(e2e, 1)["p50"]
        figures["overhead_share_p50"] = round(summary(overhead, 1)["p50"] / p50, 4)
    return figures


async def run_mode(
    client: TurnClient, texts: Texts, args: argparse.Namespace, model_s: float, run: str
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    ask = _asker(client)
    result: dict[str, Any] = {}
    unloaded = [await ask(f"{run}-u{i}", texts.next(), loop.time() + 60) for i in range(10)]
    result["unloaded"] = stage_figures(unloaded, 1.0, model_s)
    turns, elapsed = await closed_loop(ask, texts, args.sessions, args.turns, f"{run}-c", 180.0)
    result["closed"] = stage_figures(turns, elapsed, model_s)
    start = loop.time()
    burst = await asyncio.gather(
        *(ask(f"{run}-b{i}", texts.next(), start + 180) for i in range(args.burst))
    )
    result["burst"] = stage_figures(burst, loop.time() - start, model_s)
    return result


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="llm-turns-"))
    base = private_broker_settings(root / "kafka")
    broker = LocalKafka(base)
    server = DelayServer()
    llm_phases = LLM_PHASES if args.phases == "all" else ()
    phases = {p.value for p in llm_phases} or {"generation"}
    results: dict[str, Any] = {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "phases_in_llm_mode": sorted(phases),
        "sessions": args.sessions,
        "turns_per_session": args.turns,
        "burst": args.burst,
    }
    await asyncio.to_thread(broker.up)
    try:
        with server.running():
            heuristic = [] if args.no_heuristic else ["heuristic"]
            for mode in [*heuristic, *(f"llm@{d}" for d in args.delays)]:
                delay = float(mode.split("@")[1]) if "@" in mode else 0.0
                server.delay = delay
                settings = _settings(base, root / mode, server.url, args, phases, mode)
                with quiet("aiokafka.consumer.fetcher"):
                    await ensure_topics(settings)
                    await publish_pack(settings, load_pack(EXAMPLE_PACK))
                worker = WorkerProcess(settings, root / f"{mode}.log", env=_llm_env(settings))
                worker.start()
                try:
                    async with TurnClient(settings) as client:
                        groups = [
                            pipeline_group(settings.topic_prefix),
                            MEMORY_GROUP.name(settings.topic_prefix),
                        ]
                        await wait_for_groups(settings.bootstrap_servers, groups, 1, [worker])
                        texts = Texts.load()
                        # the model and the JVM warm up on 20 turns, not counted
                        await closed_loop(_asker(client), texts, 10, 2, f"{mode}-w", 120.0)
                        server.reset()
                        model_s = delay * len(phases) if delay else 0.0
                        figures = await run_mode(client, texts, args, model_s, mode)
                        figures["llm_in_flight_max"] = server.in_flight_max
                        figures["llm_requests"] = server.requests
                        results[mode] = figures
                        _print(mode, figures)
                finally:
                    worker.stop()
    finally:
        await asyncio.to_thread(broker.down)
    return results


def _asker(client: TurnClient) -> Any:
    async def ask(channel_id: str, message: str, deadline: float) -> Turn:
        loop = asyncio.get_running_loop()
        began = loop.time()
        turn = Turn(await client.send(turn_input(channel_id, message)))
        try:
            turn.response = await client.response(turn.turn_id, max(0.0, deadline - loop.time()))
        except TimeoutError:
            return turn
        turn.answered_at = loop.time()
        turn.e2e_ms = (turn.answered_at - began) * 1000
        return turn

    return ask


def _settings(
    base: Settings,
    data_dir: Path,
    url: str,
    args: argparse.Namespace,
    phases: set[str],
    mode: str,
) -> Settings:
    llm = mode != "heuristic"
    phase = PhaseSettings(
        mode=TaskMode.LLM if llm else TaskMode.HEURISTIC, model="m", timeout_s=10.0, retries=0
    )
    updates: dict[str, Any] = {name: phase for name in phases if name != "enforcement"}
    if "enforcement" in phases:
        updates["enforcement"] = EnforcementPhaseSettings(**phase.model_dump())
    return base.model_copy(
        update={
            "topic_prefix": f"llm{uuid.uuid4().hex[:10]}",
            "data_dir": data_dir,
            "packs_dir": REPO / "packs",
            "partitions": args.partitions,
            "llm_base_url": url if llm else None,
            "phases": base.phases.model_copy(update=updates),
            "analytics": base.analytics.model_copy(update={"enabled": False, "query_port": 0}),
            "webhooks": base.webhooks.model_copy(update={"enabled": False}),
        }
    )


def _llm_env(settings: Settings) -> dict[str, str]:
    """What ``worker_env`` does not carry: the endpoint and the LLM phases' settings."""
    env = {"TURNSTREAM_LLM_BASE_URL": settings.llm_base_url or ""}
    for name in ("sensor", "rule_selection", "generation", "enforcement"):
        phase: PhaseSettings = getattr(settings.phases, name)
        for knob in ("mode", "model", "timeout_s", "retries"):
            env[f"TURNSTREAM_PHASES__{name.upper()}__{knob.upper()}"] = str(getattr(phase, knob))
    if not settings.llm_base_url:
        del env["TURNSTREAM_LLM_BASE_URL"]
    # over the worst-case turn budget, or the worker refuses to start
    env["TURNSTREAM_TURN_STALL_S"] = str(turn_llm_budget(settings).seconds + 10.0)
    return env


def _print(mode: str, figures: dict[str, Any]) -> None:
    for stage in ("unloaded", "closed", "burst"):
        f = figures[stage]
        print(
            f"{mode:>10} {stage:>8}: {f['answered']}/{f['turns']} answered, "
            f"{f['turns_per_s']} turns/s, e2e p50 {f['e2e_ms'].get('p50')} ms, overhead p50 "
            f"{f['overhead_ms'].get('p50')} ms ({f.get('overhead_share_p50')}), retrieval in "
            f"time {f['retrieval_in_time_ratio']}"
        )
    print(f"{mode:>10} llm_in_flight_max {figures['llm_in_flight_max']}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delays", default="0.4,2.0")
    parser.add_argument("--phases", choices=["generation", "all"], default="generation")
    parser.add_argument("--sessions", type=int, default=300)
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--partitions", type=int, default=12)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--no-heuristic", action="store_true", help="skip the heuristic run")
    args = parser.parse_args(argv)
    args.delays = [float(d) for d in args.delays.split(",") if d]
    results = asyncio.run(bench(args))
    summary_keys = {
        mode: {
            "llm_in_flight_max": figures["llm_in_flight_max"],
            "turns_per_s": figures["closed"]["turns_per_s"],
            "overhead_ms_p50": figures["unloaded"]["overhead_ms"].get("p50"),
            "retrieval_in_time_ratio": min(
                figures["closed"]["retrieval_in_time_ratio"],
                figures["burst"]["retrieval_in_time_ratio"],
            ),
        }
        for mode, figures in results.items()
        if isinstance(figures, dict) and "closed" in figures
    }
    results["summary"] = summary_keys
    print(json.dumps(summary_keys, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
