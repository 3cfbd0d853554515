"""Indexing an agent pack: which texts become points, and re-syncing only what changed."""

from __future__ import annotations

from processors.retrieval.indexer import Indexer, IndexReport
from processors.retrieval.pack_items import index_items, sync_pack
from schemas.domain.retrieval import RetrievalType
from schemas.pack import AgentPack, AgentSettings, Intent, Rule, Scenario, Step, StepKind
from sinks.vector_store import VectorStore
from tests.test_retrieval_indexer import HashEmbedder

R = RetrievalType


def pack(refund_examples: list[str], cancel_description: str = "") -> AgentPack:
    return AgentPack(
        agent=AgentSettings(tenant_id="acme", agent_id="support", name="Support"),
        rules=[
            Rule(id="refund_window", condition_text="customer asks for a refund", action_text="x"),
            Rule(id="old", condition_text="legacy rule", action_text="y", enabled=False),
        ],
        intents=[
            Intent(id="refund", examples=refund_examples),
            Intent(id="cancel", description=cancel_description, examples=["cancel my plan"]),
        ],
        scenarios=[
            Scenario(
                id="returns",
                name="Returns",
                description="send an item back",
                entry_examples=["I want to return my shoes"],
                entry_step_id="start",
                steps=[Step(id="start", kind=StepKind.LOGIC)],
            )
        ],
    )


def test_index_items_shapes() -> None:
    items = index_items(pack(["money back", "refund please", "money back"]))
    assert [(i.group_id, i.text) for i in items[R.RULES]] == [
        ("refund_window", "customer asks for a refund")
    ]
    intents = items[R.INTENTS]
    assert [(i.group_id, i.text) for i in intents] == [
        ("refund", "money back"),
        ("refund", "refund please"),
        ("cancel", "cancel my plan"),
    ]
    assert all(i.object_id.startswith(f"{i.group_id}#") for i in intents)
    assert [(i.group_id, i.text) for i in items[R.SCENARIOS]] == [
        ("returns", "Returns. send an item back"),
        ("returns", "I want to return my shoes"),
    ]


def test_sync_pack_reembeds_only_the_changed_phrase() -> None:
    embedder = HashEmbedder()
    indexer = Indexer(VectorStore.memory(embedder.dim), embedder)
    first = sync_pack(indexer, pack(["money back", "refund please"]))
    assert first[R.INTENTS] == IndexReport(3, 0, 0)
    embedder.texts.clear()
    second = sync_pack(indexer, pack(["money back", "refund now"]))
    assert second == {
        R.RULES: IndexReport(0, 0, 1),
        R.INTENTS: IndexReport(1, 1, 2),
        R.SCENARIOS: IndexReport(0, 0, 2),
    }
    assert embedder.texts == ["refund now"]


def test_an_intent_is_also_indexed_on_its_description() -> None:
    items = index_items(pack(["money back"], cancel_description="The customer ends a plan."))
    assert [(i.group_id, i.text) for i in items[R.INTENTS]] == [
        ("refund", "money back"),
        ("cancel", "cancel my plan"),
        ("cancel", "The customer ends a plan."),
    ]
    same = index_items(pack(["money back"], cancel_description="cancel my plan"))
    assert [i.text for i in same[R.INTENTS]] == ["money back", "cancel my plan"]


def test_a_changed_description_reembeds_only_itself() -> None:
    embedder = HashEmbedder()
    indexer = Indexer(VectorStore.memory(embedder.dim), embedder)
    sync_pack(indexer, pack(["money back"], cancel_description="Ends a plan."))
    embedder.texts.clear()
    second = sync_pack(indexer, pack(["money back"], cancel_description="Stops a plan."))
    assert second[R.INTENTS] == IndexReport(1, 1, 2)
    assert embedder.texts == ["Stops a plan."]
