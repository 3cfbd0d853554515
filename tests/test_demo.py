"""``turnstream demo``, the README's main command, exits 0 and prints the conversation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from streams.settings import Settings
from tests.pipeline_support import REPO, pipeline_settings, settings_env

pytestmark = pytest.mark.integration


@pytest.mark.timeout(400)
def test_demo_plays_the_refund_conversation_and_exits_0(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    settings = pipeline_settings(kafka_settings, tmp_path)
    env = settings_env(settings)
    env["TURNSTREAM_ANALYTICS__ENABLED"] = "true"  # the demo runs the whole worker
    done = subprocess.run(
        [sys.executable, "-m", "streams.cli", "demo"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=360,
    )
    out = done.stdout
    assert done.returncode == 0, done.stdout + done.stderr
    assert out.count("customer> ") == 2
    assert "scenario refund: START -> confirm_refund, skipped ask_order_id, ask_reason" in out
    assert "tool check_refund_eligibility: ok" in out
    assert "enforcement attempt 1: violated" in out and "refund_within_tier_limit" in out
    assert "enforcement attempt 2: passed" in out
    assert "Done: refund RF-10023 of 500.00 USD" in out
    assert "timings ms: identification" in out
