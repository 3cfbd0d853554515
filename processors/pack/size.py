"""The operator's cap on how much of a pack retrieval embeds (``max_pack_texts``).

Why: a worker embeds a new pack version while it serves every tenant's turns; embedding
costs ~4 ms a text on one core (all-MiniLM-L6-v2, torch), so a tenant's 10,770-text pack
(issue 20) was minutes of one core's time. The cap bounds that per load, and the limit is
the operator's, not the tenant's: ``pack validate`` and ``pack load`` refuse a larger pack
with this error, and a worker skips a record above it (``streams.pack_registry``).
"""

from __future__ import annotations

from processors.pack.errors import PackError
from processors.retrieval.pack_items import index_items
from schemas.pack import AgentPack

TOO_MANY_TEXTS = "too_many_texts"


def indexed_texts(pack: AgentPack) -> int:
    """How many texts retrieval embeds for ``pack`` (see ``processors.retrieval.pack_items``)."""
    return sum(len(items) for items in index_items(pack).values())


def size_problems(pack: AgentPack, max_texts: int) -> list[PackError]:
    """One error when the pack makes retrieval embed more than ``max_texts`` texts."""
    texts = indexed_texts(pack)
    if texts <= max_texts:
        return []
    message = (
        f"the pack makes retrieval embed {texts} texts (intent examples and descriptions, "
        f"rule conditions and examples, scenario summaries and entry examples), more than "
        f"the {max_texts} this deployment allows (TURNSTREAM_MAX_PACK_TEXTS)"
    )
    return [PackError("agent.yaml", 0, TOO_MANY_TEXTS, message)]
