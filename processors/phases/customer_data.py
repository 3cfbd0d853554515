"""P3 customer data update: turn the sensor's candidate values into validated variables.

Why a separate phase: the sensor (P2) only *proposes* values; the pack's field definitions
decide what the agent may keep and in which shape. Everything happens in memory; writes of
persistent fields wait for P11, which is why every change says whether it must be persisted.

Rules, in order, for each candidate ``key -> value``:

1. the key must name a field of the pack, else it is rejected (``unknown_field``);
2. the value is coerced to the field's type (see :func:`coerce_value`), else rejected with
   the coercion's reason (``invalid_string``, ``invalid_number``, ``not_allowed``, ...);
3. a value equal to the current one changes nothing (no history entry, no change);
4. otherwise the previous entry goes into ``history`` (newest last, at most
   :data:`~schemas.domain.customer_data.MAX_HISTORY`, oldest dropped) and the new entry
   takes the field's scope (the pack is authoritative over the sensor's scope guess);
5. the change is marked ``persist`` exactly when the field has ``persist: true``; P11 writes
   those and keeps the others for the session only.

Rejections are recorded, never raised: one bad value must not cost the turn.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import NamedTuple, cast

from pydantic import JsonValue

from processors.phases.dates import resolve_date
from schemas.domain.customer_data import (
    MAX_HISTORY,
    CustomerDataStore,
    VariableChange,
    VariableEntry,
    VariableScope,
    VariableSource,
    VariableType,
)
from schemas.domain.snapshot import SituationalSnapshot
from schemas.fields import json_text
from schemas.pack.fields import CustomerDataField

__all__ = [
    "CoercionError",
    "CustomerDataUpdate",
    "DataChange",
    "DataRejection",
    "coerce_value",
    "customer_variables",
    "update_customer_data",
]

MAX_STRING_VALUE = 2000
_TRUE = frozenset({"true", "yes", "y", "1", "on", "si", "sí", "oui", "ja", "sim"})
_FALSE = frozenset({"false", "no", "n", "0", "off", "non", "nein", "nao", "não"})
_NUMBER_TEXT = re.compile(r"^[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?$")


class CoercionError(ValueError):
    """A value that cannot take a field's type; ``code`` is stable for dashboards."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


@dataclass(frozen=True)
class DataChange:
    """One variable set this turn; ``previous`` is the JSON it replaced (None if new)."""

    key: str
    value: str
    previous: str | None
    scope: VariableScope
    persist: bool


@dataclass(frozen=True)
class DataRejection:
    """A candidate that was not applied, and why."""

    key: str
    value: str
    code: str
    detail: str


class CustomerDataUpdate(NamedTuple):
    """What P3 returns: unpack as ``store, changes, rejections``."""

    store: CustomerDataStore
    changes: list[DataChange]
    rejections: list[DataRejection]

    @property
    def persistent_changes(self) -> list[DataChange]:
        """The changes P11 must write to the CustomerDataStore table."""
        return [change for change in self.changes if change.persist]


def customer_variables(store: CustomerDataStore | None) -> dict[str, object]:
    """The store as expression variables: field key -> decoded JSON value."""
    if store is None:
        return {}
    return {key: json.loads(entry.value) for key, entry in store.variables.items()}


def coerce_value(value: object, field: CustomerDataField, now: datetime | None = None) -> object:
    """``value`` in the field's type, or :class:`CoercionError`.

    STRING: strings (trimmed, non-empty, at most :data:`MAX_STRING_VALUE` chars) and numbers;
    with ``allowed_values`` matched case-insensitively with spaces/hyphens read as ``_`` (or
    one of the field's ``extraction.synonyms``) and returned in the pack's spelling. NUMBER:
    ints and floats (not booleans, finite), or numeric text such as ``"1,234.50"`` /
    ``"$12"``. BOOLEAN: booleans, 0/1, and yes/no words (en/es/fr/de/pt). DATETIME: ISO 8601
    text with a timezone, or a plain date (midnight UTC), or, given ``now``, a date as a
    customer writes it ("tomorrow", "next Monday", "3 March", "03/04/2026" by the field's
    ``date_order``; :mod:`processors.phases.dates`), returned as ISO 8601 UTC text. JSON: any
    JSON value as-is.
    """
    kind = field.type
    if kind is VariableType.STRING:
        return _to_string(value, field.allowed_values, field.extraction.synonyms)
    if kind is VariableType.NUMBER:
        return _to_number(value)
    if kind is VariableType.BOOLEAN:
        return _to_bool(value)
    if kind is VariableType.DATETIME:
        try:
            return _to_datetime(value)
        except CoercionError:
            day = (
                resolve_date(value, now, field.extraction.date_order)
                if (now is not None and isinstance(value, str))
                else None
            )
            if day is None:
                raise
            return datetime(day.year, day.month, day.day, tzinfo=UTC).isoformat()
    return value


