"""P4 retrieval: hybrid (vector + BM25) search, fusion, rerank and selection per type.

Plain Python: the vector store, the embedder and the reranker come in through ports.
"""

from processors.retrieval.audit import to_selection
from processors.retrieval.bm25 import BM25Index, LexicalHit, LexicalIndexes
from processors.retrieval.fusion import Candidate, FusionMethod, HybridParams, fuse
from processors.retrieval.indexer import Indexer, IndexReport
from processors.retrieval.intent import canonical_intent, merge_intent
from processors.retrieval.lexical import tokenize
from processors.retrieval.model import (
    IndexItem,
    RetrievalOutcome,
    Retrieved,
    Scope,
    StoredDoc,
    VectorHit,
)
from processors.retrieval.ports import Reranker, VectorIndex
from processors.retrieval.query import QueryFeatures, query_text
from processors.retrieval.rerank import EmbeddingReranker
from processors.retrieval.retrieve import retrieve
from processors.retrieval.selection import StrategyParams, select_count
from schemas.domain.retrieval import RetrievalType

__all__ = [
    "BM25Index",
    "Candidate",
    "EmbeddingReranker",
    "FusionMethod",
    "HybridParams",
    "IndexItem",
    "IndexReport",
    "Indexer",
    "LexicalHit",
    "LexicalIndexes",
    "QueryFeatures",
    "Reranker",
    "RetrievalOutcome",
    "RetrievalType",
    "Retrieved",
    "Scope",
    "StoredDoc",
    "StrategyParams",
    "VectorHit",
    "VectorIndex",
    "canonical_intent",
    "fuse",
    "merge_intent",
    "query_text",
    "retrieve",
    "select_count",
    "to_selection",
    "tokenize",
]
