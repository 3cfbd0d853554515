"""The P4 fan-out and fan-in: one request and one result per retrieval type and turn."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from schemas.base import SchemaModel
from schemas.domain.errors import TurnError
from schemas.domain.retrieval import RetrievalSelection, RetrievalType
from schemas.fields import Id, Label, SessionKey, Text, Timestamp, Version

MAX_EMBEDDING_DIMENSIONS = 4096
MAX_LEXICAL_TERMS = 256


class RetrievalRequested(SchemaModel):
    """The P4.1 embedding and lexical features, computed once and sent to each type's
    consumers; ``deadline`` is when the join stops waiting for the result. ``customer_id``
    scopes the memories search to the customer's own memories."""

    turn_id: Id
    session_key: SessionKey
    tenant_id: Id
    agent_id: Id
    customer_id: Id | None = None
    pack_version: Version | None = None
    retrieval_type: RetrievalType
    query_text: Text
    embedding: Annotated[list[float], Field(max_length=MAX_EMBEDDING_DIMENSIONS)]
    lexical_terms: Annotated[list[Label], Field(max_length=MAX_LEXICAL_TERMS)] = Field(
        default_factory=list
    )
    deadline: Timestamp


class RetrievalResult(SchemaModel):
    """One type's selection for the join; a failed retrieval sends an empty selection with
    its ``error`` rather than nothing, so the join need not wait for the deadline."""

    turn_id: Id
    session_key: SessionKey
    selection: RetrievalSelection
    error: TurnError | None = None
    completed_at: Timestamp
