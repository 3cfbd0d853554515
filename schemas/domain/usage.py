"""LLM token usage, per phase and model, for cost analytics."""

from __future__ import annotations

from schemas.base import SchemaModel
from schemas.domain.phase import Phase
from schemas.fields import Count, Label


class TokenUsage(SchemaModel):
    phase: Phase
    model: Label
    prompt_tokens: Count
    completion_tokens: Count
