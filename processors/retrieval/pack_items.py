"""What of an agent pack retrieval indexes (memories come from ingestion, not the pack).

- rules: for each *enabled* rule, one point on ``condition_text`` plus one per example
  phrasing, grouped by rule id and max-aggregated (the action is not what a situation looks
  like; a disabled rule would only take a top-k slot P5 then drops). A condition is written
  in the abstract ("the customer talks about a payment"), a customer is concrete ("my visa
  was declined"): the examples bridge the two. This extends the issue's "rules are indexed on
  condition_text": the examples are extra vectors of the same rule, max-pooled, so one
  matching phrasing is enough (``pool_top_n`` 1 for rules).
- intents: one point per example phrase plus one for the intent's ``description`` (when it
  has one), grouped by intent id; an intent scores as the mean of its ``pool_top_n``
  best-matching points (3 by default, see ``fusion``), a nearest-neighbour vote that one
  stray phrase sharing a word with the message cannot win alone. Diverse phrasings stay
  distinct instead of being averaged into one centroid, one edited phrase re-embeds alone,
  and BM25 matches phrases. The description is the author's statement of what the intent
  covers ("The customer is unhappy with the service, a product or a delivery"): it reaches
  the wordings the five to eight examples do not, the way a scenario's description does. It
  is a point like the examples, so it adds no weight to tune; its id is not indexed (a key,
  not text). Measured with ``bench/intent_heldout.py`` (leave-one-out over the example
  phrases, which never sees the labelled set): 41 -> 46 of 71 phrases right, 5 gained, none
  lost.
- scenarios: one point per entry example plus one for ``name. description``, grouped by
  scenario id, max-aggregated like intents.

Point ids are ``<object id>#<hash of the text>`` for grouped points, so reordering or
editing one phrase leaves the others' vectors alone. Payloads stay empty: P5/P6 read the
objects from the pack by id, and a payload change would cost a re-embedding.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from processors.retrieval.descriptors import PACK_BACKED
from processors.retrieval.indexer import Indexer, IndexReport
from processors.retrieval.model import IndexItem, Scope
from schemas.domain.retrieval import RetrievalType
from schemas.pack import AgentPack


def _phrase_points(object_id: str, texts: Iterable[str]) -> list[IndexItem]:
    unique = dict.fromkeys(t.strip() for t in texts if t.strip())
    return [
        IndexItem.of(
            f"{object_id}#{hashlib.sha256(t.encode()).hexdigest()[:12]}", t, group=object_id
        )
        for t in unique
    ]


def index_items(pack: AgentPack) -> dict[RetrievalType, list[IndexItem]]:
    """The points of each pack-backed retrieval type (see the module docstring and
    :data:`processors.retrieval.descriptors.PACK_BACKED`)."""
    rules = [
        p
        for r in pack.rules
        if r.enabled
        for p in _phrase_points(r.id, [r.condition_text, *r.examples])
    ]
    intents = [p for i in pack.intents for p in _phrase_points(i.id, [*i.examples, i.description])]
    scenarios = []
    for s in pack.scenarios:
        summary = f"{s.name}. {s.description}" if s.description.strip() else s.name
        scenarios.extend(_phrase_points(s.id, [summary, *s.entry_examples]))
    return {
        RetrievalType.RULES: rules,
        RetrievalType.INTENTS: intents,
        RetrievalType.SCENARIOS: scenarios,
    }


def sync_pack(indexer: Indexer, pack: AgentPack) -> dict[RetrievalType, IndexReport]:
    """Bring the agent's rules, intents and scenarios in the store in line with ``pack``:
    only new or changed texts are embedded, removed ones are deleted."""
    tenant, agent = pack.agent.tenant_id, pack.agent.agent_id
    items = index_items(pack)
    return {rtype: indexer.sync(Scope(tenant, agent, rtype), items[rtype]) for rtype in PACK_BACKED}
