"""``turnstream chat``: talk to an agent turn by turn, as its customers do (like ``rasa shell``).

One :class:`TurnClient` stays open for the whole shell; each line typed is one customer
message on one session (channel ``webchat``, a random channel id unless given), and the
answer is printed when the pipeline responds. ``/details`` prints what ``turnstream demo``
prints for each turn (``streams.demo.describe``: intent, scenario steps, tools, enforcement,
outcome, timings) for the last turn; ``/new`` starts a new session under a new channel id.

The answers come from whatever worker serves the topics (``turnstream worker``), in the mode
its own settings say. ``--worker`` starts one in this process instead; ``--llm`` implies it,
in llm mode: the LLM phases run against ``TURNSTREAM_LLM_BASE_URL``, else the local llama.cpp
server of ``streams.local_llm`` (found on ``TURNSTREAM_LOCAL_LLM_PORT`` or started for the
chat and stopped after it).

Why a thread: the Kafka clients (and the worker) need a running event loop while the shell
waits for a line, and ``input()`` belongs in the main thread, where readline edits the line
and Ctrl-C arrives. So the loop runs in a background thread and the shell hands it one
coroutine at a time. Ctrl-D, Ctrl-C and ``/quit`` close the client (and the worker) and
exit 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from schemas.domain.turn_input import Channel, TurnInput
from streams.cli_errors import CliError
from streams.settings import Settings, TaskMode

if TYPE_CHECKING:
    from schemas.events.turn_response import TurnResponse
    from streams.turn_client import TurnClient
    from streams.worker import Worker

T = TypeVar("T")

PROMPT = "you> "
RECORD_WAIT_S = 10.0
STALL_MARGIN_S = 30.0
LLM_PHASES = ("sensor", "rule_selection", "generation", "enforcement")
"""The phases that call a model in llm mode (``streams.pipeline.runtime.LLM_PHASES``)."""
HELP = """\
  type a message and press Enter to send it as the customer
  /details  what the last turn did: intent, scenario steps, tools, enforcement, timings
  /new      start a new session (a new channel id)
  /help     this list
  /quit     leave (Ctrl-D and Ctrl-C too)"""


def new_channel_id() -> str:
    return f"chat-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class ChatOptions:
    tenant: str
    agent: str
    channel_id: str | None = None
    customer_id: str | None = None
    timeout_s: float = 60.0
    worker: bool = False
    llm: bool = False


@dataclass
class ChatSession:
    """The asynchronous side: the client, the current session and its last turn."""

    settings: Settings
    options: ChatOptions
    client: TurnClient
    channel_id: str
    worker: Worker | None = None
    last: tuple[str, TurnResponse] | None = None
    turns: int = 0
    _closed: bool = field(default=False, init=False)

    @classmethod
    async def open(cls, settings: Settings, options: ChatOptions) -> ChatSession:
        from streams.turn_client import TurnClient

        worker = await _start_worker(settings) if options.worker else None
        client = TurnClient(settings, records=True)
        try:
            await client.start()
        except RuntimeError as exc:  # a topic is missing
            await client.stop()
            if worker is not None:
                await worker.stop()
            raise CliError(str(exc), "create the topics with `turnstream topics create`") from exc
        except BaseException:
            await client.stop()
            if worker is not None:
                await worker.stop()
            raise
        return cls(settings, options, client, options.channel_id or new_channel_id(), worker)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self.client.stop()
        if self.worker is not None:
            await self.worker.stop()

    async def say(self, message: str) -> list[str]:
        """Send one customer message; the answer, or a one-line hint when none comes."""
        given = TurnInput(
            tenant_id=self.options.tenant,
            agent_id=self.options.agent,
            channel=Channel.WEBCHAT,
            channel_id=self.channel_id,
            customer_id=self.options.customer_id,
            message=message,
        )
        turn_id = await self.client.send(given)
        try:
            response = await self.client.response(turn_id, timeout=self.options.timeout_s)
        except TimeoutError:
            return [self.no_answer_hint()]
        self.last = (turn_id, response)
        self.turns += 1
        if response.error is not None:
            return [f"agent> (error {response.error.code}: {response.error.message})"]
        return [f"agent> {response.text}"]

    def no_answer_hint(self) -> str:
        where = f"{self.options.tenant}/{self.options.agent}"
        return (
            f"no answer within {self.options.timeout_s:g} s: is `turnstream worker` running on "
            f"{self.settings.bootstrap_servers} (prefix {self.settings.topic_prefix}) with a "
            f"pack for {where} loaded (`turnstream pack load DIR`)? or use `chat --worker`"
        )

    async def details(self) -> list[str]:
        """What ``turnstream demo`` prints for a turn, for the last one answered."""
        from streams.demo import describe

        if self.last is None:
            return ["  no turn answered yet in this session"]
        turn_id, response = self.last
        try:
            record = await self.client.record(turn_id, timeout=RECORD_WAIT_S)
        except TimeoutError:
            return [f"  the record of {turn_id} did not arrive within {RECORD_WAIT_S:g} s"]
        lines = describe(record, response)
        context = record.context
        for usage in context.token_usage:
            lines.append(
                f"    llm {usage.phase.value}: {usage.model}, "
                f"{usage.prompt_tokens} + {usage.completion_tokens} tokens"
            )
        lines += [f"    error {e.code}: {e.message}" for e in context.errors]
        session = context.session
        if session is not None:
            lines.append(f"    session: {session.session_id}, turn {session.turn_count + 1}")
        lines.append(f"    turn id: {turn_id}")
        return lines

    def new(self) -> str:
        self.channel_id = new_channel_id()
        self.last = None
        self.turns = 0
        return f"new session: channel id {self.channel_id}"


async def _start_worker(settings: Settings) -> Worker:
    from streams.worker import Worker, inside_a_command

    print("starting a worker in this process (model and packs) ...", flush=True)
    worker = Worker(inside_a_command(settings))
    await worker.start()
    return worker


class BackgroundLoop:
    """An event loop in a daemon thread; :meth:`run` runs one coroutine on it and waits."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, name="chat-loop", daemon=True)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def __enter__(self) -> BackgroundLoop:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """The coroutine's result; Ctrl-C while waiting cancels it and re-raises."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result()
        except KeyboardInterrupt:
            future.cancel()
            raise


