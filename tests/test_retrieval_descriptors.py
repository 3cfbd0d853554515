"""One descriptor per retrieval type decides what is pack-backed and what is customer-scoped;
indexing, scopes and the settings all follow it."""

from __future__ import annotations

from pathlib import Path

import pytest

from processors.retrieval.descriptors import DESCRIPTORS, PACK_BACKED, descriptor
from processors.retrieval.model import Scope
from processors.retrieval.pack_items import index_items
from schemas.domain.retrieval import RetrievalType
from sinks.pack_files import load_pack
from streams.settings import RetrievalSettings

PACK = load_pack(Path(__file__).resolve().parents[1] / "packs" / "acme-shop" / "support")


def test_every_retrieval_type_has_one_descriptor() -> None:
    assert list(DESCRIPTORS) == list(RetrievalType)
    assert all(d.rtype is rtype for rtype, d in DESCRIPTORS.items())


def test_the_pack_indexes_exactly_the_pack_backed_types() -> None:
    assert set(index_items(PACK)) == set(PACK_BACKED)
    assert RetrievalType.MEMORIES not in PACK_BACKED


@pytest.mark.parametrize("rtype", list(RetrievalType))
def test_a_scope_needs_a_customer_exactly_for_a_customer_scoped_type(
    rtype: RetrievalType,
) -> None:
    if descriptor(rtype).customer_scoped:
        Scope("t", "a", rtype, "c1")
        with pytest.raises(ValueError, match="needs a customer_id"):
            Scope("t", "a", rtype)
    else:
        Scope("t", "a", rtype)
        with pytest.raises(ValueError, match="agent-wide"):
            Scope("t", "a", rtype, "c1")


def test_a_descriptor_reads_its_own_types_settings() -> None:
    settings = RetrievalSettings()
    assert descriptor(RetrievalType.RULES).settings(settings) is settings.rules
    assert descriptor(RetrievalType.INTENTS).settings(settings) is settings.intents
    assert descriptor(RetrievalType.MEMORIES).settings(settings) is settings.memories
