"""Light commands do not import the heavy libraries: ``--help``, ``pack validate``, ``sql``,
``kafka status`` and ``topics list`` run without torch, Faust, Qdrant or transformers.

Each command runs in a fresh interpreter through ``streams.cli.main``, which then reports
which of those packages ended up in ``sys.modules``. (How long they take is measured by
``bench/cli_startup.py``, not here.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streams.local_kafka import free_ports
from streams.settings import Settings

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "faust", "qdrant_client", "transformers", "sentence_transformers", "mode")

PROBE = """
import contextlib, io, json, sys
from streams.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
    try:
        code = main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
heavy = sorted({name.split(".")[0] for name in sys.modules} & set(json.loads(HEAVY)))
print(json.dumps({"code": code, "heavy": heavy, "out": out.getvalue()}))
"""


def imported_by(
    *argv: str, tmp_path: Path, extra: dict[str, str] | None = None
) -> dict[str, object]:
    (port,) = free_ports(1)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TURNSTREAM_")}
    env |= {"TURNSTREAM_DATA_DIR": str(tmp_path), "TURNSTREAM_ANALYTICS__QUERY_PORT": str(port)}
    env |= extra or {}
    done = subprocess.run(
        [sys.executable, "-c", PROBE.replace("HEAVY", repr(json.dumps(HEAVY))), *argv],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.splitlines()[-1])
    return result


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["pack", "validate", "packs/acme-shop/support"],
        ["sql", "SELECT 1 AS one"],
        ["kafka", "status"],
        ["topics", "list"],
    ],
    ids=lambda argv: " ".join(argv[:2]),
)
def test_light_command_imports_no_heavy_library(argv: list[str], tmp_path: Path) -> None:
    result = imported_by(*argv, tmp_path=tmp_path)
    assert result["heavy"] == [], f"{' '.join(argv)} imported {result['heavy']}"
    assert result["code"] in (0, 3), result["out"]  # 3: `kafka status` of a stopped broker


def test_the_probe_sees_a_heavy_import(tmp_path: Path) -> None:
    """The check above can fail: the worker needs Faust, and the probe shows it (the worker
    gives up at once here: no broker, and no wait for one)."""
    (port,) = free_ports(1)
    down = {"TURNSTREAM_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}", "TURNSTREAM_KAFKA_WAIT_S": "0"}
    if "ops" in Settings.model_fields:
        down["TURNSTREAM_OPS__PORT"] = "0"
    result = imported_by("worker", tmp_path=tmp_path, extra=down)
    assert result["code"] == 1, result["out"]
    heavy = result["heavy"]
    assert isinstance(heavy, list) and "faust" in heavy, result
