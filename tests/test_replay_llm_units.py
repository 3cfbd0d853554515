"""LLM calls kept in the record (``processors/llm_calls.py``) and answered again in a
replay (``processors/replay/llm.py``), with a scripted port in place of a model."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from typing import Any

import pytest

from processors.llm import LlmError, LlmResult
from processors.llm_calls import RecordingLlm, with_calls
from processors.replay.diff import ChangeKind, compare
from processors.replay.llm import NOT_RECORDED, RecordedLlm
from processors.replay.recording import RecordedTurn
from schemas.domain.llm_call import MAX_LLM_CALLS
from schemas.domain.phase import Phase
from schemas.domain.usage import TokenUsage
from schemas.events.turn_requested import TurnRequested
from schemas.samples import turn_record
from schemas.settings import PhaseSettings
from streams.replay_source import mask_turn

SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}}
SETTINGS = PhaseSettings(model="small-model")


class _Scripted:
    """Answers each call with the next scripted reply (a dict, or an LlmError to raise)."""

    def __init__(self, *replies: dict[str, Any] | LlmError) -> None:
        self.replies = list(replies)
        self.asked: list[str] = []

    async def complete_json(
        self,
        *,
        phase: Phase,
        system: str,
        user: str,
        schema_name: str,
        schema: Mapping[str, Any],
        settings: PhaseSettings | None = None,
    ) -> LlmResult:
        self.asked.append(user)
        reply = self.replies.pop(0)
        if isinstance(reply, LlmError):
            raise reply
        usage = TokenUsage(phase=phase, model="served", prompt_tokens=9, completion_tokens=4)
        return LlmResult(data=reply, usage=[usage], attempts=2)


async def _ask(llm: Any, user: str = "hello", settings: PhaseSettings = SETTINGS) -> LlmResult:
    result: LlmResult = await llm.complete_json(
        phase=Phase.GENERATION,
        system="sys",
        user=user,
        schema_name="answer",
        schema=SCHEMA,
        settings=settings,
    )
    return result


async def _recording(*replies: dict[str, Any] | LlmError, users: list[str]) -> RecordingLlm:
    port = RecordingLlm(_Scripted(*replies))
    for user in users:
        with contextlib.suppress(LlmError):  # a failure is recorded too
            await _ask(port, user)
    return port


async def test_the_recording_port_keeps_each_answer_and_failure_under_what_was_asked() -> None:
    timeout = LlmError("generation: APITimeoutError after 1 attempts")
    port = await _recording({"answer": "Hi"}, timeout, {"answer": "Hi"}, users=["a", "b", "a"])

    first, failed, again = port.calls
    assert (first.phase, first.task, first.model) == (Phase.GENERATION, "answer", "small-model")
    assert json.loads(first.output or "") == {"answer": "Hi"} and first.error is None
    assert first.attempts == 2 and first.usage[0].completion_tokens == 4
    assert failed.output is None and failed.error == str(timeout)
    assert again.key == first.key != failed.key  # the key is what was asked


async def test_another_model_or_prompt_is_another_call() -> None:
    port = RecordingLlm(_Scripted({"answer": "x"}, {"answer": "x"}, {"answer": "x"}))
    await _ask(port, "hello")
    await _ask(port, "hello!")
    await _ask(port, "hello", PhaseSettings(model="bigger-model"))
    assert len({c.key for c in port.calls}) == 3


async def test_a_turn_keeps_at_most_the_bound_of_calls() -> None:
    port = await _recording(*[{"answer": "x"}] * 3, users=["a", "b", "c"])
    before = port.calls[:1] * (MAX_LLM_CALLS - 1)
    assert len(with_calls(before, port)) == MAX_LLM_CALLS


async def test_a_replay_answers_recorded_calls_without_the_model() -> None:
    timeout = LlmError("generation: APITimeoutError after 1 attempts")
    port = await _recording({"answer": "Hi"}, timeout, users=["a", "b"])
    replayed = RecordedLlm.of(port.calls)
    replayed.for_turn(port.calls)

    result = await _ask(replayed, "a")
    assert (result.data, result.attempts) == ({"answer": "Hi"}, 2)
    assert result.usage == port.calls[0].usage
    with pytest.raises(LlmError, match="APITimeoutError"):
        await _ask(replayed, "b")
    assert replayed.missing == [] and replayed.asked == {c.key for c in port.calls}


async def test_a_call_the_recording_lacks_falls_back_and_is_listed() -> None:
    port = await _recording({"answer": "Hi"}, users=["a"])
    replayed = RecordedLlm.of(port.calls)
    replayed.for_turn([])
    with pytest.raises(LlmError, match=NOT_RECORDED):
        await _ask(replayed, "a changed prompt")
    (missing,) = replayed.missing
    assert (missing.phase, missing.task) == (Phase.GENERATION, "answer")
    # found among the whole recording's calls when the turn itself did not record it
    assert (await _ask(replayed, "a")).data == {"answer": "Hi"}


async def test_the_same_call_twice_in_a_turn_gets_the_recorded_answers_in_order() -> None:
    port = await _recording({"answer": "one"}, {"answer": "two"}, users=["a", "a"])
    replayed = RecordedLlm.of(port.calls)
    replayed.for_turn(port.calls)
    answers = [(await _ask(replayed, "a")).data["answer"] for _ in range(3)]
    assert answers == ["one", "two", "two"]


async def test_unrecorded_calls_and_other_answers_are_their_own_kinds_of_change() -> None:
    asked = await _recording({"answer": "Hi"}, users=["a"])
    live = await _recording({"answer": "Hello"}, users=["a"])
    before = turn_record().context.model_copy(update={"llm_calls": asked.calls})
    same = compare(before, before, (), ["generation/answer (0123456789ab)"])
    assert [c.kind for c in same] == [ChangeKind.UNRECORDED_LLM_CALL]
    after = before.model_copy(update={"llm_calls": live.calls})
    (change,) = compare(before, after)
    assert change.kind is ChangeKind.LLM_OUTPUT
    assert "Hi" in change.before and "Hello" in change.after


async def test_the_export_masks_the_strings_of_recorded_llm_outputs() -> None:
    port = await _recording({"answer": "Mail sent to jane.doe@example.com", "n": 3}, users=["a"])
    record = turn_record()
    context = record.context.model_copy(update={"llm_calls": port.calls})
    request = TurnRequested(
        turn_id=record.turn_id, input=context.input, sent_at=context.received_at
    )
    turn = RecordedTurn(request, record.model_copy(update={"context": context}))
    (call,) = mask_turn(turn, None).record.context.llm_calls
    output = json.loads(call.output or "")
    assert "jane.doe@example.com" not in output["answer"] and output["n"] == 3
    assert call.key == port.calls[0].key
