"""Shared helpers of the security tests: whole turns in one process, over real components.

:class:`Turns` holds what a worker holds (the embedding model, one vector store and lexical
index shared by every tenant, the in-process state of ``processors.turn.in_process``, each
pack's tools over its own data files) and runs :func:`run_turn` for any tenant. LLM mode
points every LLM phase at the scripted OpenAI-compatible server of ``tests.fake_openai``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from processors.llm import LlmTask
from processors.phases.enforcement import check_rule_expression
from processors.phases.tools import PackToolExecutor, ToolExecutor
from processors.turn.answer import turn_variables
from processors.turn.deps import TurnDeps
from processors.turn.in_process import MemoryState, run_turn
from schemas.domain.phase import Phase
from schemas.domain.turn_input import Channel, TurnInput
from schemas.domain.turn_record import TurnRecord
from schemas.events.turn_requested import TurnRequested
from schemas.events.turn_response import TurnResponse
from schemas.pack.agent_pack import AgentPack
from sinks.embedder import default_embedder
from sinks.llm_openai import OpenAiLlm
from sinks.pack_files import load_pack
from sinks.python_tools import PythonToolExecutor
from sinks.turn_deps import RetrievalPorts
from sinks.vector_store import Layout, VectorStore
from streams.settings import EnforcementPhaseSettings, Settings, load_settings
from tests.fake_openai import FakeOpenAi, llm_phase
from tests.test_pack_validate import EXAMPLE

__all__ = [
    "EXAMPLE",
    "LLM_PHASES",
    "SHOP",
    "Turns",
    "broken_constraints",
    "foreign_reads",
    "llm_settings",
    "llm_tasks",
    "other_customers_facts",
    "tenant_copy",
]

SHOP: dict[str, Any] = json.loads((EXAMPLE / "data" / "shop.json").read_text())
LLM_PHASES = (Phase.SENSOR, Phase.RULE_SELECTION, Phase.GENERATION, Phase.ENFORCEMENT)
SNAPSHOT: dict[str, Any] = {
    "language": "en",
    "intent_changed": True,
    "new_intent_label": "refund_request",
    "topic_changed": False,
    "tone": "neutral",
    "frustration_level": "NONE",
    "situation_facts": [],
    "candidate_variables": [],
}


def tenant_copy(
    target: Path,
    tenant_id: str,
    *,
    shop: Mapping[str, Any] | None = None,
    extra_rules: str = "",
    webhooks: str | None = None,
) -> Path:
    """The example pack copied to ``target`` with another tenant id, and optionally its own
    shop data, extra rules (YAML list items appended to ``rules:``) and webhooks file."""
    shutil.copytree(EXAMPLE, target)
    agent = target / "agent.yaml"
    agent.write_text(agent.read_text().replace("tenant_id: acme-shop", f"tenant_id: {tenant_id}"))
    if shop is not None:
        (target / "data" / "shop.json").write_text(json.dumps(shop, indent=1))
    if extra_rules:
        rules = target / "rules.yaml"
        text = rules.read_text()
        head, sep, tail = text.partition("\nrelationships:")
        rules.write_text(head.rstrip("\n") + "\n" + extra_rules + "\n" + sep + tail)
    if webhooks is not None:
        (target / "webhooks.yaml").write_text(webhooks)
    return target


def llm_settings(fake: FakeOpenAi, api_key: str, base: Settings | None = None) -> Settings:
    """Every LLM phase in ``llm`` mode against ``fake``, without retries or backoff."""
    settings = base or load_settings()
    phase = llm_phase(timeout_s=5.0, retries=0)
    phases = settings.phases.model_copy(
        update={
            "sensor": phase,
            "rule_selection": phase,
            "generation": phase,
            "enforcement": EnforcementPhaseSettings(**phase.model_dump()),
        }
    )
    return settings.model_copy(
        update={"llm_base_url": fake.url, "llm_api_key": api_key, "phases": phases}
    )


def llm_tasks(settings: Settings) -> dict[Phase, LlmTask]:
    """The real LLM port for every LLM phase, as the worker builds it (no backoff)."""
    llm = OpenAiLlm(settings, backoff_s=0)
    return dict.fromkeys(LLM_PHASES, llm)


@dataclass
class Turns:
    """The parts of a worker, shared by every tenant it serves."""

    ports: RetrievalPorts
    state: MemoryState = field(default_factory=MemoryState)
    pack_dirs: dict[tuple[str, str], Path] = field(default_factory=dict)
    packs: dict[tuple[str, str], AgentPack] = field(default_factory=dict)

    @classmethod
    def create(cls, layout: Layout = Layout.PER_SCOPE) -> Turns:
        embedder = default_embedder()
        return cls(RetrievalPorts.over(VectorStore.memory(embedder.dim, layout=layout), embedder))

    def add_pack(self, pack_dir: Path = EXAMPLE) -> AgentPack:
        pack = load_pack(pack_dir)
        key = (pack.agent.tenant_id, pack.agent.agent_id)
        self.ports.sync(pack)
        self.state.add_pack(pack)
        self.pack_dirs[key] = pack_dir
        self.packs[key] = pack
        return pack

    def forget(self) -> None:
        """Start over with no customers, sessions or customer data (the packs stay)."""
        self.state = MemoryState()
        for pack in self.packs.values():
            self.state.add_pack(pack)

    def _tools(self, pack: AgentPack) -> ToolExecutor:
        pack_dir = self.pack_dirs[(pack.agent.tenant_id, pack.agent.agent_id)]
        return PackToolExecutor(PythonToolExecutor(pack_dir))

    def deps(
        self, settings: Settings | None = None, llm: Mapping[Phase, LlmTask] | None = None
    ) -> TurnDeps:
        return self.ports.turn_deps(settings or load_settings(), self._tools, llm=llm)

    async def say(
        self,
        message: str,
        *,
        turn_id: str,
        tenant_id: str = "acme-shop",
        agent_id: str = "support",
        channel: Channel = Channel.WEBCHAT,
        channel_id: str = "visitor-1",
        customer_id: str | None = "C-1001",
        deps: TurnDeps | None = None,
    ) -> tuple[TurnResponse, TurnRecord]:
        request = TurnRequested(
            turn_id=turn_id,
            input=TurnInput(
                tenant_id=tenant_id,
                agent_id=agent_id,
                channel=channel,
                channel_id=channel_id,
                customer_id=customer_id,
                message=message,
            ),
            sent_at=datetime.now(UTC),
        )
        return await run_turn(request, self.state, deps or self.deps())


def broken_constraints(pack: AgentPack, record: TurnRecord, text: str) -> dict[str, str]:
    """Every enabled hard constraint the final answer breaks, by rule id: its enforcement
    expression over the turn's final variables (lane 1's own check) and its must_avoid
    phrases. Empty when the answer keeps them all."""
    context = record.context
    response_type = context.plan.response_type.value if context.plan else None
    variables = turn_variables(context)
    broken: dict[str, str] = {}
    for rule in pack.rules:
        if not (rule.enabled and rule.is_hard_constraint):
            continue
        reason = check_rule_expression(rule, text, response_type, variables)
        if reason is not None:
            broken[rule.id] = reason
        avoided = [p for p in rule.must_avoid if p.lower() in text.lower()]
        if avoided:
            broken[rule.id] = f"says {avoided}"
    return broken


def other_customers_facts(customer_id: str) -> set[str]:
    """What only other customers' records hold: names, emails, addresses, tracking numbers,
    items and delivery dates of their orders (the texts a leak would show)."""
    facts: set[str] = set()
    for customer in SHOP["customers"]:
        if customer["customer_id"] != customer_id:
            facts |= {customer["name"], customer["email"]}
    mine = {o["order_id"] for o in SHOP["orders"] if o["customer_id"] == customer_id}
    for order in SHOP["orders"]:
        if order["order_id"] in mine:
            continue
        facts |= set(order["items"])
        for key in ("shipping_address", "tracking_number", "delivered_at", "eta"):
            if order[key]:
                facts.add(str(order[key]))
    return facts


def foreign_reads(record: TurnRecord, customer_id: str) -> list[str]:
    """Tool calls of the turn that returned another customer's order or account."""
    owner = {o["order_id"]: o["customer_id"] for o in SHOP["orders"]}
    found: list[str] = []
    for call in record.context.tool_calls:
        given = json.loads(call.input)
        output = json.loads(call.output) if call.output else {}
        if not (call.success and isinstance(output, dict) and output.get("found", True)):
            continue
        order = given.get("order_id")
        if order in owner and owner[order] != customer_id:
            found.append(f"{call.tool}({order} of {owner[order]})")
        if call.tool == "lookup_customer" and given.get("customer_id") != customer_id:
            found.append(f"{call.tool}({given.get('customer_id')})")
    return found
