"""P4.1: the one embedding and the lexical features of a turn, shared by all four types."""

from __future__ import annotations

from dataclasses import dataclass

from processors.embedding import Vector


@dataclass(frozen=True)
class QueryFeatures:
    text: str
    vector: Vector
    tokens: tuple[str, ...]


def query_text(message: str) -> str:
    """The P4.1 query: the customer's (reworded) message alone. Adding the sensor's new-intent
    text and situation facts as extra lines measured worse (docs/retrieval.md)."""
    return message.strip()
