"""The printed lines of bench/turns.py and its streaming / in-process ratios; the header
and the JSON file of a bench's result (bench/turns.py, bench/noisy_neighbour.py)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any


def load_average() -> list[float]:
    """The machine's 1, 5 and 15 minute load averages (a shared machine drifts)."""
    return [round(v, 2) for v in os.getloadavg()]


def run_header(args: argparse.Namespace) -> dict[str, Any]:
    """What a result starts with: the load at the start and the arguments of the run."""
    return {
        "loadavg_at_start": load_average(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }


def write_json(path: Path | None, result: dict[str, Any]) -> None:
    """``result`` as indented JSON at ``path`` (its folder made), if a path was given."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")


def _p(stats: dict[str, float], digits: int = 1) -> str:
    if not stats.get("count"):
        return "n/a"
    return "/".join(f"{stats[k]:.{digits}f}" for k in ("p50", "p95", "p99"))


def lost_words(stage: dict[str, Any]) -> str:
    """``lost N dup D``; with ``lost`` unknown (the backlog was still being answered when
    the wait ran out), how many were still unanswered then."""
    if stage["lost"] is None:
        lost = f"lost ? ({stage['still_unanswered']} still unanswered after {stage['drained_s']} s)"
    else:
        lost = f"lost {stage['lost']}"
    return f"{lost} dup {stage['duplicates']}"


def print_open(title: str, stage: dict[str, Any]) -> None:
    wait_key = "send_lag_ms" if "send_lag_ms" in stage else "queue_wait_ms"
    wait = wait_key.removesuffix("_ms").replace("_", " ")
    line = (
        f"{title}: {stage['sent']} turns at {stage['rate_per_s']:g}/s  "
        f"e2e p50/p95/p99 {_p(stage['e2e_ms'])} ms  {wait} p99 "
        f"{stage[wait_key].get('p99', 0):.1f} ms  errors {stage['errors']}"
    )
    if stage.get("overloaded"):
        line += f"\n    overloaded: served {stage['served_turns_per_s']:g} turns/s"
    if stage["unanswered"]:
        line += (
            f"\n    {stage['unanswered']} turns unanswered within the drain window: "
            "percentiles cover answered turns"
        )
    if "transport_overhead_ms_per_hop" in stage:
        line += (
            f"\n    phases (critical path) p50 {stage['phase_sum_ms'].get('p50', 0):.1f} ms  "
            f"overhead/hop p50 {stage['transport_overhead_ms_per_hop'].get('p50', 0):.2f} ms  "
            f"{lost_words(stage)}"
        )
    line += _cpu(stage)
    phases = stage["phases_ms"]
    line += "\n    " + "  ".join(f"{k} {v['p50']:.1f}/{v['p99']:.1f}" for k, v in phases.items())
    print(line, flush=True)


def print_unloaded(title: str, stage: dict[str, Any]) -> None:
    line = f"{title}: {stage['turns']} turns one at a time  p50/p95/p99 {_p(stage['e2e_ms'])} ms"
    if "transport_overhead_ms_per_hop" in stage:
        line += (
            f"\n    phases (critical path) p50 {stage['phase_sum_ms'].get('p50', 0):.1f} ms  "
            f"overhead/hop p50 {stage['transport_overhead_ms_per_hop'].get('p50', 0):.2f} ms  "
            f"{lost_words(stage)}"
        )
    line += _cpu(stage)
    print(line, flush=True)


def print_closed(title: str, stage: dict[str, Any]) -> None:
    line = (
        f"{title}: {stage['sessions']} sessions x {stage['turns_per_session']} turns  "
        f"{stage['turns_per_s']:.1f} turns/s (steady {stage.get('steady_turns_per_s', 0):.1f})  "
        f"e2e p50/p95/p99 {_p(stage['e2e_ms'])} ms"
    )
    if "lost" in stage:
        line += f"  {lost_words(stage)}"
    line += _cpu(stage)
    print(line, flush=True)


def _cpu(stage: dict[str, Any]) -> str:
    line = f"\n    cpu cores {stage.get('cpu_cores')}"
    for key in ("worker_cpu_ms_per_turn", "cpu_ms_per_turn"):
        if stage.get(key) is not None:
            line += f"  {key.replace('_', ' ')} {stage[key]}"
    return line


def print_profile(profile: dict[str, Any]) -> None:
    if "error" in profile:
        print(f"profile failed: {profile['error']}")
        return
    print(
        f"profile of worker 0: {profile['cpu_cores']:.2f} cores busy over {profile['seconds']} s "
        f"({profile['samples']} samples)"
    )
    for title in ("threads", "components", "self_top"):
        print(f"  {title} (cores, share of the worker's CPU):")
        for row in profile[title][:12]:
            print(f"    {row['cores']:5.2f}  {row['share'] * 100:5.1f}%  {row['name']}")
    print("  model thread, by the call it runs (share of its samples):")
    for row in profile["model_thread_calls"]:
        print(f"    {row['share'] * 100:5.1f}%  {row['name']}")


def print_summary(result: dict[str, Any]) -> None:
    print("\nsummary")
    for run in result["streaming"]:
        closed, opened = run.get("closed_loop", {}), run.get("open_loop", {})
        rss = max((v.get("max", 0.0) for v in run["rss_mb"].values()), default=0.0)
        rss_open = max((v.get("open_loop", 0.0) for v in run["rss_mb"].values()), default=0.0)
        hop = opened.get("transport_overhead_ms_per_hop", {}).get("p50", 0.0)
        print(
            f"  streaming, {run['workers']} worker(s): "
            f"{closed.get('turns_per_s', 0):.1f} turns/s closed loop; "
            f"e2e p50/p95/p99 {_p(opened.get('e2e_ms', {}))} ms "
            f"at {opened.get('rate_per_s', 0):g}/s; overhead/hop p50 {hop:.2f} ms; "
            f"worker RSS max {rss:.0f} MB "
            f"({rss_open:.0f} MB with {opened.get('active_sessions', 0)} sessions)"
        )
    base = result.get("baseline")
    if base:
        print(
            f"  in-process: {base.get('closed_loop', {}).get('turns_per_s', 0):.1f} turns/s "
            f"closed loop; p50/p95/p99 {_p(base.get('open_loop', {}).get('e2e_ms', {}))} ms "
            "open loop"
        )
    for key, value in result["per_turn"].items():
        print(f"  per turn, {key}: {value}")
    for key, value in result["ratios"].items():
        print(f"  ratio {key}: {value}")


def per_turn_figures(result: dict[str, Any]) -> dict[str, Any]:
    """The per-turn costs side by side (closed loop: no backlog left after it): records
    written and worker CPU of each streaming run, the in-process CPU of the baseline."""
    out: dict[str, Any] = {}
    base = (result.get("baseline") or {}).get("closed_loop") or {}
    in_process = base.get("cpu_ms_per_turn")
    if in_process is not None:
        out["in_process_cpu_ms_per_turn"] = in_process
    for run in result["streaming"]:
        worker = run.get("closed_loop", {}).get("worker_cpu_ms_per_turn")
        entry: dict[str, Any] = {
            "records_per_turn_total": run.get("records_per_turn_total"),
            "worker_cpu_ms_per_turn": worker,
        }
        if worker is not None and in_process:
            entry["worker_over_in_process_cpu"] = round(worker / in_process, 2)
        out[f"workers_{run['workers']}"] = entry
    return out


def ratios(result: dict[str, Any]) -> dict[str, Any]:
    base = result.get("baseline") or {}
    out: dict[str, Any] = {}
    for run in result["streaming"]:
        key = f"workers_{run['workers']}"
        entry: dict[str, float] = {}
        s_open, b_open = run.get("open_loop"), base.get("open_loop")
        if s_open and not s_open["e2e_ms"].get("p50"):
            s_open = None  # no turn answered in the window: no latency to compare
        if s_open and b_open and b_open["e2e_ms"].get("p50"):
            entry["latency_p50"] = round(s_open["e2e_ms"]["p50"] / b_open["e2e_ms"]["p50"], 2)
            entry["latency_p99"] = round(s_open["e2e_ms"]["p99"] / b_open["e2e_ms"]["p99"], 2)
        s_idle, b_idle = run.get("unloaded"), base.get("unloaded")
        if s_open and b_idle and b_idle["e2e_ms"].get("p50"):
            entry["latency_p50_vs_unloaded"] = round(
                s_open["e2e_ms"]["p50"] / b_idle["e2e_ms"]["p50"], 2
            )
        if s_idle and b_idle and b_idle["e2e_ms"].get("p50") and s_idle["e2e_ms"].get("p50"):
            entry["unloaded_latency_p50"] = round(
                s_idle["e2e_ms"]["p50"] / b_idle["e2e_ms"]["p50"], 2
            )
        s_closed, b_closed = run.get("closed_loop"), base.get("closed_loop")
        if s_closed and b_closed and b_closed["turns_per_s"]:
            entry["throughput"] = round(s_closed["turns_per_s"] / b_closed["turns_per_s"], 2)
        out[key] = entry
    runs = {r["workers"]: r for r in result["streaming"]}
    if 1 in runs and 2 in runs and "closed_loop" in runs[1] and "closed_loop" in runs[2]:
        one = runs[1]["closed_loop"]["turns_per_s"]
        out["scale_2_over_1_workers"] = round(runs[2]["closed_loop"]["turns_per_s"] / one, 2)
    return out
