"""Wall time of light ``turnstream`` commands, as a user waits for them.

    python bench/cli_startup.py [--runs 7] [--budget-s 1.5] [--json PATH]

Each command runs ``--runs`` times as a fresh process (the console script next to this
interpreter, else ``python -m streams.cli``), after one unmeasured warm-up run that fills
the OS file cache and Python's bytecode cache; the median, min and max wall times are
printed against the budget (1.5 s), with the median CPU time (user + system), which does
not grow with the machine's load as the wall time does. One extra run under
``python -X importtime`` records the cumulative import time and the top-level packages
that cost most, so a regression names its cause. Exit status 1 when a median is over the budget.

The commands: ``--help`` (parser only) and ``pack validate packs/acme-shop/support`` (YAML,
pydantic models, every pack check). Neither may import torch, Faust or Qdrant
(tests/test_cli_imports.py checks that; this measures what is left).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
COMMANDS = {
    "--help": ["--help"],
    "pack validate": ["pack", "validate", "packs/acme-shop/support"],
}
BUDGET_S = 1.5
_IMPORT_LINE = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)$")


def turnstream() -> list[str]:
    script = Path(sys.executable).with_name("turnstream")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "streams.cli"]


def clean_env() -> dict[str, str]:
    """This shell's environment without TURNSTREAM_* (the defaults, as for a newcomer)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TURNSTREAM_")}


def timed_runs(argv: list[str], runs: int) -> tuple[list[float], list[float]]:
    """Wall times and CPU times (user + system of the child) of ``runs`` fresh processes.
    The CPU time does not grow with the machine's load; the wall time does."""
    command = [*turnstream(), *argv]
    subprocess.run(command, cwd=REPO, env=clean_env(), capture_output=True, check=True)
    walls, cpus = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        began = time.perf_counter()
        subprocess.run(command, cwd=REPO, env=clean_env(), capture_output=True, check=True)
        walls.append(time.perf_counter() - began)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return walls, cpus


def import_profile(argv: list[str], top: int = 5) -> dict[str, Any]:
    """Cumulative import time of ``streams.cli`` and the costliest top-level imports (ms)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "streams.cli", *argv],
        cwd=REPO,
        env=clean_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    roots: dict[str, float] = {}
    for line in done.stderr.splitlines():
        match = _IMPORT_LINE.match(line)
        if match and len(match[3]) == 1:  # a top-level import (one space of nesting)
            roots[match[4]] = int(match[2]) / 1000
    total = sum(roots.values())
    costliest = sorted(roots.items(), key=lambda item: -item[1])[:top]
    return {"all_imports_ms": round(total, 1), "costliest_ms": dict(costliest)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--budget-s", type=float, default=BUDGET_S)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    results: dict[str, Any] = {}
    print(f"turnstream startup, {args.runs} runs each (budget {args.budget_s:g} s median)")
    for name, argv in COMMANDS.items():
        times, cpus = timed_runs(argv, args.runs)
        profile = import_profile(argv)
        median = statistics.median(times)
        results[name] = {
            "argv": argv,
            "median_s": round(median, 3),
            "cpu_median_s": round(statistics.median(cpus), 3),
            "min_s": round(min(times), 3),
            "max_s": round(max(times), 3),
            "runs_s": [round(t, 3) for t in times],
            "within_budget": median < args.budget_s,
            **profile,
        }
        costliest = ", ".join(f"{k} {v:.0f}" for k, v in profile["costliest_ms"].items())
        print(
            f"  turnstream {name:14} median {median:.3f} s  (min {min(times):.3f}, "
            f"max {max(times):.3f}; CPU {statistics.median(cpus):.3f} s)  "
            f"{'ok' if median < args.budget_s else 'OVER BUDGET'}\n"
            f"    imports {profile['all_imports_ms']:.0f} ms; costliest (ms): {costliest}"
        )
    report = {
        "budget_s": args.budget_s,
        "runs": args.runs,
        "command": turnstream(),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "results": results,
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0 if all(r["within_budget"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
