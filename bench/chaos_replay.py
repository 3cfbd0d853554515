"""The chaos soak's state check (bench/chaos.py): every conversation replayed in-process with
the same turn ids, and the state each streamed turn started from compared with the replay's."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bench.chaos_soak import Conversation
from bench.harness.inprocess import in_process_deps
from schemas.domain.turn_context import TurnContext
from schemas.domain.turn_record import TurnRecord
from schemas.events.turn_response import TurnResponse


def state_view(context: TurnContext) -> dict[str, Any]:
    """What a turn starts from, without timestamps: the part a replay must reproduce."""
    session = context.session
    data = context.customer_data
    return {
        "turn_count": session.turn_count if session else 0,
        "last_turn_id": session.last_turn_id if session else None,
        "messages": [(m.role.value, m.text, m.turn_id) for m in session.recent_messages]
        if session
        else [],
        "scenarios": [s.model_dump(mode="json") for s in session.scenarios] if session else [],
        "rule_fires": {k: (v.fire_count, v.last_fired_turn) for k, v in session.rule_fires.items()}
        if session
        else {},
        "session_variables": {k: v.value for k, v in session.variables.items()} if session else {},
        "customer_data": {k: v.value for k, v in data.variables.items()} if data else {},
    }


def differences(streamed: dict[str, Any], replayed: dict[str, Any]) -> dict[str, Any]:
    return {
        key: {"streamed": streamed[key], "replayed": replayed[key]}
        for key in streamed
        if streamed[key] != replayed[key]
    }


async def replay(
    conversations: list[Conversation],
    records: dict[str, TurnRecord],
    responses: dict[str, TurnResponse] | None = None,
) -> dict[str, Any]:
    """Each conversation again through ``run_turn`` with the same turn ids; compare states.
    ``responses``, when given, receives each replayed turn's TurnResponse (compared with the
    customer's by :func:`bench.chaos_judge.judge_responses`)."""
    from processors.turn.in_process import MemoryState, run_turn
    from schemas.events.turn_requested import TurnRequested

    pack, deps = in_process_deps()
    compared = mismatched_turns = answers_differ = skipped = 0
    mismatched_sessions: list[dict[str, Any]] = []
    for conversation in conversations:
        if not conversation.turn_ids:
            continue
        if any(t not in records for t in conversation.turn_ids):
            skipped += 1  # a lost turn: counted in `lost`, nothing to compare it with
            continue
        state = MemoryState()
        state.add_pack(pack)
        first: dict[str, Any] | None = None
        # the retrieval gaps of the conversation's streamed turns up to this one (the record's
        # session holds this turn's rule fires too): a gap changes a turn legitimately
        gaps: list[str] = []
        for turn_id in conversation.turn_ids:
            streamed = records[turn_id]
            # The soak sends anonymous turns; P1 fills in the session and a minted customer id,
            # which the record's input carries. The replay starts from what was sent.
            sent = streamed.context.input.model_copy(
                update={"customer_id": None, "session_id": None}
            )
            request = TurnRequested(turn_id=turn_id, input=sent, sent_at=datetime.now(UTC))
            response, replayed = await run_turn(request, state, deps)
            if responses is not None:
                responses[turn_id] = response
            compared += 1
            gaps += [
                f"{turn_id}:{g.retrieval_type.value}:{g.reason.value}"
                for g in streamed.context.retrieval_gaps
            ]
            diff = differences(state_view(streamed.context), state_view(replayed.context))
            if streamed.context.response_text != replayed.context.response_text:
                answers_differ += 1
            if diff:
                mismatched_turns += 1
                if first is None:
                    first = {
                        "channel_id": conversation.channel_id,
                        "turn_id": turn_id,
                        "retrieval_gaps_so_far": list(gaps),
                        **diff,
                    }

        if first is not None:
            mismatched_sessions.append(first)
    return {
        "state_mismatches": len(mismatched_sessions),
        "state_compared_sessions": sum(1 for c in conversations if c.turn_ids) - skipped,
        "state_compared_turns": compared,
        "state_mismatched_turns": mismatched_turns,
        "answers_differ": answers_differ,
        "mismatch_examples": mismatched_sessions[:5],
    }
