"""Stage 1 of a turn: P1 identification, P2 sensor, P3 customer data, and the P4.1 query.

These run back to back in the session's own partition because each needs the previous
one's output and all of them read the session's state (pipeline-execution-model 6.3).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from processors.llm_calls import recording, with_calls
from processors.phases.customer_data import update_customer_data
from processors.phases.identification import IdentificationPorts, identify
from processors.phases.scenarios import expected_fields
from processors.phases.sensor import mask_customer_data
from processors.phases.sensor_llm import run_sensor
from processors.retrieval.query import query_text
from processors.retrieval.query_wording import pack_vocabulary, reword
from processors.turn.deps import TurnDeps
from processors.turn.session_vars import with_gateway_identity, with_session_variables
from processors.turn.timing import timed
from schemas.domain.errors import TurnError
from schemas.domain.phase import Phase
from schemas.domain.turn_context import TurnContext
from schemas.events.turn_requested import TurnRequested
from schemas.fields import MAX_MESSAGE_CHARS
from schemas.pack.agent_pack import AgentPack

LAST_MESSAGES = 10
"""How many earlier messages of the session the sensor sees (the K of DESIGN.md P2)."""


class UnknownAgentError(LookupError):
    """No pack is loaded for the turn's tenant and agent: the turn gets an error response."""


@dataclass(frozen=True)
class Understanding:
    """The context after P3, the pack version it runs with, and the P4.1 query text."""

    context: TurnContext
    pack: AgentPack
    query: str


def coalesce(
    first: TurnRequested, later: Sequence[TurnRequested], received_at: datetime
) -> TurnContext:
    """One turn for messages a customer sent while the previous turn was running: the first
    request's id and input, the messages joined line by line, the others' ids recorded.
    ``received_at`` is the worker's clock when the turn starts (not the producer's)."""
    message = "\n".join([first.input.message, *(r.input.message for r in later)])
    if len(message) > MAX_MESSAGE_CHARS:
        raise ValueError("coalesced messages exceed the message limit")
    return TurnContext(
        input=first.input.model_copy(update={"message": message}),
        received_at=received_at,
        coalesced_turn_ids=[r.turn_id for r in later],
    )


async def understand(
    turn_id: str, context: TurnContext, ports: IdentificationPorts, deps: TurnDeps
) -> Understanding:
    """P1-P3 and the query text; raises :class:`UnknownAgentError` from the pack port.

    The P4.1 query is the customer's message alone, its typos and foreign words mended
    (``processors.retrieval.query_wording``): adding the sensor's situation facts was
    measured to lower rule recall (0.875 -> 0.843 in the top 5) and intent accuracy on the
    labelled retrieval set (bench/retrieval.py)."""
    now = deps.clock()
    timings = dict(context.timings_ms)
    errors = list(context.errors)
    given = context.input  # before P1: the gateway's customer id, not one P1 minted
    with timed(timings, Phase.IDENTIFICATION, deps.timer):
        found = identify(context.input, ports, now)
        context = found.into(context)
        session = found.session
        pack = found.pack
        store = with_gateway_identity(
            with_session_variables(found.customer_data, session), given, pack, now
        )
    llm = recording(deps.llm_for(Phase.SENSOR))
    with timed(timings, Phase.SENSOR, deps.timer):
        sensed = await run_sensor(
            context.input.message,
            mask_customer_data(pack.fields, store),
            pack.glossary,
            session.recent_messages[-LAST_MESSAGES:],
            pack.intents,
            expected_fields=expected_fields(session, pack),
            default_language=pack.agent.default_language,
            mode=deps.settings_for(pack).phases.sensor.mode,
            llm=llm,
            settings=deps.settings_for(pack).phases.sensor,
        )
        snapshot = sensed.snapshot
    if sensed.llm_error is not None:
        errors.append(TurnError(phase=Phase.SENSOR, code="llm.fallback", message=sensed.llm_error))
    with timed(timings, Phase.CUSTOMER_DATA, deps.timer):
        update = update_customer_data(store, pack.fields, snapshot, now, turn_id=turn_id)
    errors += [
        TurnError(
            phase=Phase.CUSTOMER_DATA,
            code=f"customer_data.{rejection.code}",
            message=f"{rejection.key}: {rejection.detail}",
        )
        for rejection in update.rejections
    ]
    context = context.model_copy(
        update={
            "session": session,
            "customer_data": update.store,
            "snapshot": snapshot,
            "token_usage": [*context.token_usage, *sensed.usage],
            "llm_calls": with_calls(context.llm_calls, llm),
            "timings_ms": timings,
            "errors": errors,
        }
    )
    query = query_text(reword(context.input.message, pack_vocabulary(pack)).text)
    return Understanding(context, pack, query)
