"""Tenant code and URLs are hostile: Python tools only from the operator's allowed modules,
HTTP tools only to public addresses, judged by ``pack validate`` (at the tool's line) and
again at every call in the worker, where a refusal is a failed tool call, not a crash."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from processors.pack import PackError, Severity
from processors.phases.tools import DueBinding, run_tools
from processors.tool_policy import ToolPolicy
from schemas.domain.customer_data import VariableEntry, VariableScope, VariableSource, VariableType
from schemas.pack.agent_pack import AgentPack
from schemas.pack.common import ToolTiming
from schemas.pack.tools import HttpImplementation, ToolImplementation
from sinks.outbound_http import guarded_session
from sinks.pack_files import load_pack, validate_pack
from streams.cli import main
from streams.pipeline.runtime import pack_tools
from streams.settings import Settings, ToolSettings, ToolsPhaseSettings
from tests.test_pack_validate import EXAMPLE, copy_pack

NOW = datetime(2025, 6, 1, 12, tzinfo=UTC)
ORDER_TOOL = "python: packs.tools.acme_shop:lookup_order"
HANDOFF_URL = "url: https://support.acme-shop.example/api/handoffs"


def broken_tools(root: Path, old: str, new: str) -> tuple[Path, int]:
    """A copy of the example pack with ``old`` replaced by ``new`` in tools.yaml, and the
    1-based line of the replacement."""
    pack_dir = copy_pack(root)
    tools = pack_dir / "tools.yaml"
    text = tools.read_text()
    assert text.count(old) == 1
    tools.write_text(text.replace(old, new))
    return pack_dir, text[: text.index(old)].count("\n") + 1


def errors(problems: list[PackError]) -> list[tuple[str, int, str]]:
    return [(p.file, p.line, p.code) for p in problems if p.severity is Severity.ERROR]


# -- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["os:system", "this:s", "subprocess:run", "sinks.llm_openai:OpenAiLlm"]
)
def test_a_python_tool_outside_the_allowed_modules_is_refused_at_its_line(
    path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = path.partition(":")[0]
    monkeypatch.delitem(sys.modules, "this", raising=False)
    pack_dir, line = broken_tools(tmp_path, ORDER_TOOL, f"python: {path}")
    problems = validate_pack(pack_dir)
    assert errors(problems) == [("tools.yaml", line, "tool_not_allowed")]
    (refusal,) = [p for p in problems if p.code == "tool_not_allowed"]
    assert repr(module) in refusal.message and "TURNSTREAM_TOOLS__PYTHON_ALLOWED_PREFIXES" in (
        refusal.message
    )
    assert "this" not in sys.modules  # refused before anything was imported


def test_an_allowed_tool_that_does_not_import_or_resolve_is_reported_at_its_line(
    tmp_path: Path,
) -> None:
    missing_module, line = broken_tools(
        tmp_path / "a", ORDER_TOOL, "python: packs.tools.no_such_shop:lookup_order"
    )
    assert errors(validate_pack(missing_module)) == [("tools.yaml", line, "unresolved_tool")]
    missing_function, line = broken_tools(
        tmp_path / "b", ORDER_TOOL, "python: packs.tools.acme_shop:lookup_orders"
    )
    (problem,) = [p for p in validate_pack(missing_function) if p.code == "unresolved_tool"]
    assert (problem.line, problem.severity) == (line, Severity.ERROR)
    assert "has no 'lookup_orders'" in problem.message
    constant, line = broken_tools(
        tmp_path / "d", ORDER_TOOL, "python: packs.tools.acme_shop:_DAMAGE_REASONS"
    )
    assert errors(validate_pack(constant)) == [("tools.yaml", line, "unresolved_tool")]


def test_the_operator_decides_which_modules_tools_may_come_from(tmp_path: Path) -> None:
    pack_dir, line = broken_tools(tmp_path, ORDER_TOOL, "python: json:loads")
    assert errors(validate_pack(pack_dir)) == [("tools.yaml", line, "tool_not_allowed")]
    allowed = ToolPolicy(("packs.tools", "json"))
    assert errors(validate_pack(pack_dir, allowed)) == []
    # a prefix is a package, not a string prefix: "json" does not allow "jsonschema"
    assert ToolPolicy(("json",)).python_refusal("jsonschema:validate") is not None
    assert ToolPolicy(("json",)).python_refusal("json.decoder:JSONDecoder") is None
    assert ToolPolicy(()).python_refusal("packs.tools.acme_shop:lookup_order")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8123/tools",
        "http://localhost:18124/query",  # the analytics query endpoint's default port
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.7/internal",
        "http://[::1]/x",
        "http://[::ffff:127.0.0.1]/x",
    ],
)
def test_an_http_tool_at_a_private_address_is_refused_at_its_line_unless_the_operator_allows_it(
    url: str, tmp_path: Path
) -> None:
    pack_dir, line = broken_tools(tmp_path, HANDOFF_URL, f"url: {url}")
    assert errors(validate_pack(pack_dir)) == [("tools.yaml", line, "refused_url")]
    local = ToolPolicy(allow_private_http=True)
    assert errors(validate_pack(pack_dir, local)) == []


def test_pack_validate_applies_the_settings_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pack_dir, line = broken_tools(tmp_path, ORDER_TOOL, "python: os:system")
    assert main(["pack", "validate", str(pack_dir)]) == 1
    out = capsys.readouterr().out
    assert f"{pack_dir / 'tools.yaml'}:{line}: tool_not_allowed: module 'os'" in out
    monkeypatch.setenv("TURNSTREAM_TOOLS__PYTHON_ALLOWED_PREFIXES", "packs.tools,os")
    assert main(["pack", "validate", str(pack_dir)]) == 0


def test_the_example_pack_passes_the_default_policy() -> None:
    assert errors(validate_pack(EXAMPLE, ToolPolicy.of(Settings().tools))) == []


# -- at call time, in the worker's executors ----------------------------------------------


def var(value: Any) -> VariableEntry:
    return VariableEntry(
        value=json.dumps(value),
        type=VariableType.STRING,
        scope=VariableScope.CASE,
        source=VariableSource.USER,
        confidence=1.0,
        last_updated_at=NOW,
    )


CUSTOMER = {"order_id": var("A-10023"), "customer_id": var("C-1001")}


def with_tool(pack: AgentPack, tool_id: str, implementation: ToolImplementation) -> AgentPack:
    tools = [
        t.model_copy(update={"implementation": implementation}) if t.id == tool_id else t
        for t in pack.tools
    ]
    return pack.model_copy(update={"tools": tools})


async def call_as_the_worker(settings: Settings, pack: AgentPack, tool_id: str) -> Any:
    """One due tool run by the executors the worker builds from ``settings``."""
    session = guarded_session(allow_private=settings.tools.allow_private_targets)
    try:
        executor = pack_tools(
            settings.model_copy(update={"packs_dir": EXAMPLE.parents[1]}), session
        )
        due = [DueBinding(tool_id, ToolTiming.BEFORE, "test")]
        return await run_tools(due, CUSTOMER, pack, executor(pack), ToolsPhaseSettings(), now=NOW)
    finally:
        await session.close()


@pytest.mark.parametrize("path", ["os:system", "this:s"])
async def test_a_refused_python_tool_is_a_failed_call_without_retries(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(sys.modules, "this", raising=False)
    pack = with_tool(load_pack(EXAMPLE), "lookup_order", ToolImplementation(python=path))
    assert next(t.retries for t in pack.tools if t.id == "lookup_order") == 2
    result = await call_as_the_worker(Settings(), pack, "lookup_order")
    (call,) = result.calls
    assert not call.success and call.attempts == 1
    assert call.error is not None and call.error.startswith("refused: module ")
    assert "this" not in sys.modules
    # the same call under an operator policy that allows the module is made
    allowed = Settings(tools=ToolSettings(python_allowed_prefixes=["packs.tools"]))
    ok = await call_as_the_worker(allowed, load_pack(EXAMPLE), "lookup_order")
    assert [c.success for c in ok.calls] == [True]


@dataclass
class LocalService:
    """A real HTTP server on the loopback interface that counts what reaches it."""

    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
async def loopback_service() -> AsyncIterator[LocalService]:
    service = LocalService("")

    async def handle(request: web.Request) -> web.Response:
        service.requests.append(await request.json())
        return web.json_response({"handoff_ticket_id": "H-1", "wait_minutes": 3})

    app = web.Application()
    app.router.add_post("/handoffs", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    service.url = f"http://127.0.0.1:{port}/handoffs"
    try:
        yield service
    finally:
        await runner.cleanup()


async def test_an_http_tool_at_loopback_is_refused_at_call_and_reached_only_with_the_opt_in(
    loopback_service: LocalService,
) -> None:
    implementation = ToolImplementation(http=HttpImplementation(url=loopback_service.url))
    pack = with_tool(load_pack(EXAMPLE), "handoff_to_human", implementation)

    refused = await call_as_the_worker(Settings(), pack, "handoff_to_human")
    (call,) = refused.calls
    assert not call.success and call.error is not None
    assert call.error.startswith("TargetRefusedError: 127.0.0.1 is not a public address")
    assert loopback_service.requests == []  # nothing left the worker

    local = Settings(tools=ToolSettings(allow_private_targets=True))
    allowed = await call_as_the_worker(local, pack, "handoff_to_human")
    assert [c.success for c in allowed.calls] == [True]
    assert allowed.outputs["handoff_to_human"]["handoff_ticket_id"] == "H-1"
    assert loopback_service.requests == [{"customer_id": "C-1001", "order_id": "A-10023"}]


async def test_a_name_that_resolves_to_loopback_is_refused_at_call(
    loopback_service: LocalService,
) -> None:
    by_name = loopback_service.url.replace("127.0.0.1", "localhost")
    implementation = ToolImplementation(http=HttpImplementation(url=by_name))
    pack = with_tool(load_pack(EXAMPLE), "handoff_to_human", implementation)
    (call,) = (await call_as_the_worker(Settings(), pack, "handoff_to_human")).calls
    assert not call.success and call.error is not None and "TargetRefusedError" in call.error
    assert loopback_service.requests == []
