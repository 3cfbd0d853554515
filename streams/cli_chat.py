"""``turnstream chat``: an interactive shell over one open client (``streams/chat.py``).

Registering it imports nothing heavy: the handler imports the client (and the worker, with
``--worker``) when it runs.
"""

from __future__ import annotations

import argparse

from streams.settings import load_settings

Subparsers = argparse._SubParsersAction  # argparse has no public name for it


def register(subparsers: Subparsers[argparse.ArgumentParser]) -> None:
    chat = subparsers.add_parser(
        "chat",
        help="talk to an agent in an interactive shell (/details, /new, /help, /quit)",
        description="Each line is one customer message on one webchat session; the answer is "
        "printed when the pipeline responds. Needs a running `turnstream worker` with the "
        "agent's pack loaded, or --worker.",
    )
    chat.add_argument("--tenant", required=True)
    chat.add_argument("--agent", required=True)
    chat.add_argument(
        "--channel-id", help="the customer's address on the channel (default: a random one)"
    )
    chat.add_argument("--customer-id", help="set when the gateway knows the customer")
    chat.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to wait for an answer (default 60)"
    )
    chat.add_argument(
        "--worker",
        action="store_true",
        help="start a worker in this process (the agent's pack must be loaded)",
    )
    chat.add_argument(
        "--llm",
        action="store_true",
        help="llm mode: implies --worker, whose LLM phases use TURNSTREAM_LLM_BASE_URL or the "
        "local llama.cpp server (found or started, see `turnstream llm serve`)",
    )
    chat.set_defaults(handler=_chat)


def _chat(args: argparse.Namespace) -> int:
    from streams.chat import ChatOptions, main

    options = ChatOptions(
        tenant=args.tenant,
        agent=args.agent,
        channel_id=args.channel_id,
        customer_id=args.customer_id,
        timeout_s=args.timeout,
        worker=args.worker,
        llm=args.llm,
    )
    return main(load_settings(), options)
