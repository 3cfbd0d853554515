"""Dates as customers write them, resolved against the turn's timestamp.

Why here: a DATETIME field that waits for "when should the change start?" gets "tomorrow",
"next Monday", "le 3 mars" or "03/04/2026" far more often than ISO 8601. The sensor (P2,
no clock) only finds the phrase (:func:`find_date`); P3 resolves it against the time the
turn was received (:func:`resolve_date`) and stores ISO 8601 (midnight UTC of that day).

Understood, in en, es, fr, de and pt: ISO dates; numeric dates ``d/m/y`` read by the field's
``date_order`` (DMY, MDY or YMD; ``.`` and ``-`` also separate; a missing year is the next
such day); day and month names ("3 March", "March 3rd", "3 de marzo", "3. März"); today,
tomorrow, the day after tomorrow; a weekday name (its next occurrence, today excluded),
optionally with "next"; "in N days/weeks".
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime, timedelta

from schemas.pack.fields import DateOrder

__all__ = ["find_date", "resolve_date"]


def _plain(text: str) -> str:
    """Lower case without accents: "mañana" and "manana" read alike."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


_RELATIVE: dict[str, int] = {
    "today": 0, "tomorrow": 1, "day after tomorrow": 2,
    "hoy": 0, "manana": 1, "pasado manana": 2,
    "aujourd'hui": 0, "aujourdhui": 0, "demain": 1, "apres-demain": 2, "apres demain": 2,
    "heute": 0, "morgen": 1, "ubermorgen": 2,
    "hoje": 0, "amanha": 1, "depois de amanha": 2,
}  # fmt: skip
_WEEKDAYS: dict[str, int] = {}
for _index, _names in enumerate(
    (
        "monday lunes lundi montag segunda",
        "tuesday martes mardi dienstag terca",
        "wednesday miercoles mercredi mittwoch quarta",
        "thursday jueves jeudi donnerstag quinta",
        "friday viernes vendredi freitag sexta",
        "saturday sabado samedi samstag",
        "sunday domingo dimanche sonntag",
    )
):
    for _name in _names.split():
        _WEEKDAYS[_name] = _index
_MONTHS: dict[str, int] = {}
for _index, _names in enumerate(
    (
        "january jan enero janvier januar janeiro",
        "february feb febrero fevrier februar fevereiro",
        "march mar marzo mars marz marco",
        "april apr abril avril",
        "may mayo mai maio",
        "june jun junio juin juni junho",
        "july jul julio juillet juli julho",
        "august aug agosto aout",
        "september sep sept septiembre septembre setembro",
        "october oct octubre octobre oktober outubro",
        "november nov noviembre novembre novembro",
        "december dec diciembre decembre dezember dezembro",
    ),
    start=1,
):
    for _name in _names.split():
        _MONTHS[_name] = _index
_NEXT = r"(?:next|this|coming|el proximo|proximo|prochain|nachsten|kommenden|na proxima|proxima)"
_UNITS = {"day": 1, "days": 1, "dia": 1, "dias": 1, "jour": 1, "jours": 1, "tag": 1,
          "tagen": 1, "week": 7, "weeks": 7, "semana": 7, "semanas": 7, "semaine": 7,
          "semaines": 7, "woche": 7, "wochen": 7}  # fmt: skip
_IN = r"(?:in|within|en|dans|em|daqui a)"

_ISO = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_NUMERIC = re.compile(r"\b(\d{1,4})[/.\-](\d{1,2})(?:[/.\-](\d{2,4}))?\b")
_MONTH_NAMES = "|".join(sorted(_MONTHS, key=len, reverse=True))
_DAY_MONTH = re.compile(
    rf"\b(\d{{1,2}})(?:st|nd|rd|th|er|o|º|\.)?\s+(?:of\s+|de\s+)?({_MONTH_NAMES})\b\.?"
    r"(?:\s+(?:de\s+)?(\d{4}))?"
)
_MONTH_DAY = re.compile(
    rf"\b({_MONTH_NAMES})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s+(\d{{4}}))?"
)
_RELATIVE_RE = re.compile(
    r"\b(" + "|".join(re.escape(k) for k in sorted(_RELATIVE, key=len, reverse=True)) + r")\b"
)
_WEEKDAY_RE = re.compile(
    rf"\b(?:{_NEXT}\s+)?(" + "|".join(sorted(_WEEKDAYS, key=len, reverse=True)) + r")\b"
)
_IN_RE = re.compile(rf"\b{_IN}\s+(\d{{1,3}})\s+(" + "|".join(_UNITS) + r")\b")


def find_date(text: str) -> str | None:
    """The first date phrase of ``text`` (as written, lower-cased without accents), or None."""
    plain = _plain(text)
    found = [
        match
        for pattern in (_ISO, _DAY_MONTH, _MONTH_DAY, _NUMERIC, _IN_RE, _RELATIVE_RE, _WEEKDAY_RE)
        for match in [pattern.search(plain)]
        if match is not None
    ]
    if not found:
        return None
    first = min(found, key=lambda m: (m.start(), -len(m.group(0))))
    return first.group(0)


def _year_for(day: int, month: int, today: date) -> date | None:
    for year in (today.year, today.year + 1):
        try:
            candidate = date(year, month, day)
        except ValueError:
            return None
        if candidate >= today:
            return candidate
    return None


def _make(year: int | None, month: int, day: int, today: date) -> date | None:
    if year is None:
        return _year_for(day, month, today)
    if year < 100:
        year += 2000
    try:
        return date(year, month, day)
    except ValueError:
        return None


def resolve_date(text: str, now: datetime, order: DateOrder = DateOrder.DMY) -> date | None:
    """The day ``text`` names, seen from ``now`` (its own date and timezone), or None."""
    plain = _plain(text).strip()
    today = now.date()
    if match := _ISO.fullmatch(plain):
        return _make(int(match[1]), int(match[2]), int(match[3]), today)
    if match := _DAY_MONTH.fullmatch(plain):
        return _make(int(match[3]) if match[3] else None, _MONTHS[match[2]], int(match[1]), today)
    if match := _MONTH_DAY.fullmatch(plain):
        return _make(int(match[3]) if match[3] else None, _MONTHS[match[1]], int(match[2]), today)
    if match := _NUMERIC.fullmatch(plain):
        a, b, c = match[1], match[2], match[3]
        if order is DateOrder.YMD or len(a) == 4:
            return _make(int(a), int(b), int(c), today) if c else None
        day, month = (int(a), int(b)) if order is DateOrder.DMY else (int(b), int(a))
        return _make(int(c) if c else None, month, day, today)
    if match := _IN_RE.fullmatch(plain):
        return today + timedelta(days=int(match[1]) * _UNITS[match[2]])
    if plain in _RELATIVE:
        return today + timedelta(days=_RELATIVE[plain])
    if match := _WEEKDAY_RE.fullmatch(plain):
        ahead = (_WEEKDAYS[match[1]] - today.weekday()) % 7 or 7
        return today + timedelta(days=ahead)
    return None
