"""The agent pack: the configuration domain models an agent builder writes as YAML.

The YAML layout and every field are documented in ``packs/FORMAT.md``; loading and the checks
across sections live in :mod:`processors.pack`.
"""

from schemas.pack.agent import AgentSettings
from schemas.pack.agent_pack import SECTION_KEYS, AgentPack
from schemas.pack.common import ToolBinding, ToolTiming
from schemas.pack.dialogue import DialogueOptions
from schemas.pack.fields import CustomerDataField, ExtractionHints
from schemas.pack.language import GlossaryTerm, Intent
from schemas.pack.rules import Relationship, Rule, RuleScope
from schemas.pack.scenarios import Scenario, Step, StepKind, Transition
from schemas.pack.templates import Template, TemplateKind
from schemas.pack.tools import HttpImplementation, HttpMethod, SideEffect, Tool, ToolImplementation
from schemas.pack.webhooks import WebhookSubscription

__all__ = [
    "SECTION_KEYS",
    "AgentPack",
    "AgentSettings",
    "CustomerDataField",
    "DialogueOptions",
    "ExtractionHints",
    "GlossaryTerm",
    "HttpImplementation",
    "HttpMethod",
    "Intent",
    "Relationship",
    "Rule",
    "RuleScope",
    "Scenario",
    "SideEffect",
    "Step",
    "StepKind",
    "Template",
    "TemplateKind",
    "Tool",
    "ToolBinding",
    "ToolImplementation",
    "ToolTiming",
    "Transition",
    "WebhookSubscription",
]
