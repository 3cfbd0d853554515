"""Stage 2 of a turn: P4. The P4.1 query is built once, each type is retrieved on its own
(in its own consumer in the stream topology), and the results are joined on the turn.

The join is the only place that sees all four types: a type that failed, or whose result
is missing at the deadline, becomes a :class:`RetrievalGap` and the turn goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from types import MappingProxyType

import numpy as np

from processors.embedding import QueryEmbedder, Vector
from processors.retrieval import retrieve, to_selection
from processors.retrieval.descriptors import descriptor
from processors.retrieval.intent import canonical_intent
from processors.retrieval.lexical import tokenize
from processors.retrieval.model import Retrieved, Scope
from processors.retrieval.query import QueryFeatures
from processors.turn.deps import TurnDeps
from processors.turn.timing import timed
from processors.turn.understand import Understanding
from schemas.domain.errors import TurnError
from schemas.domain.phase import Phase
from schemas.domain.retrieval import (
    GapReason,
    RetrievalGap,
    RetrievalSelection,
    RetrievalType,
    SelectionStrategy,
)
from schemas.domain.turn_context import TurnContext
from schemas.events.retrieval import MAX_LEXICAL_TERMS, RetrievalRequested, RetrievalResult
from schemas.fields import MAX_LABEL_CHARS
from schemas.pack.agent_pack import AgentPack

TIMEOUT_CODE = "retrieval.timeout"
FAILED_CODE = "retrieval.failed"
MAX_TERM_CHARS = MAX_LABEL_CHARS
"""The longest lexical term a ``RetrievalRequested`` carries."""
_EMPTY: Mapping[str, object] = MappingProxyType({})
log = logging.getLogger(__name__)


async def request_retrieval(
    turn_id: str,
    session_key: str,
    understood: Understanding,
    embedder: QueryEmbedder,
    deps: TurnDeps,
) -> tuple[TurnContext, list[RetrievalRequested]]:
    """P4.1, the one stage function both the session agent and the in-process turn call:
    embed the query (timed as ``retrieval.embedding`` on the returned context), read its
    lexical terms, and fan out one request per type, due after the pack's
    ``phases.retrieval.timeout_s``."""
    context = understood.context
    timings = dict(context.timings_ms)
    with timed(timings, "retrieval.embedding", deps.timer):
        vector = (await embedder.embed([understood.query]))[0]
    context = context.model_copy(update={"timings_ms": timings})
    features = query_features(understood.query, vector)
    deadline_s = deps.settings_for(understood.pack).phases.retrieval.timeout_s
    return context, retrieval_requests(turn_id, session_key, context, features, deps, deadline_s)


def query_features(query: str, vector: Vector) -> QueryFeatures:
    """P4.1's output from the query text and its embedding (computed by the caller, which
    may batch embeddings across turns). Every customer text is processable: a token longer
    than a lexical term may be (a pasted hash or URL path) is clipped to
    :data:`MAX_TERM_CHARS`, here, so the in-process and the streamed turn see the same terms."""
    tokens = tuple(token[:MAX_TERM_CHARS] for token in tokenize(query))
    return QueryFeatures(text=query, vector=vector, tokens=tokens)


def retrieval_requests(
    turn_id: str,
    session_key: str,
    context: TurnContext,
    features: QueryFeatures,
    deps: TurnDeps,
    deadline_s: float,
) -> list[RetrievalRequested]:
    """P4.1 fan-out: one request per retrieval type, all with the same embedding and
    lexical terms."""
    given = context.input
    deadline = deps.clock() + timedelta(seconds=deadline_s)
    embedding = np.asarray(features.vector).tolist()  # the floats float(x) gives, in C
    return [
        RetrievalRequested(
            turn_id=turn_id,
            session_key=session_key,
            tenant_id=given.tenant_id,
            agent_id=given.agent_id,
            customer_id=given.customer_id,
            pack_version=context.pack_version,
            retrieval_type=rtype,
            query_text=features.text,
            embedding=embedding,
            lexical_terms=list(features.tokens[:MAX_LEXICAL_TERMS]),
            deadline=deadline,
        )
        for rtype in RetrievalType
    ]


def _vector(values: Sequence[float]) -> Vector:
    return np.asarray(values, dtype=np.float32)


def retrieve_one(request: RetrievalRequested, pack: AgentPack, deps: TurnDeps) -> RetrievalResult:
    """P4.2-P4.5 for one type: hybrid search, optional rerank and selection. Never raises: a
    failure is a result with an error, so the join need not wait for the deadline."""
    kind = descriptor(request.retrieval_type)
    settings = kind.settings(deps.settings_for(pack).retrieval)
    customer = request.customer_id if kind.customer_scoped else None
    try:
        scope = Scope(request.tenant_id, request.agent_id, kind.rtype, customer)
    except ValueError as exc:
        return failed_result(request, str(exc), deps.clock())
    features = QueryFeatures(
        text=request.query_text,
        vector=_vector(request.embedding),
        tokens=tuple(request.lexical_terms),
    )
    try:
        outcome = retrieve(
            scope, features, deps.vectors, deps.lexicon, settings, reranker=deps.reranker
        )
    except Exception as exc:  # a failed type is a gap in the join, not a dead turn
        log.warning("retrieval of %s failed", kind.rtype.value, exc_info=True)
        return failed_result(request, f"{type(exc).__name__}: {exc}", deps.clock())
    return RetrievalResult(
        turn_id=request.turn_id,
        session_key=request.session_key,
        selection=to_selection(outcome, settings.strategy),
        completed_at=deps.clock(),
    )


def _empty_result(
    turn_id: str, session_key: str, rtype: RetrievalType, error: TurnError, now: datetime
) -> RetrievalResult:
    return RetrievalResult(
        turn_id=turn_id,
        session_key=session_key,
        selection=RetrievalSelection(
            retrieval_type=rtype, strategy=SelectionStrategy.FIXED_K, latency_ms=0.0
        ),
        error=error,
        completed_at=now,
    )


def failed_result(request: RetrievalRequested, detail: str, now: datetime) -> RetrievalResult:
    """The result of a type that could not be retrieved, with why."""
    error = TurnError(phase=Phase.RETRIEVAL, code=FAILED_CODE, message=detail[:1000])
    return _empty_result(request.turn_id, request.session_key, request.retrieval_type, error, now)


def timeout_result(
    turn_id: str, session_key: str, rtype: RetrievalType, now: datetime
) -> RetrievalResult:
    """The result the join records for a type that missed its deadline."""
    error = TurnError(phase=Phase.RETRIEVAL, code=TIMEOUT_CODE, message="missed the join deadline")
    return _empty_result(turn_id, session_key, rtype, error, now)


def selected(selection: RetrievalSelection) -> list[Retrieved]:
    """The selected candidates of a type as the phases take them, best first."""
    by_id = {c.item_id: c for c in selection.candidates}
    found: list[Retrieved] = []
    for item_id in selection.selected_ids:
        c = by_id[item_id]
        found.append(
            Retrieved(
                object_id=c.item_id,
                score=c.rerank_score if c.rerank_score is not None else c.fused_score,
                vector_score=c.vector_score or 0.0,
                lexical_score=c.lexical_score or 0.0,
                text="",
                payload=_EMPTY,
                rerank_score=c.rerank_score,
            )
        )
    return found


def join(
    context: TurnContext,
    results: Sequence[RetrievalResult],
    pack: AgentPack,
    deadline: datetime | None = None,
) -> TurnContext:
    """Record every type's selection (or its gap) on the context and settle the canonical
    intent: the sensor's guess merged with the retrieved intents. The first result of a type
    counts; a type without a result, or whose result completed after ``deadline``, is
    recorded as timed out and its result is not used."""
    by_type: dict[RetrievalType, RetrievalResult] = {}
    for arrived in results:
        if deadline is None or arrived.completed_at <= deadline:
            by_type.setdefault(arrived.selection.retrieval_type, arrived)
    selections: list[RetrievalSelection] = []
    gaps: list[RetrievalGap] = []
    timings = dict(context.timings_ms)
    for rtype in RetrievalType:
        result = by_type.get(rtype)
        if result is None or (result.error is not None and result.error.code == TIMEOUT_CODE):
            gaps.append(RetrievalGap(retrieval_type=rtype, reason=GapReason.TIMEOUT))
            continue
        if result.error is not None:
            gaps.append(
                RetrievalGap(
                    retrieval_type=rtype, reason=GapReason.FAILED, detail=result.error.message
                )
            )
            continue
        selections.append(result.selection)
        timings[f"retrieval.{rtype.value}"] = round(result.selection.latency_ms, 3)
    intents = next((s for s in selections if s.retrieval_type is RetrievalType.INTENTS), None)
    label, _, _ = canonical_intent(
        context.input.message, pack, selected(intents) if intents else []
    )
    return context.model_copy(
        update={
            "retrievals": selections,
            "retrieval_gaps": gaps,
            "canonical_intent": label,
            "timings_ms": timings,
        }
    )
