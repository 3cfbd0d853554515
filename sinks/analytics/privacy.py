"""What analytics keeps of a customer: pseudonymous session keys and masked texts.

**Session keys.** A session key is ``tenant:channel:channel_id``, and on the email, sms,
whatsapp and phone channels ``channel_id`` is the customer's address. ``turns.session_key``
holds instead ``sk_`` and 32 hex digits of ``HMAC-SHA256(key, "session_key" 0x1f <session
key>)``: the same address of the same tenant on the same channel always gives the same value,
so analysts can still group by it, but it cannot be turned back into the address without the
key, not even by trying every phone number. The key is the deployment secret
``TURNSTREAM_ANALYTICS__PSEUDONYM_KEY``. Unset, each process draws a random key at start
and keeps it in memory only: nothing stored can be reversed, but the pseudonym of an address
changes when the process restarts and differs between processes, so set the key wherever
rows are grouped across restarts or written by more than one process.

**Texts** (message and answer, kept only with ``TURNSTREAM_ANALYTICS__STORE_TEXTS``; and the
free-text columns that are always kept: tool errors, enforcement violation details, dead
letter details) are masked before they are stored, deterministically, in this order:

1. values the turn knows for the customer-data fields its pack marks ``sensitive: true``
   (the current value and the history of each, and what the sensor read from the message)
   become ``[sensitive:<field>]``; on the email, sms, whatsapp and phone channels the
   channel address becomes ``[address]``. Matching ignores case and runs of whitespace and
   respects word edges; values shorter than 3 characters and booleans are not matched by
   value; the longest value wins where two overlap;
2. email addresses become ``[email]``;
3. 13 to 19 digits, optionally grouped by single spaces or dashes, that pass the Luhn check
   become ``[card]``;
4. phone numbers become ``[phone]``: 7 to 15 digits, with an optional ``+country`` code and
   ``(area)`` code, grouped by single spaces or dashes, not glued to a letter, digit, ``-``,
   ``/``, ``.``, ``=`` or ``#`` (order numbers like ``A-10023``, tracking numbers, URL
   paths); a number that starts with a ``YYYY-MM-DD`` or ``DD-MM-YYYY`` date or a
   ``YYYY-YYYY`` span of years is not one.

When the pack of a turn is not known to the sink, which fields are sensitive is not known
either: message and answer are then not stored at all (fail closed), and the other columns
get steps 1 (address only) to 4.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from typing import Any

from schemas.domain.turn_input import Channel
from schemas.domain.turn_record import TurnRecord

SESSION_PSEUDONYM_PREFIX = "sk_"
PSEUDONYM_HEX_CHARS = 32
MIN_VALUE_CHARS = 3
ADDRESS_CHANNELS = frozenset({Channel.EMAIL, Channel.SMS, Channel.WHATSAPP, Channel.PHONE})
ADDRESS_TOKEN = "[address]"
EMAIL_TOKEN = "[email]"
CARD_TOKEN = "[card]"
PHONE_TOKEN = "[phone]"
SENSITIVE_TOKEN = "[sensitive]"


def sensitive_token(field: str) -> str:
    return f"[sensitive:{field}]"


# -- pseudonyms ----------------------------------------------------------------------------


class Pseudonyms:
    """Keyed, non-reversible stand-ins for what identifies a customer (see the module
    docstring). The key never appears in a repr."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("a pseudonym key needs at least 16 bytes")
        self._key = key

    @classmethod
    def from_key(cls, key: str | None) -> Pseudonyms:
        """The configured key, or (None or empty) this process's random key."""
        return cls(key.encode()) if key else PROCESS_PSEUDONYMS

    def session_key(self, session_key: str) -> str:
        digest = hmac.new(
            self._key, b"session_key\x1f" + session_key.encode(), hashlib.sha256
        ).hexdigest()
        return SESSION_PSEUDONYM_PREFIX + digest[:PSEUDONYM_HEX_CHARS]

    def __repr__(self) -> str:
        return "Pseudonyms(<key hidden>)"


PROCESS_PSEUDONYMS = Pseudonyms(secrets.token_bytes(32))
"""The key of a process without ``TURNSTREAM_ANALYTICS__PSEUDONYM_KEY``: random, in memory."""


# -- patterns ------------------------------------------------------------------------------

_EMAIL = re.compile(r"(?<![\w.%+-])[\w.%+-]{1,64}@[\w-]{1,63}(?:\.[\w-]{1,63}){1,8}")
_CARD = re.compile(r"(?<![\w-])(?:\d[ -]?){12,18}\d(?![\w-])")
_PHONE = re.compile(
    r"(?<![\w+/=.#-])"
    r"(?!\d{4}-\d{2}-\d{2}(?!\d)|\d{2}-\d{2}-\d{4}(?!\d)|(?:19|20)\d\d-(?:19|20)\d\d(?!\d))"
    r"(?:\+\d{1,3}[ -]?)?"  # country code
    r"(?:\(\d{1,4}\)[ -]?)?"  # area code
    r"\d{1,15}(?:[ -]\d{1,5}){0,6}"  # groups
    r"(?![\w-])"
)


