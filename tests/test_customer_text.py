"""Every customer text is processable: whatever a customer types (a pasted hash or URL, control
characters, any script) is answered by a whole turn, never a failed one. Lexical terms longer
than a term may be are clipped as features (``processors.turn.retrieval_stage``)."""

from __future__ import annotations

import asyncio
import string
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors.turn.retrieval_stage import MAX_TERM_CHARS, query_features
from schemas.events.turn_response import ResponseStatus
from schemas.fields import MAX_MESSAGE_CHARS
from tests.test_security_helpers import Turns

HASH = "f" * 300


@pytest.fixture(scope="module")
def turns() -> Iterator[Turns]:
    turns = Turns.create()
    turns.add_pack()
    yield turns
    turns.ports.close()


def test_an_over_long_token_is_clipped_as_a_lexical_feature() -> None:
    features = query_features(f"my order hash is {HASH} thanks", np.zeros(4, dtype=np.float32))
    assert MAX_TERM_CHARS == 256
    assert [len(t) for t in features.tokens if t.startswith("f")] == [MAX_TERM_CHARS]
    assert "order" in features.tokens  # the other terms stay as they were


def test_a_300_character_token_is_answered(turns: Turns) -> None:
    message = f"Where is my order A-10024? The tracking code is {HASH}"
    response, record = asyncio.run(turns.say(message, turn_id="long-token", channel_id="v-long"))
    assert response.status is ResponseStatus.OK and response.error is None
    assert response.text
    assert record.context.errors == []


_WORDS = st.sampled_from(
    ["refund", "order A-10023", "yes", "no", "cancel", "2025-01-01", "tomorrow", "$900", "ok"]
)
_LONG_TOKENS = st.text(string.ascii_letters + string.digits, min_size=250, max_size=3000)
MESSAGES = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=500),
    st.lists(st.one_of(_WORDS, _LONG_TOKENS), min_size=1, max_size=5).map(" ".join),
)
"""Any text (every category but lone surrogates, which no encoding can carry), and
sentences mixing words with tokens around and beyond the term limit."""


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(MESSAGES)
def test_any_message_text_is_answered_by_a_whole_turn(turns: Turns, message: str) -> None:
    assert len(message) <= MAX_MESSAGE_CHARS
    turn = f"fuzz-{abs(hash(message))}"
    response, record = asyncio.run(turns.say(message, turn_id=turn, channel_id="v-fuzz"))
    assert response.error is None, response.error
    assert response.status is ResponseStatus.OK and response.text
    assert record.context.outcome is not None
