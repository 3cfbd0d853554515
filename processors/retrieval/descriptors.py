"""One descriptor per retrieval type: where its objects come from, whose they are, and which
settings select them. Every place that treats the types differently asks the descriptor, so
a fifth type, or a type changing sides, is one line here.

- ``pack_backed``: indexed from the agent pack (``pack_items.sync_pack``) and small enough for
  the worker's in-memory snapshot (``snapshot_index``); memories come from ingestion instead.
- ``customer_scoped``: one index per customer (memories). Its scope needs the turn's
  customer id; the agent-wide types refuse one (a customer id there would split the index),
  and the vector store buckets a customer-scoped type's collections by customer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from schemas.domain.retrieval import RetrievalType
from schemas.settings import RetrievalSettings, RetrievalTypeSettings


@dataclass(frozen=True)
class RetrievalTypeDescriptor:
    rtype: RetrievalType
    pack_backed: bool
    customer_scoped: bool

    def settings(self, retrieval: RetrievalSettings) -> RetrievalTypeSettings:
        """This type's selection settings (``retrieval.<type>``)."""
        chosen: RetrievalTypeSettings = getattr(retrieval, self.rtype.value)
        return chosen


DESCRIPTORS: Mapping[RetrievalType, RetrievalTypeDescriptor] = MappingProxyType(
    {
        RetrievalType.RULES: RetrievalTypeDescriptor(
            RetrievalType.RULES, pack_backed=True, customer_scoped=False
        ),
        RetrievalType.SCENARIOS: RetrievalTypeDescriptor(
            RetrievalType.SCENARIOS, pack_backed=True, customer_scoped=False
        ),
        RetrievalType.MEMORIES: RetrievalTypeDescriptor(
            RetrievalType.MEMORIES, pack_backed=False, customer_scoped=True
        ),
        RetrievalType.INTENTS: RetrievalTypeDescriptor(
            RetrievalType.INTENTS, pack_backed=True, customer_scoped=False
        ),
    }
)

PACK_BACKED: tuple[RetrievalType, ...] = tuple(
    r for r in RetrievalType if DESCRIPTORS[r].pack_backed
)
"""The types indexed from the pack, in the enum's order."""


def descriptor(rtype: RetrievalType) -> RetrievalTypeDescriptor:
    return DESCRIPTORS[rtype]
