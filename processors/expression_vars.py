"""The names an expression can use, and the response variables P10 derives from an answer.

One flat naming scheme (attribute access is not part of the language):

* **customer fields** by their key, e.g. ``customer_tier``, ``order_id`` (from
  ``fields.yaml``; field keys may not start with ``session_`` or ``response_``);
* **session variables** ``session_*`` (:data:`SESSION_VARIABLES`), in every expression;
* **response variables** ``response_*`` (:data:`RESPONSE_VARIABLES`), only in enforcement
  expressions, because conditions and transitions run before there is an answer; plus, per
  NUMBER field with ``amount_terms``, ``response_<key>`` (:func:`amount_variables`): the
  pack names its own money amounts (a credit, a fee), not only refunds.

A variable the caller does not provide evaluates to ``None`` (see :mod:`processors.expressions`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from schemas.pack.fields import CustomerDataField

SESSION_PREFIX = "session_"
RESPONSE_PREFIX = "response_"

SESSION_VARIABLES: Mapping[str, str] = {
    "session_turn_count": "number of this turn in the session, counted from 1",
    "session_channel": "channel of the message: webchat, whatsapp, email, sms, phone, api",
    "session_language": "language of the customer's message (BCP 47, from the sensor)",
    "session_intent": "canonical intent id of this turn, or None",
    "session_frustration_level": "NONE, LOW, MEDIUM or HIGH (from the sensor)",
    "session_scenario_id": "id of the scenario being evaluated, or None",
    "session_step_id": "current step of that scenario, or None",
    "session_tools_called": "ids of the tools that succeeded in this turn (a list)",
}

RESPONSE_VARIABLES: Mapping[str, str] = {
    "response_text": "the generated answer",
    "response_type": "planned response type: ASK, ANSWER, MIXED, CONFIRM, REFUSE or ESCALATE",
    "response_amounts": "money amounts in the answer ($12.50, 40 EUR, ...), as numbers, in order",
    "response_max_amount": "the largest of response_amounts, or None",
    "response_refund_amount": "the largest amount in a sentence that mentions a refund, or None",
    "response_dates": "date phrases in the answer: 2024-05-01, 5/1, May 1, Friday, tomorrow, "
    "in 3 days (lower-cased)",
    "response_delivery_dates": "response_dates in sentences about delivery, shipping or arrival",
    "response_emails": "email addresses in the answer (lower-cased)",
}

_NUMBER = r"\d{1,3}(?:,\d{3})+(?:\.\d{1,2})?|\d+(?:\.\d{1,2})?"
_AMOUNT = re.compile(
    rf"[$€£]\s?(?P<pre>{_NUMBER})"
    rf"|(?<![\d,.])(?P<post>{_NUMBER})\s?(?:usd|eur|gbp|dollars?|euros?|pounds?)\b",
    re.IGNORECASE,
)
_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
    r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)"
)
_DATE = re.compile(
    rf"\b(?:\d{{4}}-\d{{2}}-\d{{2}}|\d{{1,2}}/\d{{1,2}}(?:/\d{{2,4}})?"
    rf"|{_MONTH}\.?\s+\d{{1,2}}(?:st|nd|rd|th)?|\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH}"
    r"|(?:mon|tues|wednes|thurs|fri|satur|sun)day|today|tomorrow|tonight"
    r"|(?:in|within)\s+\d+\s+(?:business\s+|working\s+)?days?)\b",
    re.IGNORECASE,
)
# Lookbehinds start each match at the beginning of a run: one scan per run, linear time.
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_REFUND = re.compile(r"\brefund", re.IGNORECASE)
_DELIVERY = re.compile(r"\b(?:deliver|arriv|ship)", re.IGNORECASE)


def _amounts(text: str) -> list[float]:
    return [
        float((match["pre"] or match["post"]).replace(",", "")) for match in _AMOUNT.finditer(text)
    ]


def _dates(text: str) -> list[str]:
    return [match.group(0).lower() for match in _DATE.finditer(text)]


def response_variables(text: str, response_type: str | None = None) -> dict[str, object]:
    """The ``response_*`` variables of an answer, for enforcement expressions.

    The extraction is deliberately simple and documented above, so agent builders can
    predict it; the LLM judge covers what a pattern cannot.
    """
    sentences = [sentence for sentence in _SENTENCE_END.split(text) if sentence]
    amounts = _amounts(text)
    refund_amounts = [a for s in sentences if _REFUND.search(s) for a in _amounts(s)]
    return {
        "response_text": text,
        "response_type": response_type,
        "response_amounts": amounts,
        "response_max_amount": max(amounts, default=None),
        "response_refund_amount": max(refund_amounts, default=None),
        "response_dates": _dates(text),
        "response_delivery_dates": [d for s in sentences if _DELIVERY.search(s) for d in _dates(s)],
        "response_emails": [email.lower() for email in _EMAIL.findall(text)],
    }


def amount_names(fields: Iterable[CustomerDataField]) -> dict[str, tuple[str, ...]]:
    """``response_<key>`` -> the field's ``amount_terms``, for fields that declare some."""
    return {f"{RESPONSE_PREFIX}{f.key}": tuple(f.amount_terms) for f in fields if f.amount_terms}


def amount_variables(text: str, names: Mapping[str, Sequence[str]]) -> dict[str, object]:
    """Per name of :func:`amount_names`, the largest money amount in a sentence of ``text``
    that mentions one of its terms (whole words, any case), or None."""
    if not names:
        return {}
    sentences = [sentence for sentence in _SENTENCE_END.split(text) if sentence]
    found: dict[str, object] = {}
    for name, terms in names.items():
        pattern = re.compile(
            r"\b(?:" + "|".join(re.escape(t) for t in terms) + r")\b", re.IGNORECASE
        )
        amounts = [a for s in sentences if pattern.search(s) for a in _amounts(s)]
        found[name] = max(amounts, default=None)
    return found
