"""Play a pack's conversation tests over a port that runs one turn, and report the diffs.

The port is how the turn runs: in this process (``processors.turn.in_process``) or through a
worker on Kafka (``streams.pack_test``); the conversations, the checks and the report are the
same either way. Conversations run one after another, in file order, each as a new session
(its own channel id) of its customer: customer data a conversation leaves for a customer id is
there for the next conversation of that customer, as it would be in production. Each
conversation names its own session id (as a gateway that knows its sessions does), so a
customer's earlier conversation is never the session a later one continues.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from processors.pack.conversation_check import Mismatch, Observed, check_turn
from processors.pack.conversations import LoadedConversation, Suite
from processors.pack.errors import PackError
from schemas.domain.turn_input import TurnInput

SayTurn = Callable[[TurnInput], Awaitable[Observed]]
"""Runs one customer message as a turn and returns what it gave; may raise (a timeout)."""


@dataclass(frozen=True)
class TurnFailure:
    """A turn that missed at least one expectation, or that could not be run."""

    conversation: str
    file: str
    line: int
    turn: int
    """1-based position of the turn in its conversation."""
    message: str
    mismatches: tuple[Mismatch, ...]


@dataclass
class SuiteReport:
    """What a run found; ``load_errors`` are tests that could not be read or reference what
    the pack lacks (they fail the run too)."""

    load_errors: tuple[PackError, ...] = ()
    conversations: int = 0
    turns: int = 0
    checks: int = 0
    failures: list[TurnFailure] = field(default_factory=list)
    failed_conversations: set[str] = field(default_factory=set)

    @property
    def passed(self) -> bool:
        return not self.failures and not self.load_errors and self.conversations > 0


async def play(
    suite: Suite,
    tenant_id: str,
    agent_id: str,
    say: SayTurn,
    *,
    run_id: str,
    only: Sequence[str] = (),
) -> SuiteReport:
    """Every conversation of ``suite`` (those whose name contains one of ``only``, when
    given) through ``say``. A turn that raises ends its conversation (later turns would
    depend on state it left unknown) and is reported as a failure."""
    report = SuiteReport(load_errors=suite.errors)
    for n, loaded in enumerate(suite.conversations, start=1):
        name = loaded.conversation.name
        if only and not any(part.casefold() in name.casefold() for part in only):
            continue
        report.conversations += 1
        await _one(loaded, tenant_id, agent_id, f"pack-test-{run_id}-{n}", say, report)
    return report


async def _one(
    loaded: LoadedConversation,
    tenant_id: str,
    agent_id: str,
    session_id: str,
    say: SayTurn,
    report: SuiteReport,
) -> None:
    """``session_id`` is also the channel id: one visitor per conversation."""
    conversation = loaded.conversation
    for number, turn in enumerate(conversation.turns, start=1):
        given = TurnInput(
            tenant_id=tenant_id,
            agent_id=agent_id,
            channel=conversation.channel,
            channel_id=session_id,
            customer_id=conversation.customer_id,
            session_id=session_id,
            message=turn.say,
        )
        report.turns += 1
        report.checks += 1 + len(turn.expect.given())
        try:
            observed = await say(given)
        except Exception as exc:  # a turn that never answered: report it, run the next test
            problem = Mismatch("response", "an answer", f"{type(exc).__name__}: {exc}")
            _fail(report, loaded, number, turn.say, [problem])
            return
        mismatches = check_turn(turn.expect, observed)
        if mismatches:
            _fail(report, loaded, number, turn.say, mismatches)


def _fail(
    report: SuiteReport,
    loaded: LoadedConversation,
    number: int,
    message: str,
    mismatches: Sequence[Mismatch],
) -> None:
    name = loaded.conversation.name
    report.failed_conversations.add(name)
    report.failures.append(
        TurnFailure(name, loaded.file, loaded.line, number, message, tuple(mismatches))
    )


def format_report(report: SuiteReport, where: str, mode: str) -> list[str]:
    """The lines ``turnstream pack test`` prints: every load error, a diff block per failed
    turn, then one summary line."""
    lines = [str(error) for error in report.load_errors]
    for failure in report.failures:
        lines.append(
            f"FAIL {failure.file}:{failure.line}: {failure.conversation!r}, "
            f"turn {failure.turn}: {failure.message!r}"
        )
        for miss in failure.mismatches:
            lines.append(f"  {miss.key}: expected {miss.expected}")
            lines.append(f"  {' ' * len(miss.key)}       got {miss.got}")
    counts = f"{report.conversations} conversations, {report.turns} turns, {report.checks} checks"
    if report.passed:
        lines.append(f"{where}: all passed ({mode}): {counts}")
    elif report.conversations == 0 and not report.load_errors:
        lines.append(f"{where}: no conversation to run ({mode}): add tests/*.yaml")
    else:
        failed = len(report.failed_conversations)
        lines.append(
            f"{where}: FAILED ({mode}): {failed} of {report.conversations} conversations, "
            f"{sum(len(f.mismatches) for f in report.failures)} failed checks, "
            f"{len(report.load_errors)} test errors; {counts}"
        )
    return lines
