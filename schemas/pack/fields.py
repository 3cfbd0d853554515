"""Customer data fields: what the agent may learn and keep about a customer (P2, P3)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import Field, model_validator

from schemas.base import SchemaModel
from schemas.domain.customer_data import VariableScope, VariableType
from schemas.pack.common import Description, Key, Phrase


class DateOrder(StrEnum):
    """How a numeric date such as ``03/04/2026`` is read: day first, month first or ISO."""

    DMY = "DMY"
    MDY = "MDY"
    YMD = "YMD"


class LetterCase(StrEnum):
    UPPER = "upper"
    LOWER = "lower"


class ExtractionHints(SchemaModel):
    """Help for the heuristic sensor: regexes (checked like ``matches`` patterns) and keywords
    that suggest the customer is giving this field's value.

    ``ignore_case`` matches the patterns regardless of case and ``normalize_case`` then writes
    the value in one case (an id typed ``a-10023`` kept as ``A-10023``). ``synonyms`` map an
    allowed value to phrases that mean it (``plus: [premium plan, the bigger one]``).
    ``free_text``: when this field is the one being asked for, the whole reply is its value (an
    address, a name). ``date_order`` reads numeric dates of a DATETIME field."""

    patterns: list[Phrase] = Field(default_factory=list)
    keywords: list[Phrase] = Field(default_factory=list)
    ignore_case: bool = False
    normalize_case: LetterCase | None = None
    synonyms: dict[Key, list[Phrase]] = Field(default_factory=dict)
    free_text: bool = False
    date_order: DateOrder = DateOrder.DMY


class CustomerDataField(SchemaModel):
    """A field's key is also its name in expressions. ``persist`` defaults to true except for
    SESSION fields, which end with their session by definition. ``protected`` fields are set
    only by tools and the system (an identity, a loyalty tier, an eligibility verdict): a
    value the customer states is rejected, so nobody talks their way into another identity
    or a higher limit."""

    key: Key
    scope: VariableScope
    type: VariableType
    persist: bool
    protected: bool = False
    sensitive: bool = False
    description: Description = ""
    allowed_values: list[Phrase] | None = None
    extraction: ExtractionHints = ExtractionHints()
    amount_terms: list[Phrase] = Field(default_factory=list)
    """NUMBER fields that are money: words that name this amount in an answer ("credit",
    "late fee"). Enforcement expressions then get ``response_<key>``: the largest money
    amount in a sentence of the answer that mentions one of them."""

    @model_validator(mode="before")
    @classmethod
    def _default_persist(cls, data: Any) -> Any:
        if isinstance(data, dict) and "persist" not in data:
            return {**data, "persist": data.get("scope") != VariableScope.SESSION}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> CustomerDataField:
        if self.scope is VariableScope.SESSION and self.persist:
            raise ValueError("a SESSION field cannot persist; use scope CASE or BUSINESS")
        if self.allowed_values is not None and self.type is not VariableType.STRING:
            raise ValueError("allowed_values only applies to STRING fields")
        unknown = sorted(set(self.extraction.synonyms) - set(self.allowed_values or ()))
        if unknown:
            raise ValueError(f"extraction.synonyms name values not in allowed_values: {unknown}")
        if self.amount_terms and self.type is not VariableType.NUMBER:
            raise ValueError("amount_terms only applies to NUMBER fields")
        if self.extraction.free_text and self.type is not VariableType.STRING:
            raise ValueError("extraction.free_text only applies to STRING fields")
        return self
