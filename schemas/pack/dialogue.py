"""How the agent reads a turn inside a running scenario (P6), per pack: ``agent.yaml``'s
``dialogue:`` section."""

from __future__ import annotations

from pydantic import Field, model_validator

from schemas.base import SchemaModel
from schemas.pack.common import Key, Phrase

DEFAULT_CANCEL_INTENTS = ("cancel", "cancel_scenario", "nevermind", "stop")
"""Intent ids that cancel the running scenarios unless the pack starts a scenario with them."""


class DialogueOptions(SchemaModel):
    """Thresholds are on the scenario evidence score of P6 (``processors.phases.dialogue``):
    the noisy-OR of a scenario's retrieval score and the fused confidence of the canonical
    intent when the scenario lists it, plus ``fill_weight`` per distinctive field of the
    scenario the message gave (at most two).

    ``start_threshold``: the evidence a scenario needs to start when nothing waits for an
    answer; ``intent_floor``: a scenario that lists the canonical intent also starts when
    that intent's confidence reaches it (then, without a waiting step). ``switch_margin``:
    while a step waits for an answer and the message answers it, another scenario starts
    only with evidence of at least ``start_threshold + switch_margin``.
    ``cancel_intents``: intents that cancel every open scenario; an id that a scenario lists in
    ``entry_intents`` starts that scenario instead (a pack's own ``cancel`` flow).
    ``affirm`` / ``deny``: words or phrases added to the built-in yes/no lexicon (en, es, fr,
    de, pt, it, nl) for the customer's answer to a confirmation. ``resume_template_id``: a
    RESPONSE template said after the farewell when a goodbye pauses a flow that waited for
    an answer ("we can pick up where we left off"); without one the farewell is said alone."""

    start_threshold: float = Field(default=0.5, ge=0.0, le=2.0)
    intent_floor: float = Field(default=0.15, ge=0.0, le=1.0)
    switch_margin: float = Field(default=0.15, ge=0.0, le=2.0)
    fill_weight: float = Field(default=0.1, ge=0.0, le=1.0)
    cancel_intents: list[Key] = Field(default_factory=lambda: list(DEFAULT_CANCEL_INTENTS))
    affirm: list[Phrase] = Field(default_factory=list)
    deny: list[Phrase] = Field(default_factory=list)
    resume_template_id: Key | None = None

    @model_validator(mode="after")
    def _no_word_both_ways(self) -> DialogueOptions:
        both = {p.lower() for p in self.affirm} & {p.lower() for p in self.deny}
        if both:
            raise ValueError(f"affirm and deny share {sorted(both)}")
        return self
