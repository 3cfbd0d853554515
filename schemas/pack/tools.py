"""Tools the agent may call (P7), and how they are implemented.

A Python tool is called as ``function(arguments, *, config, pack_dir) -> dict``: ``arguments``
follows ``input_schema``; ``config`` is the tool's static ``config`` mapping; ``pack_dir`` is the
pack's folder, against which relative data paths in ``config`` resolve. Input properties named
like customer fields are filled from customer data; output properties named like customer
fields are written back to it (source TOOL).
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, Field, JsonValue, model_validator
from pydantic_core import PydanticCustomError

from schemas.base import SchemaModel
from schemas.events.webhook import WebhookUrl
from schemas.pack.common import Key, Prose

_IMPORT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")
_JSON_TYPES = {"string", "number", "integer", "boolean", "object", "array", "null"}


def _import_path(value: str) -> str:
    if not _IMPORT_PATH.match(value):
        raise PydanticCustomError(
            "bad_import_path",
            "python implementation '{value}' must look like 'package.module:function'",
            {"value": value},
        )
    return value


def _object_schema(schema: dict[str, JsonValue]) -> dict[str, JsonValue]:
    """A tool's input and output are JSON objects: check the shape P7 relies on."""
    properties = schema.get("properties", {})
    problem = None
    if schema.get("type") != "object":
        problem = "must have type: object"
    elif not isinstance(properties, dict):
        problem = "properties must be a mapping"
    else:
        for name, prop in properties.items():
            if not isinstance(prop, dict) or prop.get("type") not in _JSON_TYPES:
                problem = f"property {name!r} needs a JSON type ({', '.join(sorted(_JSON_TYPES))})"
                break
        required = schema.get("required", [])
        if problem is None and (
            not isinstance(required, list) or any(item not in properties for item in required)
        ):
            problem = "required must list declared properties"
    if problem:
        raise PydanticCustomError("bad_json_schema", "JSON schema {problem}", {"problem": problem})
    return schema


ImportPath = Annotated[str, AfterValidator(_import_path)]
ObjectSchema = Annotated[dict[str, JsonValue], AfterValidator(_object_schema)]


class SideEffect(StrEnum):
    """What a call does to the world: only READ and IDEMPOTENT_WRITE calls may be retried."""

    READ = "READ"
    IDEMPOTENT_WRITE = "IDEMPOTENT_WRITE"
    NON_IDEMPOTENT_WRITE = "NON_IDEMPOTENT_WRITE"


class HttpMethod(StrEnum):
    GET = "GET"
    POST = "POST"
    PUT = "PUT"
    PATCH = "PATCH"
    DELETE = "DELETE"


class HttpImplementation(SchemaModel):
    url: WebhookUrl
    method: HttpMethod = HttpMethod.POST


class ToolImplementation(SchemaModel):
    """Exactly one of ``python: "package.module:function"`` or ``http: {url, method}``."""

    python: ImportPath | None = None
    http: HttpImplementation | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> ToolImplementation:
        if (self.python is None) == (self.http is None):
            raise ValueError("give exactly one of python or http")
        return self


def _empty_object() -> dict[str, JsonValue]:
    return {"type": "object", "properties": {}}


class Tool(SchemaModel):
    """A capability the agent may call. ``escalates``: a successful call hands the
    conversation to a person, so P8 plans an ESCALATE answer."""

    id: Key
    description: Prose
    input_schema: ObjectSchema = Field(default_factory=_empty_object)
    output_schema: ObjectSchema = Field(default_factory=_empty_object)
    side_effect: SideEffect = SideEffect.READ
    timeout_ms: int = Field(default=5000, ge=1, le=60_000)
    retries: int = Field(default=0, ge=0, le=5)
    implementation: ToolImplementation
    config: dict[str, JsonValue] = Field(default_factory=dict)
    escalates: bool = False

    @model_validator(mode="after")
    def _no_retried_side_effects(self) -> Tool:
        if self.side_effect is SideEffect.NON_IDEMPOTENT_WRITE and self.retries:
            raise ValueError("a NON_IDEMPOTENT_WRITE tool cannot be retried (retries: 0)")
        return self

    @property
    def required_inputs(self) -> list[str]:
        """Input properties P7 must supply, from customer data or from the model."""
        required = self.input_schema.get("required", [])
        return [str(name) for name in required] if isinstance(required, list) else []

    @property
    def outputs(self) -> list[str]:
        """Declared output properties: what templates may name and customer data may take."""
        properties = self.output_schema.get("properties", {})
        return list(properties) if isinstance(properties, dict) else []
