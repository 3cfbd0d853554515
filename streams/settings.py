"""Loading the settings: ``TURNSTREAM_*`` environment variables, an optional TOML file
(``TURNSTREAM_CONFIG=path.toml``) and keyword arguments, with one message per bad setting.

The models themselves live in :mod:`schemas.settings`, on the ground floor, so processors and
sinks read them without importing this layer; the names are re-exported here for the streams
layer, its CLI and the tests.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from schemas.settings import (
    CONFIG_FILE_ENV,
    ENV_PREFIX,
    AnalyticsSettings,
    EnforcementPhaseSettings,
    IntentRetrievalSettings,
    OpsSettings,
    OtelSettings,
    PhaseSettings,
    PhasesSettings,
    RetrievalPhaseSettings,
    RetrievalSettings,
    RetrievalTypeSettings,
    RuleRetrievalSettings,
    ScenarioRetrievalSettings,
    SelectionStrategy,
    Settings,
    TaskMode,
    ToolSettings,
    ToolsPhaseSettings,
    WebhookSettings,
)

__all__ = [
    "CONFIG_FILE_ENV",
    "ENV_PREFIX",
    "AnalyticsSettings",
    "EnforcementPhaseSettings",
    "IntentRetrievalSettings",
    "OpsSettings",
    "OtelSettings",
    "PhaseSettings",
    "PhasesSettings",
    "RetrievalPhaseSettings",
    "RetrievalSettings",
    "RetrievalTypeSettings",
    "RuleRetrievalSettings",
    "ScenarioRetrievalSettings",
    "SelectionStrategy",
    "Settings",
    "SettingsError",
    "TaskMode",
    "ToolSettings",
    "ToolsPhaseSettings",
    "WebhookSettings",
    "load_settings",
]


class SettingsError(ValueError):
    """Raised at start when a setting is invalid; the message names each bad setting."""


def _setting_name(loc: tuple[int | str, ...]) -> str:
    path = "__".join(str(part) for part in loc).upper()
    return f"{ENV_PREFIX}{path}"


_SECRET_MARKERS = ("key", "secret", "password", "token")


def _shown_input(loc: tuple[int | str, ...], err: Any) -> str:
    """The offending value, unless the setting holds a secret: secrets never reach logs."""
    if any(marker in str(part).lower() for part in loc for marker in _SECRET_MARKERS):
        return "<hidden>"
    return repr(err.get("input"))


def load_settings(**overrides: Any) -> Settings:
    """Build the settings, turning validation errors into one message per bad setting."""
    toml_path = os.environ.get(CONFIG_FILE_ENV)
    if toml_path and not Path(toml_path).is_file():
        raise SettingsError(f"{CONFIG_FILE_ENV}={toml_path}: file not found")
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = [
            f"{_setting_name(err['loc'])}: {err['msg']} (got {_shown_input(err['loc'], err)})"
            for err in exc.errors()
        ]
        raise SettingsError("invalid settings:\n  " + "\n  ".join(lines)) from None
