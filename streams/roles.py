"""Worker roles: which stages a ``turnstream worker --role ROLE`` process runs.

Each role is its own Faust app (its own consumer group, ``<prefix>.pipeline-<role>``; the
``all`` role keeps ``<prefix>.pipeline``), so each scales on its own up to the partition
count of its topics. State lives with the role that writes it:

======== ================================================ =========================
role     runs                                             state (changelogged)
======== ================================================ =========================
context  session gate, P1-P3, P4.1 embedding, turn effects gate, seen turns,
         (response, session and customer persistence)     sessions, customer data,
                                                          responses
retrieval the four P4 retrieval consumers, memory ingestion vector store (Qdrant)
decide   P4 join (deadline timer), P5-P8                  retrieval join
answer   P9 generation, P10 enforcement                   none
analytics ClickHouse analytics consumer, SQL endpoint      ClickHouse
webhooks webhook deliveries                               none
all      everything above in one process                  all of it
======== ================================================ =========================

Split roles cannot read the session gate, so the decide and answer stages skip their early
"not the turn in flight" check; stale work then reaches the context role, which drops it.
Qdrant local mode allows one process: retrieval and the embedding in context share the
model but not the store, so split deployments use a Qdrant server (``TURNSTREAM_QDRANT_URL``)
for retrieval replicas beyond one.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ALL = "all"
    CONTEXT = "context"
    RETRIEVAL = "retrieval"
    DECIDE = "decide"
    ANSWER = "answer"
    ANALYTICS = "analytics"
    WEBHOOKS = "webhooks"


ROLES: tuple[str, ...] = tuple(role.value for role in Role)
PIPELINE_ROLES = frozenset({Role.CONTEXT, Role.RETRIEVAL, Role.DECIDE, Role.ANSWER})
"""Roles that run pipeline agents (a Faust app and the pipeline runtime)."""


def runs(role: Role, part: Role) -> bool:
    """Whether a ``role`` worker runs ``part``."""
    return role is Role.ALL or role is part


def app_suffix(role: Role) -> str:
    """The Faust app id after ``<prefix>.``: also the consumer group of the role."""
    return "pipeline" if role is Role.ALL else f"pipeline-{role.value}"
