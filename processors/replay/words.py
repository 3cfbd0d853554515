"""A word-level diff of two answers, for the report."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Literal

Op = Literal["same", "removed", "added"]


@dataclass(frozen=True)
class WordRun:
    """Consecutive words that are the same in both, only in the recorded, or only in the
    replayed answer."""

    op: Op
    text: str


def word_diff(before: str, after: str) -> list[WordRun]:
    """The runs that turn ``before`` into ``after``, split on whitespace."""
    old, new = before.split(), after.split()
    runs: list[WordRun] = []
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            runs.append(WordRun("same", " ".join(old[i1:i2])))
            continue
        if i2 > i1:
            runs.append(WordRun("removed", " ".join(old[i1:i2])))
        if j2 > j1:
            runs.append(WordRun("added", " ".join(new[j1:j2])))
    return runs


def inline(runs: list[WordRun]) -> str:
    """The diff on one line for a terminal: ``[-removed-]`` and ``{+added+}``."""
    parts = []
    for run in runs:
        if run.op == "same":
            parts.append(run.text)
        elif run.op == "removed":
            parts.append(f"[-{run.text}-]")
        else:
            parts.append(f"{{+{run.text}+}}")
    return " ".join(parts)
