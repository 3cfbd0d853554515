"""Types shared by the agent-pack models.

Pack objects are referred to by key from other objects and, for customer fields, from
expressions, so keys are lower-case identifiers: they never need quoting, cannot collide with a
``scenario.step`` reference, and a field key is a valid expression name.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import StringConstraints

from schemas.base import SchemaModel
from schemas.fields import MAX_TEXT_CHARS

Key = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
"""The id of a pack object (rule, intent, scenario, step, tool, template, webhook, field)."""

Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]*$", max_length=64)]
"""A tenant or agent id; also the name of the pack's folders (``packs/<tenant>/<agent>/``)."""

Description = Annotated[str, StringConstraints(max_length=MAX_TEXT_CHARS)]

Prose = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT_CHARS)]
"""Required free text: a rule's condition or action, a template, a definition."""

Phrase = Annotated[str, StringConstraints(min_length=1, max_length=512)]
"""A short text: an example utterance, a synonym, a phrase a response must include or avoid."""

ExpressionText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT_CHARS)]
"""Source of an expression (see ``processors.expressions``); the pack validator parses it."""


class ToolTiming(StrEnum):
    """When a bound tool runs relative to its step or rule: before, while or after it acts."""

    BEFORE = "BEFORE"
    DURING = "DURING"
    AFTER = "AFTER"


class ToolBinding(SchemaModel):
    """Only tools bound to an applied rule or a contributing step may run (P7)."""

    tool_id: Key
    when: ToolTiming = ToolTiming.DURING