def _to_string(
    value: object, allowed: Sequence[str] | None, synonyms: Mapping[str, Sequence[str]]
) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise CoercionError("invalid_string", f"expected text, got {type(value).__name__}")
    text = str(value).strip()
    if not text:
        raise CoercionError("invalid_string", "empty text")
    if len(text) > MAX_STRING_VALUE:
        raise CoercionError("invalid_string", f"longer than {MAX_STRING_VALUE} characters")
    if allowed is None:
        return text
    wanted = _normal(text)
    for option in allowed:
        if _normal(option) == wanted or any(_normal(p) == wanted for p in synonyms.get(option, ())):
            return option
    raise CoercionError("not_allowed", f"{text!r} is not one of {', '.join(allowed)}")


def _normal(text: str) -> str:
    return re.sub(r"[\s\-]+", "_", text.strip().lower())


def _to_number(value: object) -> int | float:
    if isinstance(value, bool):
        raise CoercionError("invalid_number", "a boolean is not a number")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CoercionError("invalid_number", "not a finite number")
        return int(value) if value.is_integer() else value
    if isinstance(value, str):
        text = value.strip().lstrip("$€£").strip()
        if text and _NUMBER_TEXT.match(text) and any(ch.isdigit() for ch in text):
            return _to_number(float(text.replace(",", "")))
    raise CoercionError("invalid_number", f"{value!r} is not a number")


def _to_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise CoercionError("invalid_boolean", f"{value!r} is not yes/no")


def _to_datetime(value: object) -> str:
    if not isinstance(value, str):
        raise CoercionError("invalid_datetime", f"expected ISO 8601 text, got {value!r}")
    text = value.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC).isoformat()
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CoercionError("invalid_datetime", f"{text!r} is not ISO 8601") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise CoercionError("invalid_datetime", f"{text!r} has no timezone")
    return moment.astimezone(UTC).isoformat()


def update_customer_data(
    store: CustomerDataStore,
    fields: Iterable[CustomerDataField],
    snapshot: SituationalSnapshot,
    now: datetime,
    *,
    source: VariableSource = VariableSource.USER,
    confidence: float = 0.8,
    turn_id: str | None = None,
) -> CustomerDataUpdate:
    """Apply the snapshot's candidate variables to ``store`` by the rules of the module
    docstring. ``source``/``confidence`` describe where the candidates came from (the
    heuristic sensor reads what the customer wrote: USER, 0.8); the snapshot carries no
    per-candidate confidence. Candidates are applied in key order, so the result does not
    depend on dict order."""
    candidates = {key: json.loads(c.value) for key, c in snapshot.candidate_variables.items()}
    return apply_values(
        store, fields, candidates, now, source=source, confidence=confidence, turn_id=turn_id
    )


def apply_values(
    store: CustomerDataStore,
    fields: Iterable[CustomerDataField],
    values: Mapping[str, object],
    now: datetime,
    *,
    source: VariableSource,
    confidence: float,
    turn_id: str | None = None,
) -> CustomerDataUpdate:
    """The same rules for plain decoded values (e.g. tool outputs, source TOOL)."""
    by_key = {field.key: field for field in fields}
    variables = dict(store.variables)
    changes: list[DataChange] = []
    rejections: list[DataRejection] = []
    for key in sorted(values):
        raw = values[key]
        field = by_key.get(key)
        if field is None:
            rejections.append(
                DataRejection(key, json_text(_jsonable(raw)), "unknown_field", "no such field")
            )
            continue
        if field.protected and source in (VariableSource.USER, VariableSource.INFERENCE):
            detail = "set only by tools and the system, not from what the customer says"
            rejections.append(DataRejection(key, json_text(_jsonable(raw)), "protected", detail))
            continue
        try:
            value = coerce_value(raw, field, now)
        except CoercionError as exc:
            rejections.append(DataRejection(key, json_text(_jsonable(raw)), exc.code, exc.detail))
            continue
        encoded = json_text(_jsonable(value))
        old = variables.get(key)
        if old is not None and json.loads(old.value) == value and old.type is field.type:
            continue
        history = list(old.history) if old is not None else []
        if old is not None:
            history.append(
                VariableChange(
                    value=old.value, source=old.source, at=old.last_updated_at, turn_id=turn_id
                )
            )
        variables[key] = VariableEntry(
            value=encoded,
            type=field.type,
            scope=field.scope,
            source=source,
            confidence=confidence,
            last_updated_at=now,
            history=history[-MAX_HISTORY:],
        )
        changes.append(
            DataChange(key, encoded, old.value if old else None, field.scope, field.persist)
        )
    new_store = (
        store.model_copy(update={"variables": variables, "updated_at": now}) if changes else store
    )
    return CustomerDataUpdate(new_store, changes, rejections)


def _jsonable(value: object) -> JsonValue:
    """JSON-safe form of a value for recording (unknown objects become their repr)."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return repr(value)
    return cast(JsonValue, value)
