"""SESSION-scope variables live in the session, the others in the customer's store.

P3 works on one store holding both, so phases never care where a value lives; P11 splits
them again: fields with ``persist: false`` (SESSION scope) go back to the session state,
the rest to the CustomerDataStore.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from schemas.domain.customer_data import (
    CustomerDataStore,
    VariableEntry,
    VariableScope,
    VariableSource,
    VariableType,
)
from schemas.domain.session import SessionState
from schemas.domain.turn_input import TurnInput
from schemas.fields import json_text
from schemas.pack.agent_pack import AgentPack
from schemas.pack.fields import CustomerDataField


def with_session_variables(store: CustomerDataStore, session: SessionState) -> CustomerDataStore:
    """The working store of a turn: the customer's variables plus the session's."""
    if not session.variables:
        return store
    return store.model_copy(update={"variables": {**store.variables, **session.variables}})


def split_variables(
    store: CustomerDataStore, fields: Iterable[CustomerDataField]
) -> tuple[dict[str, VariableEntry], dict[str, VariableEntry]]:
    """(persistent, session-only) variables of a working store. A variable whose field is
    no longer in the pack is kept as persistent: dropping data is a pack author's decision."""
    session_only = {f.key for f in fields if not f.persist}
    persistent = {k: v for k, v in store.variables.items() if k not in session_only}
    scoped = {k: v for k, v in store.variables.items() if k in session_only}
    return persistent, scoped


IDENTITY_FIELD = "customer_id"


def with_gateway_identity(
    store: CustomerDataStore, given: TurnInput, pack: AgentPack, now: datetime
) -> CustomerDataStore:
    """A gateway that knows the customer (a logged-in web visitor) sends ``customer_id``;
    when the pack declares an IDENTITY field ``customer_id``, tools and expressions read it
    from there, so P1 sets it (source SYSTEM) unless it is already known."""
    declared = any(
        f.key == IDENTITY_FIELD and f.scope is VariableScope.IDENTITY for f in pack.fields
    )
    if given.customer_id is None or not declared or IDENTITY_FIELD in store.variables:
        return store
    entry = VariableEntry(
        value=json_text(given.customer_id),
        type=VariableType.STRING,
        scope=VariableScope.IDENTITY,
        source=VariableSource.SYSTEM,
        confidence=1.0,
        last_updated_at=now,
    )
    return store.model_copy(update={"variables": {**store.variables, IDENTITY_FIELD: entry}})
