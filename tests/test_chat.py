"""``turnstream chat`` driven as a person drives it: through a pseudo-terminal, against a real
worker on the test broker with the example pack loaded."""

from __future__ import annotations

import asyncio
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from streams.local_kafka import free_ports
from streams.settings import Settings
from streams.topic_admin import ensure_topics
from tests.pipeline_support import (
    AGENT,
    REPO,
    TENANT,
    pipeline_settings,
    prepare,
    running_worker,
    settings_env,
)

pytestmark = pytest.mark.integration

REFUND = "Hi, I'd like a refund of 900 dollars for order A-10023, it arrived broken."
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]|\r")
ANSWER_WAIT_S = 120.0
PROMPT = "you> "
LLM_CALL_S = 90


def _as_a_shell_starts_it() -> None:
    """SIGINT back to its default in the child, as an interactive shell leaves it: pytest run
    in the background of a script (``cmd &``) ignores SIGINT, the child inherits that, and
    Python then installs no KeyboardInterrupt handler (the Ctrl-C test failed so in a CI run
    started with ``nohup ... &``: SigIgn 0x1001007)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Terminal:
    """A child process on the slave side of a pty; :meth:`expect` reads what it shows."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        master, slave = pty.openpty()
        self.master = master
        self.process = subprocess.Popen(
            args,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            cwd=REPO,
            close_fds=True,
            preexec_fn=_as_a_shell_starts_it,
        )
        os.close(slave)
        self.shown = ""
        self._seen = 0

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def expect(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        """The first match of ``pattern`` in what was shown since the last match."""
        wanted = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            found = wanted.search(self.shown, self._seen)
            if found is not None:
                self._seen = found.end()
                return found
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {pattern!r} within {timeout} s; shown:\n{self.shown}")
            ready, _, _ = select.select([self.master], [], [], min(left, 0.5))
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # the child closed the terminal
                    chunk = b""
                if not chunk and self.process.poll() is not None:
                    raise AssertionError(f"exited before {pattern!r}; shown:\n{self.shown}")
                self.shown += ANSI.sub("", chunk.decode(errors="replace"))

    def wait(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while self.process.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                with suppress(OSError):
                    self.shown += ANSI.sub("", os.read(self.master, 65536).decode(errors="replace"))
        return self.process.wait(timeout=1)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        os.close(self.master)


@contextmanager
def chat(settings: Settings, *extra: str, env: dict[str, str] | None = None) -> Iterator[Terminal]:
    args = [sys.executable, "-m", "streams.cli", "chat", "--tenant", TENANT, "--agent", AGENT]
    terminal = Terminal([*args, *extra], {**settings_env(settings), "TERM": "dumb", **(env or {})})
    try:
        yield terminal
    finally:
        terminal.close()


async def shown(terminal: Terminal, pattern: str, timeout: float = 30.0) -> re.Match[str]:
    """:meth:`Terminal.expect` off the event loop, where the in-process worker runs."""
    return await asyncio.to_thread(terminal.expect, pattern, timeout)


@pytest.fixture(scope="module")
async def served(
    kafka_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Settings]:
    settings = pipeline_settings(kafka_settings, tmp_path_factory.mktemp("chat"))
    await prepare(settings)
    async with running_worker(settings):
        yield settings


async def test_two_turns_details_a_new_session_and_exit_on_eof(served: Settings) -> None:
    with chat(served, "--customer-id", "C-1001", "--timeout", str(ANSWER_WAIT_S)) as term:
        first_channel = (await shown(term, r"as webchat:(chat-[0-9a-f]{8})"))[1]
        await shown(term, PROMPT)

        term.type(REFUND + "\n")
        answer = (await shown(term, r"agent> (.+)\n", ANSWER_WAIT_S))[1]
        assert "error" not in answer and "900" not in answer  # the 500 gold limit holds
        await shown(term, PROMPT)
        term.type("Yes please, go ahead.\n")
        confirmed = (await shown(term, r"agent> (.+)\n", ANSWER_WAIT_S))[1]
        assert "RF-10023" in confirmed  # the refund the create_refund tool issued

        term.type("/details\n")
        await shown(term, r"    intent: \S+")
        await shown(term, r"    tool create_refund: ok in [\d.]+ ms")
        await shown(term, r"    timings ms: identification [\d.]+ ")
        first_session = await shown(term, r"    session: (\S+), turn (\d+)")
        assert first_session[2] == "2"

        term.type("/new\n")
        second_channel = (await shown(term, r"new session: channel id (chat-[0-9a-f]{8})"))[1]
        assert second_channel != first_channel
        term.type("where is my order A-10024?\n")
        await shown(term, r"agent> (.+)\n", ANSWER_WAIT_S)
        term.type("/details\n")
        restarted = await shown(term, r"    session: (\S+), turn (\d+)")
        assert restarted[2] == "1"  # the new session's count starts again
        assert restarted[1] != first_session[1]

        term.type("/help\n")
        await shown(term, r"/new +start a new session")
        await shown(term, PROMPT)
        term.type("\x04")  # Ctrl-D at the start of a line: end of input
        await shown(term, r"bye")
        assert await asyncio.to_thread(term.wait) == 0
        assert "Traceback" not in term.shown


async def test_ctrl_c_leaves_cleanly(served: Settings) -> None:
    with chat(served) as term:
        await shown(term, PROMPT)
        # readline draws the prompt, then waits in select(): a SIGINT between the two is only
        # seen at the next key (CPython's readline checks signals on EINTR). Sent the moment
        # the prompt showed, on a loaded machine: 36 of 150 missed in a loop of bare input()
        # calls, 0 of 100 with this pause; a person pressing Ctrl-C is never that quick.
        await asyncio.sleep(0.5)
        term.process.send_signal(signal.SIGINT)  # what Ctrl-C sends the foreground process
        await shown(term, r"bye")
        assert await asyncio.to_thread(term.wait) == 0
        assert "Traceback" not in term.shown


async def test_without_a_worker_the_first_message_gets_a_one_line_hint(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    unserved = pipeline_settings(kafka_settings, tmp_path)
    await ensure_topics(unserved)  # topics, but no worker reads them
    with chat(unserved, "--timeout", "2") as term:
        await shown(term, PROMPT)
        term.type("hello?\n")
        hint = await shown(term, r"no answer within 2 s: is `turnstream worker` running[^\n]*\n")
        assert "pack load" in hint[0]
        await shown(term, PROMPT)  # the shell goes on
        term.type("\x04")
        assert await asyncio.to_thread(term.wait) == 0
        assert "Traceback" not in term.shown


@pytest.mark.local_llm
async def test_llm_mode_runs_its_own_worker_against_the_local_model(
    kafka_settings: Settings, tmp_path: Path
) -> None:
    pytest.importorskip("xllamacpp", reason="needs the local-llm extra (see .ci/run)")
    own = pipeline_settings(kafka_settings, tmp_path)
    await prepare(own)  # topics and the pack; the chat brings the only worker
    (port,) = free_ports(1)
    env = {"TURNSTREAM_LOCAL_LLM_PORT": str(port), "TURNSTREAM_CACHE_DIR": str(tmp_path)}
    for phase in ("SENSOR", "RULE_SELECTION", "GENERATION", "ENFORCEMENT"):
        # one patient attempt per call: the small model on a shared 2-core runner is slow
        env |= {
            f"TURNSTREAM_PHASES__{phase}__TIMEOUT_S": str(LLM_CALL_S),
            f"TURNSTREAM_PHASES__{phase}__RETRIES": "0",
            f"TURNSTREAM_PHASES__{phase}__MAX_TOKENS": "48",
        }
    answer_s = 5 * LLM_CALL_S
    with chat(own, "--llm", "--customer-id", "C-1001", "--timeout", str(answer_s), env=env) as term:
        used = await shown(term, r"llm mode: the LLM phases use (\S+)", 120)
        assert used[1] == f"http://127.0.0.1:{port}/v1"  # a server started for this chat
        await shown(term, PROMPT, 300)  # the worker loaded the model and the pack
        term.type("where is my order A-10024?\n")
        await shown(term, r"agent> (.+)\n", answer_s)
        term.type("/details\n")
        called = await shown(term, r"    llm (\w+): smollm2-135m-instruct, (\d+) \+ (\d+) tokens")
        assert int(called[2]) > 0
        await shown(term, PROMPT)
        term.type("/quit\n")
        await shown(term, r"bye", 60)
        assert await asyncio.to_thread(term.wait, 60) == 0
    with pytest.raises(OSError):  # the chat stopped the server it started
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
