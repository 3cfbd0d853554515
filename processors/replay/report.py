"""The replay's summary, terminal table and JSON, and the ``--fail-on`` gate."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from processors.replay.diff import ChangeKind
from processors.replay.run import ConversationResult, ReplayRun
from processors.replay.words import inline, word_diff


@dataclass(frozen=True)
class ReplayHeader:
    """What was replayed against what, for every output: the source of the recording, the
    pack folder, and whether texts were masked in the source."""

    source: str
    pack: str
    masked_texts: bool


@dataclass(frozen=True)
class Summary:
    conversations: int
    turns: int
    changed_turns: int
    changed_conversations: int
    by_kind: dict[str, int]
    """How many turns changed in each kind (a turn counts once per kind)."""


def summarize(run: ReplayRun) -> Summary:
    kinds: Counter[str] = Counter()
    turns = changed = 0
    for conversation in run.conversations:
        for turn in conversation.turns:
            turns += 1
            changed += bool(turn.changes)
            kinds.update(k.value for k in turn.kinds)
    return Summary(
        conversations=len(run.conversations),
        turns=turns,
        changed_turns=changed,
        changed_conversations=sum(c.changed for c in run.conversations),
        by_kind=dict(sorted(kinds.items())),
    )


def changed_first(run: ReplayRun) -> list[ConversationResult]:
    """Conversations with changes first (most changed turns first), then the others."""
    return sorted(run.conversations, key=lambda c: -sum(bool(t.changes) for t in c.turns))


def parse_kinds(text: str) -> set[ChangeKind]:
    """``--fail-on new_violation,lost_tool_call``; ``any`` is every kind. Raises
    ``ValueError`` naming the known kinds for an unknown one."""
    wanted: set[ChangeKind] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part == "any":
            wanted.update(ChangeKind)
            continue
        try:
            wanted.add(ChangeKind(part))
        except ValueError:
            known = ", ".join(k.value for k in ChangeKind)
            raise ValueError(f"unknown change kind {part!r} (known: any, {known})") from None
    return wanted


def failing(run: ReplayRun, kinds: Collection[ChangeKind]) -> dict[str, int]:
    """The ``--fail-on`` kinds that appeared, with their turn counts."""
    counts = summarize(run).by_kind
    return {k.value: counts[k.value] for k in kinds if counts.get(k.value)}


def table(run: ReplayRun, header: ReplayHeader, *, limit: int = 20) -> list[str]:
    """The terminal report: header, summary by kind, then the changed turns of the first
    ``limit`` changed conversations."""
    summary = summarize(run)
    lines = [
        f"replay of {header.source} against {header.pack}",
        f"texts: {'masked (as analytics masks them)' if header.masked_texts else 'as recorded'}",
    ]
    if run.llm_note:
        lines.append(f"llm: {run.llm_note}")
    lines.append(
        f"{summary.turns} turns in {summary.conversations} conversations: "
        f"{summary.changed_turns} turns changed in {summary.changed_conversations} conversations"
    )
    if summary.by_kind:
        width = max(len(k) for k in summary.by_kind)
        lines.append(f"  {'kind'.ljust(width)}  turns")
        lines.extend(f"  {k.ljust(width)}  {n:5d}" for k, n in summary.by_kind.items())
    shown = [c for c in changed_first(run) if c.changed][:limit]
    for conversation in shown:
        lines.append(f"conversation {conversation.conversation}:")
        for number, turn in enumerate(conversation.turns, start=1):
            if not turn.changes:
                continue
            lines.append(
                f"  turn {number} {turn.recorded.record.turn_id}: "
                f"{turn.recorded.request.input.message!r}"
            )
            for change in turn.changes:
                if change.kind is ChangeKind.ANSWER:
                    shown_diff = inline(word_diff(change.before, change.after))
                    lines.append(f"    {change.kind.value}: {shown_diff}")
                else:
                    lines.append(
                        f"    {change.kind.value}: {change.before or '-'} -> {change.after or '-'}"
                    )
    hidden = summary.changed_conversations - len(shown)
    if hidden > 0:
        lines.append(f"... {hidden} more changed conversations (see --json or --html)")
    return lines


def as_json(run: ReplayRun, header: ReplayHeader) -> dict[str, Any]:
    """Everything the table shows, every conversation, machine-readable."""
    summary = summarize(run)
    return {
        "source": header.source,
        "pack": header.pack,
        "masked_texts": header.masked_texts,
        "llm_note": run.llm_note,
        "summary": {
            "conversations": summary.conversations,
            "turns": summary.turns,
            "changed_turns": summary.changed_turns,
            "changed_conversations": summary.changed_conversations,
            "by_kind": summary.by_kind,
        },
        "conversations": [
            {
                "conversation": c.conversation,
                "changed": c.changed,
                "turns": [
                    {
                        "turn_id": t.recorded.record.turn_id,
                        "message": t.recorded.request.input.message,
                        "changes": [
                            {"kind": ch.kind.value, "before": ch.before, "after": ch.after}
                            for ch in t.changes
                        ],
                    }
                    for t in c.turns
                ],
            }
            for c in changed_first(run)
        ],
    }
