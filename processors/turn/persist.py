"""Stage 5 of a turn: the response, and what P11 persists (session, customer data, record).

Pure functions of the finished context, so a replayed turn persists exactly the same values
(the stream topology also checks the turn id before writing, see ``streams``).
"""

from __future__ import annotations

from datetime import datetime

from processors.turn.session_vars import split_variables
from schemas.domain.customer_data import CustomerDataStore
from schemas.domain.errors import TurnError
from schemas.domain.session import MAX_RECENT_MESSAGES, MessageRole, SessionMessage, SessionState
from schemas.domain.turn_context import TurnContext
from schemas.domain.turn_input import TurnInput
from schemas.domain.turn_record import TurnRecord
from schemas.events.turn_response import ResponseStatus, TurnResponse
from schemas.pack.agent_pack import AgentPack


def turn_response(turn_id: str, context: TurnContext, now: datetime) -> TurnResponse:
    """The OK response of a finished turn."""
    if context.response_text is None:
        raise ValueError("a response needs the answer text")
    given = context.input
    return TurnResponse(
        turn_id=turn_id,
        session_id=given.session_id,
        tenant_id=given.tenant_id,
        agent_id=given.agent_id,
        channel=given.channel,
        channel_id=given.channel_id,
        status=ResponseStatus.OK,
        text=context.response_text,
        outcome=context.outcome,
        timings_ms=context.timings_ms,
        responded_at=now,
        coalesced_turn_ids=context.coalesced_turn_ids,
    )


def error_response(turn_id: str, given: TurnInput, error: TurnError, now: datetime) -> TurnResponse:
    """The ERROR response for a turn that could not be processed (unknown agent, ...)."""
    return TurnResponse(
        turn_id=turn_id,
        session_id=given.session_id,
        tenant_id=given.tenant_id,
        agent_id=given.agent_id,
        channel=given.channel,
        channel_id=given.channel_id,
        status=ResponseStatus.ERROR,
        error=error,
        responded_at=now,
    )


def next_session(
    turn_id: str, context: TurnContext, pack: AgentPack, now: datetime
) -> SessionState:
    """The session after this turn: one more turn, the two new messages, this turn's rule
    fires and scenario state, and the SESSION-scope variables."""
    session = context.session
    if session is None or context.customer_data is None or context.response_text is None:
        raise ValueError("persistence needs a finished context")
    _, scoped = split_variables(context.customer_data, pack.fields)
    received = context.received_at
    messages = [
        *session.recent_messages,
        SessionMessage(
            role=MessageRole.CUSTOMER, text=context.input.message, turn_id=turn_id, at=received
        ),
        SessionMessage(role=MessageRole.AGENT, text=context.response_text, turn_id=turn_id, at=now),
    ][-MAX_RECENT_MESSAGES:]
    return session.model_copy(
        update={
            "turn_count": session.turn_count + 1,
            "recent_messages": messages,
            "last_turn_id": turn_id,
            "pack_version": context.pack_version,
            "updated_at": now,
            "variables": scoped,
        }
    )


def persistent_customer_data(
    context: TurnContext, pack: AgentPack, now: datetime
) -> CustomerDataStore:
    """The customer's store without the SESSION-scope values (persist flags honoured)."""
    store = context.customer_data
    if store is None:
        raise ValueError("persistence needs a finished context")
    persistent, _ = split_variables(store, pack.fields)
    return store.model_copy(update={"variables": persistent, "updated_at": now})


def turn_record(turn_id: str, context: TurnContext, now: datetime) -> TurnRecord:
    """The audit record: the whole context as the last phase left it."""
    given = context.input
    if given.customer_id is None or given.session_id is None:
        raise ValueError("a turn record needs the customer and session P1 resolved")
    return TurnRecord(
        turn_id=turn_id,
        tenant_id=given.tenant_id,
        agent_id=given.agent_id,
        customer_id=given.customer_id,
        session_id=given.session_id,
        completed_at=now,
        context=context,
    )
