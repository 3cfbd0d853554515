"""P10 lane 1 (expressions) runs off the event loop, in one hop per turn to its own pool,
and keeps a time limit per expression."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping

import pytest

from processors.phases import enforcement
from processors.phases.enforcement import Decision, constraints_to_check, enforce
from schemas.pack.agent_pack import AgentPack
from schemas.pack.rules import Rule
from sinks.pack_files import load_pack
from tests.test_phase_p10_enforcement import ANSWER, OPEN, PACK_DIR, STANDARD


@pytest.fixture(scope="module")
def pack() -> AgentPack:
    return load_pack(PACK_DIR)


def hard(rule_id: str, expression: str) -> Rule:
    return Rule(
        id=rule_id,
        condition_text="c",
        action_text="a",
        is_hard_constraint=True,
        enforcement_expression=expression,
    )


def with_rules(pack: AgentPack, *rules: Rule) -> AgentPack:
    return pack.model_copy(update={"rules": [*pack.rules, *rules]})


async def check(
    pack: AgentPack, text: str = "Hello.", timeout_s: float = 0.5
) -> enforcement.Enforcement:
    return await enforce(
        text,
        ANSWER,
        [],
        pack,
        STANDARD,
        attempt=1,
        max_attempts=1,
        outcome=OPEN,
        expression_timeout_s=timeout_s,
    )


async def test_every_expression_of_a_turn_runs_in_one_hop_to_the_lane_pool(
    pack: AgentPack, monkeypatch: pytest.MonkeyPatch
) -> None:
    custom = with_rules(pack, hard("a1", "order_total > 1"), hard("a2", "order_total > 2"))
    seen: list[tuple[str, int]] = []
    original = enforcement._check_in_scope

    def spy(rule: Rule, scope: Mapping[str, object]) -> str | None:
        seen.append((threading.current_thread().name, threading.get_ident()))
        return original(rule, scope)

    monkeypatch.setattr(enforcement, "_check_in_scope", spy)
    expected = [r for r in constraints_to_check(custom, []) if r.enforcement_expression]
    out = await check(custom)
    assert len(seen) == len(expected) >= 3
    assert {name.split("_")[0] for name, _ in seen} == {"turnstream-enforce"}
    assert len({ident for _, ident in seen}) == 1  # one hop for the turn
    assert out.decision is Decision.PASS


async def test_a_slow_expression_is_a_violation_and_the_others_are_still_checked(
    pack: AgentPack, monkeypatch: pytest.MonkeyPatch
) -> None:
    custom = with_rules(pack, hard("slow", "order_total > 1"), hard("after", "order_total < 1"))
    original = enforcement._check_in_scope

    def slow_one(rule: Rule, scope: Mapping[str, object]) -> str | None:
        if rule.id == "slow":
            time.sleep(0.15)
        return original(rule, scope)

    monkeypatch.setattr(enforcement, "_check_in_scope", slow_one)
    out = await check(custom, timeout_s=0.1)
    details = {v.rule_id: v.detail for v in out.result.violations}
    assert details["slow"] == "cannot verify (evaluation took over 0.1 s)"
    assert details["after"].startswith("after: ")  # evaluated: it does not hold
    assert out.decision is Decision.FALLBACK


async def test_a_hung_evaluation_fails_closed_within_the_turn_budget(
    pack: AgentPack, monkeypatch: pytest.MonkeyPatch
) -> None:
    custom = with_rules(pack, hard("hang", "order_total > 1"), hard("after", "order_total > 1"))
    release = threading.Event()
    original = enforcement._check_in_scope

    def hang(rule: Rule, scope: Mapping[str, object]) -> str | None:
        if rule.id == "hang":
            release.wait(5)
        return original(rule, scope)

    monkeypatch.setattr(enforcement, "_check_in_scope", hang)
    rules = [r for r in constraints_to_check(custom, []) if r.enforcement_expression]
    started = time.perf_counter()
    try:
        out = await check(custom, timeout_s=0.05)
    finally:
        release.set()
    assert time.perf_counter() - started < 0.05 * len(rules) + 0.5
    details = {v.rule_id: v.detail for v in out.result.violations}
    assert details["hang"] == details["after"] == "cannot verify (evaluation took over 0.05 s)"
    assert out.decision is Decision.FALLBACK


async def test_the_loop_keeps_running_while_a_heavy_expression_is_evaluated(
    pack: AgentPack,
) -> None:
    # as heavy as the caps allow: builds and compares values near the weight cap
    heavy = " and ".join(["[[1] * 300] * 300 == [[1] * 300] * 300"] * 10)
    custom = with_rules(pack, hard("heavy", heavy), hard("bomb", "[[[1]*10000]*10000]*10000 == 1"))
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    started = time.perf_counter()
    out = await check(custom, timeout_s=2.0)
    elapsed = time.perf_counter() - started
    stop.set()
    await ticking
    details = {v.rule_id: v.detail for v in out.result.violations}
    assert "heavy" not in details
    assert details["bomb"].startswith("cannot verify (")
    assert elapsed < 2.0
    assert max(gaps) < 0.2  # the loop was never held for long
