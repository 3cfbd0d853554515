"""The agent's identity and its per-phase overrides of the process settings."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, SerializationInfo, field_serializer

from schemas.base import SchemaModel
from schemas.domain.snapshot import LanguageTag
from schemas.fields import Label
from schemas.pack.common import Description, Slug
from schemas.pack.dialogue import DialogueOptions
from schemas.settings import PhasesSettings, RetrievalSettings, Settings


class AgentSettings(SchemaModel):
    """``agent.yaml``. ``phases`` and ``retrieval`` hold only what the pack overrides, keyed
    as in :class:`streams.settings.Settings` (``phases.<phase>.<knob>``,
    ``retrieval.<type>.<knob>``) and validated by the same classes. ``dialogue`` is the pack's
    own: how P6 reads answers, starts and cancels scenarios (:class:`DialogueOptions`)."""

    tenant_id: Slug
    agent_id: Slug
    name: Label
    description: Description = ""
    default_language: LanguageTag = "en"
    dialogue: DialogueOptions = DialogueOptions()
    phases: PhasesSettings = PhasesSettings()
    retrieval: RetrievalSettings = RetrievalSettings()

    @field_serializer("phases", "retrieval")
    def _only_overrides(self, value: BaseModel, info: SerializationInfo) -> dict[str, Any]:
        """Dump what the pack set, not the defaults: a round trip through JSON must not turn
        every default into an override of the process settings."""
        return value.model_dump(mode=info.mode, exclude_unset=True)

    def apply_to(self, settings: Settings) -> Settings:
        """``settings`` with this agent's overrides laid over its phases and retrieval."""
        update = {
            name: type(base).model_validate(
                _merge(base.model_dump(), getattr(self, name).model_dump(exclude_unset=True))
            )
            for name, base in (("phases", settings.phases), ("retrieval", settings.retrieval))
        }
        return settings.model_copy(update=update)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        nested = merged.get(key)
        merged[key] = (
            _merge(nested, value) if isinstance(nested, dict) and isinstance(value, dict) else value
        )
    return merged
