"""bench/intent_heldout.py: leave-one-out over the pack's own example phrases.

The first test checks the mechanics on a hash embedder; the second runs the real model on the
example pack and checks that indexing intents on their description is still worth it on a
measure that never reads the labelled set.
"""

from __future__ import annotations

from bench.intent_heldout import (
    Config,
    IntentIndex,
    leave_one_out,
    without_descriptions,
)
from bench.retrieval import load_set
from schemas.pack import AgentPack, AgentSettings, Intent
from sinks.embedder import default_embedder
from sinks.pack_files import load_pack
from tests.test_retrieval_indexer import HashEmbedder

DEFAULT = Config(pool_top_n=3, lexical_weight=0.3)


def small_pack() -> AgentPack:
    return AgentPack(
        agent=AgentSettings(tenant_id="acme", agent_id="support", name="Support"),
        intents=[
            Intent(id="refund", description="money back", examples=["refund me", "money back"]),
            Intent(id="cancel", examples=["cancel my plan", "stop my order", "cancel it"]),
            Intent(id="hello", examples=["hi"]),
        ],
    )


def test_leave_one_out_holds_out_each_phrase_of_intents_with_two_or_more() -> None:
    embedder = HashEmbedder()
    index = IntentIndex(embedder)
    try:
        pack = small_pack()
        hits = leave_one_out(index, pack, DEFAULT)
        assert len(hits) == 5  # 2 + 3; "hello" has a single phrase
        assert pack == small_pack()  # the pack itself is not changed
        # "money back" held out: the description of the same text still stands for it.
        assert hits[1] is True
        assert [i.description for i in without_descriptions(pack).intents] == ["", "", ""]
    finally:
        index.close()


def test_descriptions_help_leave_one_out_on_the_real_model() -> None:
    pack = load_pack(load_set().pack_dir)
    index = IntentIndex(default_embedder())
    try:
        with_descriptions = sum(leave_one_out(index, pack, DEFAULT))
        examples_only = sum(leave_one_out(index, without_descriptions(pack), DEFAULT))
    finally:
        index.close()
    assert with_descriptions > examples_only
