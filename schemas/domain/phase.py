"""The phases of a turn, as named in the settings (``TURNSTREAM_PHASES__<name>``)."""

from __future__ import annotations

from enum import StrEnum


class Phase(StrEnum):
    """P1..P11; values match the phase keys of the settings so one name serves both."""

    IDENTIFICATION = "identification"
    SENSOR = "sensor"
    CUSTOMER_DATA = "customer_data"
    RETRIEVAL = "retrieval"
    RULE_SELECTION = "rule_selection"
    SCENARIOS = "scenarios"
    TOOLS = "tools"
    PLANNING = "planning"
    GENERATION = "generation"
    ENFORCEMENT = "enforcement"
    PERSISTENCE = "persistence"
