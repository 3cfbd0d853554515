"""P11 memory ingestion: what an answered turn leaves behind for later retrieval.

A memory is one short text per turn, ``<intent>: <customer message> | agent: <first
sentence of the answer>``, in the customer's own memories scope (tenant, agent, customer):
retrieval of later turns finds it by meaning. Summarisation is this deliberately plain
heuristic (no model); an LLM summariser can replace :func:`memory_text`. The memory's id is
the turn id, so ingesting a turn twice rewrites the same point.
"""

from __future__ import annotations

import re

from processors.retrieval.model import IndexItem, Scope
from schemas.domain.retrieval import RetrievalType
from schemas.domain.turn_record import TurnRecord

MAX_MEMORY_CHARS = 600
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def memory_text(record: TurnRecord) -> str | None:
    """The memory of a turn, or None for a turn without an answer."""
    context = record.context
    if context.response_text is None:
        return None
    said = " ".join(context.input.message.split())
    answer = _SENTENCE.split(context.response_text.strip(), maxsplit=1)[0]
    intent = context.canonical_intent or "no intent"
    return f"{intent}: {said} | agent: {answer}"[:MAX_MEMORY_CHARS]


def memory_item(record: TurnRecord) -> tuple[Scope, IndexItem] | None:
    """Where and what to index for ``record`` (None when there is nothing to remember)."""
    text = memory_text(record)
    if text is None:
        return None
    scope = Scope(record.tenant_id, record.agent_id, RetrievalType.MEMORIES, record.customer_id)
    payload = {"turn_id": record.turn_id, "session_id": record.session_id}
    return scope, IndexItem.of(record.turn_id, text, payload)