def llm_mode(settings: Settings, base_url: str, model: str | None = None) -> Settings:
    """``settings`` with every LLM phase in llm mode against ``base_url`` (and ``model``,
    when given, instead of each phase's configured one)."""
    update: dict[str, Any] = {"mode": TaskMode.LLM} | ({"model": model} if model else {})
    phases = settings.phases.model_copy(
        update={
            name: getattr(settings.phases, name).model_copy(update=update) for name in LLM_PHASES
        }
    )
    return settings.model_copy(update={"phases": phases, "llm_base_url": base_url})


@contextlib.contextmanager
def _chat_settings(settings: Settings, options: ChatOptions) -> Iterator[Settings]:
    if not options.llm:
        yield settings
        return
    from streams.local_llm import MODEL_ALIAS, ensure_local_llm

    model = None if settings.llm_base_url else MODEL_ALIAS  # the local server's one model
    with ensure_local_llm(settings) as base_url:
        print(f"llm mode: the LLM phases use {base_url}", flush=True)
        yield _patient(llm_mode(settings, base_url, model))


def _patient(settings: Settings) -> Settings:
    """The chat's own worker waits out the slowest turn its LLM settings allow before the
    stall watchdog drives it again (a worker refuses a shorter ``turn_stall_s``, see
    ``processors.llm_budget``); said on screen, since it changes a setting."""
    from processors.llm_budget import turn_llm_budget

    needed = turn_llm_budget(settings).seconds + STALL_MARGIN_S
    if settings.turn_stall_s >= needed:
        return settings
    print(f"turn_stall_s raised to {needed:g} s for llm mode (was {settings.turn_stall_s:g} s)")
    return settings.model_copy(update={"turn_stall_s": needed})


def run_chat(settings: Settings, options: ChatOptions, read: Callable[[str], str] = input) -> int:
    """The shell; returns the exit code (0 on /quit, Ctrl-D and Ctrl-C)."""
    if options.llm:
        options = dataclasses.replace(options, worker=True)
    with _chat_settings(settings, options) as chosen, BackgroundLoop() as loop:
        session = loop.run(ChatSession.open(chosen, options))
        try:
            print(
                f"chat with {options.tenant}/{options.agent} as webchat:{session.channel_id}"
                f"{f' (customer {options.customer_id})' if options.customer_id else ''}"
                "; /help for commands, Ctrl-D to leave",
                flush=True,
            )
            _shell(session, loop, read)
        except KeyboardInterrupt:
            print(flush=True)
        finally:
            with contextlib.suppress(KeyboardInterrupt):
                loop.run(session.close())
    print("bye", flush=True)
    return 0


def _shell(session: ChatSession, loop: BackgroundLoop, read: Callable[[str], str]) -> None:
    while True:
        try:
            line = read(PROMPT).strip()
        except EOFError:
            print(flush=True)
            return
        if not line:
            continue
        if line.startswith("/"):
            command = line.split()[0].lower()
            if command in ("/quit", "/exit"):
                return
            if command == "/help":
                output = [HELP]
            elif command == "/details":
                output = loop.run(session.details())
            elif command == "/new":
                output = [session.new()]
            else:
                output = [f"unknown command {command}; /help lists them"]
        else:
            output = loop.run(session.say(line))
        print("\n".join(output), flush=True)


def main(settings: Settings, options: ChatOptions) -> int:
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401  (line editing and history for input())
    return run_chat(settings, options)
