"""``turnstream llm serve``: the packaged small model (or any GGUF file) behind llama.cpp's
OpenAI-compatible server on loopback, for development and tests (``streams/local_llm.py``).

Point a worker at it with ``TURNSTREAM_LLM_BASE_URL=http://127.0.0.1:18080/v1`` and the
phases' ``mode=llm``; ``--llm`` commands find or start it themselves.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from streams.settings import load_settings

Subparsers = argparse._SubParsersAction  # argparse has no public name for it


def register(subparsers: Subparsers[argparse.ArgumentParser]) -> None:
    llm = subparsers.add_parser("llm", help="the local model server for llm mode")
    commands = llm.add_subparsers(dest="llm_command", required=True)
    serve = commands.add_parser(
        "serve", help="serve the packaged SmolLM2-135M (or --model) on loopback until Ctrl-C"
    )
    serve.add_argument("--model", type=Path, help="a GGUF file (default: the packaged model)")
    serve.add_argument(
        "--port", type=int, help="loopback port (default TURNSTREAM_LOCAL_LLM_PORT, 18080)"
    )
    serve.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    from streams.local_llm import serve

    return serve(load_settings(), args.model, args.port)