def _luhn(digits: str) -> bool:
    total = 0
    for i, char in enumerate(reversed(digits)):
        n = int(char)
        if i % 2:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match[0])
    return CARD_TOKEN if 13 <= len(digits) <= 19 and _luhn(digits) else match[0]


def _phone(match: re.Match[str]) -> str:
    text = match[0]
    digits = sum(char.isdigit() for char in text)
    return PHONE_TOKEN if 7 <= digits <= 15 else text


def mask_patterns(text: str) -> str:
    """Steps 2 to 4 of the module docstring: emails, card numbers, phone numbers."""
    if not text:
        return text
    if "@" in text:
        text = _EMAIL.sub(EMAIL_TOKEN, text)
    if any(char.isdigit() for char in text):
        text = _CARD.sub(_card, text)
        text = _PHONE.sub(_phone, text)
    return text


# -- known values --------------------------------------------------------------------------


def _normalized(value: str) -> str:
    return " ".join(value.split()).lower()


def _value_pattern(value: str) -> str:
    body = r"\s+".join(re.escape(word) for word in value.split())
    head = r"(?<!\w)" if re.match(r"\w", value) else ""
    tail = r"(?!\w)" if re.search(r"\w$", value) else ""
    return head + body + tail


class Masker:
    """Masks the texts of one turn: its known sensitive values (token by normalized value),
    then the patterns."""

    def __init__(self, tokens: Mapping[str, str]) -> None:
        self._tokens = dict(tokens)
        ordered = sorted(self._tokens, key=lambda value: (-len(value), value))
        pattern = "|".join(_value_pattern(value) for value in ordered)
        self._known = re.compile(pattern, re.IGNORECASE) if ordered else None

    def __call__(self, text: str) -> str:
        if not text:
            return text
        if self._known is not None:
            text = self._known.sub(self._token, text)
        return mask_patterns(text)

    def _token(self, match: re.Match[str]) -> str:
        return self._tokens.get(_normalized(match[0]), SENSITIVE_TOKEN)


def _json_leaves(value: Any) -> Iterator[str]:
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, str):
        yield value
    elif isinstance(value, int):
        yield str(value)
    elif isinstance(value, float):
        yield str(int(value)) if value.is_integer() else str(value)
    elif isinstance(value, list):
        for item in value:
            yield from _json_leaves(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _json_leaves(item)


def _leaves(json_text: str) -> Iterator[str]:
    try:
        yield from _json_leaves(json.loads(json_text))
    except ValueError:
        yield json_text


def sensitive_values(record: TurnRecord, sensitive_fields: Collection[str]) -> dict[str, str]:
    """Field by value, for every value the turn knows of a sensitive field."""
    ctx = record.context
    found: list[tuple[str, str]] = []
    store = ctx.customer_data
    if store is not None:
        for key in sorted(store.variables):
            if key in sensitive_fields:
                entry = store.variables[key]
                for text in (entry.value, *(change.value for change in entry.history)):
                    found += [(key, leaf) for leaf in _leaves(text)]
    if ctx.snapshot is not None:
        for key in sorted(ctx.snapshot.candidate_variables):
            if key in sensitive_fields:
                candidate = ctx.snapshot.candidate_variables[key]
                found += [(key, leaf) for leaf in _leaves(candidate.value)]
    values: dict[str, str] = {}
    for key, value in found:
        values.setdefault(value, key)
    return values


def turn_masker(record: TurnRecord, sensitive_fields: Collection[str] | None) -> Masker:
    """The masker of one turn (``sensitive_fields`` None: not known, no values but the
    address)."""
    tokens: dict[str, str] = {}

    def add(values: Iterable[tuple[str, str]]) -> None:
        for value, token in values:
            normalized = _normalized(value)
            if len(normalized) >= MIN_VALUE_CHARS:
                tokens.setdefault(normalized, token)

    if sensitive_fields:
        found = sensitive_values(record, sensitive_fields)
        add((value, sensitive_token(key)) for value, key in found.items())
    given = record.context.input
    if given.channel in ADDRESS_CHANNELS:
        add([(given.channel_id, ADDRESS_TOKEN)])
    return Masker(tokens)


def address_masker(session_key: str | None) -> Callable[[str], str]:
    """For a record that has only a session key (a dead letter): its address, then the
    patterns."""
    parts = (session_key or "").split(":", 2)
    address = parts[2] if len(parts) == 3 else ""
    if len(_normalized(address)) < MIN_VALUE_CHARS:
        return mask_patterns
    return Masker({_normalized(address): ADDRESS_TOKEN})
