"""The replay report as one self-contained HTML page (inline CSS, no script, no fetch)."""

from __future__ import annotations

from html import escape

from processors.replay.diff import ChangeKind
from processors.replay.report import ReplayHeader, changed_first, summarize
from processors.replay.run import ConversationResult, ReplayRun
from processors.replay.words import word_diff

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f3f3f3}
.same-conv{color:#777}
del{background:#fdd;text-decoration:line-through}
ins{background:#dfd;text-decoration:none}
.kind{font-family:monospace;white-space:nowrap}
section.conversation{border-top:2px solid #ddd;margin-top:1.5em}
"""


def render(run: ReplayRun, header: ReplayHeader) -> str:
    """The page: header, summary table by kind, then each changed conversation's turns
    with their changes (answers as word diffs); unchanged conversations are listed only."""
    summary = summarize(run)
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<title>turnstream replay</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>turnstream replay</h1>",
        f"<p>Recording: <code>{escape(header.source)}</code>; pack: "
        f"<code>{escape(header.pack)}</code>; texts: "
        f"{'masked as analytics masks them' if header.masked_texts else 'as recorded'}.</p>",
    ]
    if run.llm_note:
        parts.append(f"<p>LLM: {escape(run.llm_note)}</p>")
    parts.append(
        f"<p id='totals'>{summary.turns} turns in {summary.conversations} conversations; "
        f"{summary.changed_turns} turns changed in {summary.changed_conversations} "
        "conversations.</p>"
    )
    parts.append("<table id='summary'><tr><th>change</th><th>turns</th></tr>")
    parts.extend(
        f"<tr><td class='kind'>{escape(k)}</td><td>{n}</td></tr>"
        for k, n in summary.by_kind.items()
    )
    if not summary.by_kind:
        parts.append("<tr><td colspan='2'>no change</td></tr>")
    parts.append("</table>")
    unchanged: list[str] = []
    for conversation in changed_first(run):
        if conversation.changed:
            parts.append(_conversation(conversation))
        else:
            unchanged.append(conversation.conversation)
    if unchanged:
        parts.append(
            f"<p class='same-conv'>Unchanged conversations ({len(unchanged)}): "
            f"{escape(', '.join(unchanged))}</p>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def _conversation(conversation: ConversationResult) -> str:
    rows = [
        f"<section class='conversation'><h2>Conversation <code>"
        f"{escape(conversation.conversation)}</code></h2>",
        "<table class='turns'><tr><th>#</th><th>message</th><th>change</th>"
        "<th>recorded</th><th>replayed</th></tr>",
    ]
    for number, turn in enumerate(conversation.turns, start=1):
        message = escape(turn.recorded.request.input.message)
        if not turn.changes:
            rows.append(f"<tr><td>{number}</td><td>{message}</td><td colspan='3'>same</td></tr>")
            continue
        span = len(turn.changes)
        for i, change in enumerate(turn.changes):
            lead = (
                f"<td rowspan='{span}'>{number}</td><td rowspan='{span}'>{message}</td>"
                if i == 0
                else ""
            )
            if change.kind is ChangeKind.ANSWER:
                cells = f"<td colspan='2'>{_words(change.before, change.after)}</td>"
            else:
                cells = f"<td>{escape(change.before)}</td><td>{escape(change.after)}</td>"
            rows.append(f"<tr>{lead}<td class='kind'>{change.kind.value}</td>{cells}</tr>")
    rows.append("</table></section>")
    return "\n".join(rows)


def _words(before: str, after: str) -> str:
    out = []
    for run in word_diff(before, after):
        text = escape(run.text)
        out.append(
            text
            if run.op == "same"
            else f"<del>{text}</del>"
            if run.op == "removed"
            else f"<ins>{text}</ins>"
        )
    return " ".join(out)
