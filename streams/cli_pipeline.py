"""``turnstream worker | send | demo``: run the pipeline, talk to it, show it.

The handlers import the pipeline (Faust, torch, Qdrant) themselves: registering these
commands must stay cheap for every other command (see ``streams/cli.py``).
"""

from __future__ import annotations

import argparse
import asyncio

from schemas.domain.turn_input import Channel
from streams.cli_errors import CliError
from streams.roles import ROLES, Role
from streams.settings import load_settings

Subparsers = argparse._SubParsersAction  # argparse has no public name for it


def register(subparsers: Subparsers[argparse.ArgumentParser]) -> None:
    worker = subparsers.add_parser("worker", help="run the turn pipeline, or one role of it")
    worker.add_argument(
        "--role",
        default=Role.ALL.value,
        choices=ROLES,
        help="which stages this process runs (default: all; see streams/roles.py)",
    )
    worker.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    worker.set_defaults(handler=_worker)

    send = subparsers.add_parser("send", help="send one customer message and print the answer")
    send.add_argument("message")
    send.add_argument("--tenant", required=True)
    send.add_argument("--agent", required=True)
    send.add_argument(
        "--channel", default=Channel.WEBCHAT.value, choices=[c.value for c in Channel]
    )
    send.add_argument("--channel-id", required=True, help="the customer's address on the channel")
    send.add_argument("--customer-id", help="set when the gateway knows the customer")
    send.add_argument("--timeout", type=float, default=60.0, help="seconds to wait (default 60)")
    send.set_defaults(handler=_send)

    demo = subparsers.add_parser(
        "demo",
        help="local broker, example pack, a worker, and a scripted refund conversation",
    )
    demo.add_argument(
        "--llm",
        action="store_true",
        help="the LLM phases in llm mode: TURNSTREAM_LLM_BASE_URL, else the local model "
        "(turnstream llm serve; slow, and a 135M model answers poorly)",
    )
    demo.set_defaults(handler=_demo)


def _worker(args: argparse.Namespace) -> int:
    from streams.log_setup import configure_worker_logging
    from streams.worker import run_worker

    settings = load_settings()
    configure_worker_logging(args.log_level, settings.log_repeat_s)
    asyncio.run(run_worker(settings, Role(args.role)))  # KafkaUnreachableError: one line
    return 0


def _send(args: argparse.Namespace) -> int:
    from schemas.domain.turn_input import TurnInput
    from streams.turn_client import TurnClient

    settings = load_settings()
    given = TurnInput(
        tenant_id=args.tenant,
        agent_id=args.agent,
        channel=Channel(args.channel),
        channel_id=args.channel_id,
        customer_id=args.customer_id,
        message=args.message,
    )

    async def ask() -> int:
        async with TurnClient(settings) as client:
            try:
                response = await client.ask(given, timeout=args.timeout)
            except TimeoutError:
                raise CliError(
                    f"no response within {args.timeout:g} s",
                    "is a `turnstream worker` running on this cluster and topic prefix? "
                    "(--timeout waits longer)",
                    code=3,
                ) from None
        if response.error is not None:
            if response.error.code == "unknown_agent":
                raise CliError(
                    f"unknown agent: {response.error.message}",
                    "load its pack first: `turnstream pack load packs/<tenant>/<agent>`",
                )
            print(f"error: {response.error.code}: {response.error.message}")
            return 1
        print(response.text)
        print("  " + "  ".join(f"{k} {v:.1f} ms" for k, v in response.timings_ms.items()))
        return 0

    return asyncio.run(ask())


def _demo(args: argparse.Namespace) -> int:
    from streams import demo

    settings = load_settings()
    if not args.llm:
        return demo.main(settings)
    from processors.llm_budget import turn_llm_budget
    from streams.chat import llm_mode
    from streams.local_llm import MODEL_ALIAS, ensure_local_llm

    model = None if settings.llm_base_url else MODEL_ALIAS  # the local server's one model
    with ensure_local_llm(settings) as base_url:
        print(f"llm mode: the LLM phases use {base_url}", flush=True)
        chosen = llm_mode(settings, base_url, model)
        stall = max(chosen.turn_stall_s, turn_llm_budget(chosen).seconds + 5.0)
        return demo.main(chosen.model_copy(update={"turn_stall_s": stall}))
