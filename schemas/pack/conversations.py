"""Pack conversation tests: scripted conversations with what each turn must show.

A pack may ship ``tests/*.yaml`` next to its other files; ``turnstream pack test DIR`` plays
them (``packs/FORMAT.md``, section "Conversation tests"). They are not part of the
:class:`~schemas.pack.AgentPack`: a worker never loads them, and changing one does not change
the pack's content hash.

Every expectation is optional, and only the keys written are checked: ``scenario: null`` (no
scenario moved this turn) is a check, a missing ``scenario`` key is none. Lists are compared
as sets (``tools`` as a multiset), so the order an engine records them in does not matter.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import Field, StringConstraints, field_validator, model_validator

from schemas.base import SchemaModel
from schemas.domain.outcome import OutcomeCategory, Resolution
from schemas.domain.plan import ResponseType
from schemas.domain.scenario import ScenarioAction
from schemas.domain.turn_input import Channel
from schemas.fields import Id
from schemas.pack.common import Description, Key, Phrase

ConversationName = Annotated[str, StringConstraints(min_length=1, max_length=200)]
Message = Annotated[str, StringConstraints(min_length=1, max_length=10_000)]
Scalar = str | int | float | bool | None


class EnforcementExpectation(StrEnum):
    """How P10 ended the turn: the first answer kept every hard constraint (PASSED), a
    regenerated one did (REMEDIATED), or the fallback template was sent (FALLBACK)."""

    PASSED = "PASSED"
    REMEDIATED = "REMEDIATED"
    FALLBACK = "FALLBACK"


class TurnExpectation(SchemaModel):
    """What one turn must show; see ``packs/FORMAT.md`` for each key's exact meaning."""

    intent: Key | None = None
    scenario: Key | None = None
    """The scenario that started, continued or completed this turn (None: none did)."""
    action: ScenarioAction | None = None
    """That scenario's action (needs ``scenario``)."""
    step: Key | None = None
    """The step that scenario is on after the turn (needs ``scenario``)."""
    skipped: list[Key] | None = None
    """Steps of that scenario skipped this turn because their data was known."""
    paused: list[Key] | None = None
    cancelled: list[Key] | None = None
    tools: list[Key] | None = None
    """Every tool called this turn, successful or not."""
    failed_tools: list[Key] | None = None
    response_type: ResponseType | None = None
    says: list[Phrase] | None = None
    """Phrases the answer contains (case-insensitive)."""
    never_says: list[Phrase] | None = None
    enforcement: EnforcementExpectation | None = None
    violated: list[Key] | None = None
    """Rules any generation attempt of the turn broke (P10's violations, all attempts)."""
    categories: list[OutcomeCategory] | None = None
    resolution: Resolution | None = None
    data: dict[Key, Scalar] | None = None
    """Customer data after the turn, by field key (None: the field has no value)."""

    @field_validator("data", mode="before")
    @classmethod
    def _scalars_only(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for key, item in value.items():
                if isinstance(item, list | dict):
                    raise ValueError(f"data.{key}: expected a scalar value, not a list or mapping")
        return value

    @model_validator(mode="after")
    def _scenario_keys_need_scenario(self) -> TurnExpectation:
        about_one = [k for k in ("action", "step", "skipped") if k in self.model_fields_set]
        if about_one and self.scenario is None:
            raise ValueError(f"{', '.join(about_one)} describe a scenario: give `scenario` too")
        return self

    def given(self) -> list[str]:
        """The keys the author wrote, in declaration order: the checks to run."""
        return [name for name in type(self).model_fields if name in self.model_fields_set]


class ConversationTurn(SchemaModel):
    """One customer message and what its turn must show."""

    say: Message
    expect: TurnExpectation = Field(default_factory=TurnExpectation)


class Conversation(SchemaModel):
    """One session from its first message. ``customer_id`` is what a logged-in channel
    gateway knows (tools find the customer's records by it); without one, P1 creates a new
    customer."""

    name: ConversationName
    description: Description = ""
    customer_id: Id | None = None
    channel: Channel = Channel.WEBCHAT
    turns: list[ConversationTurn] = Field(min_length=1, max_length=100)


class ConversationFile(SchemaModel):
    """The content of one ``tests/*.yaml`` file."""

    conversations: list[Conversation] = Field(min_length=1)
