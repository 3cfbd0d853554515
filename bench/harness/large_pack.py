"""A valid agent pack of any size, for the noisy-neighbour bench and test: ``intents``
intents of ``examples`` generated sentences each, plus a description (every text distinct).

Why generated: the pack of issue 20 (837 KB, 1,512 intents, 10,770 texts) was a tenant's;
what matters for the worker is how many texts it embeds and how long they are (8 to 14
words, ~75 bytes, like that pack's), not what they say. Seeded, so a size is reproducible.
"""

from __future__ import annotations

import random
from pathlib import Path

import yaml

WORDS = [
    "account",
    "address",
    "after",
    "again",
    "appointment",
    "arrive",
    "balance",
    "bill",
    "booking",
    "broken",
    "cancel",
    "card",
    "change",
    "charge",
    "contract",
    "credit",
    "customer",
    "damaged",
    "date",
    "delivery",
    "device",
    "discount",
    "email",
    "error",
    "fee",
    "forgot",
    "help",
    "invoice",
    "item",
    "late",
    "login",
    "meter",
    "missing",
    "money",
    "month",
    "move",
    "number",
    "offer",
    "order",
    "package",
    "parcel",
    "password",
    "payment",
    "plan",
    "please",
    "price",
    "problem",
    "receipt",
    "refund",
    "reminder",
    "renew",
    "replace",
    "return",
    "schedule",
    "service",
    "ship",
    "shipping",
    "still",
    "subscription",
    "support",
    "tariff",
    "tomorrow",
    "tracking",
    "transfer",
    "update",
    "upgrade",
    "voucher",
    "wait",
    "warranty",
    "week",
    "wrong",
    "yesterday",
]


def texts_of(intents: int, examples: int) -> int:
    """How many texts a pack of that shape makes retrieval embed (examples + description)."""
    return intents * (examples + 1)


def _sentence(rng: random.Random, n: int) -> str:
    words = rng.choices(WORDS, k=rng.randint(8, 14))
    return f"{' '.join(words).capitalize()} {n}"


def write_large_pack(
    dest: Path, tenant: str, agent: str, *, intents: int, examples: int = 6, seed: int = 20
) -> Path:
    """Write the pack to ``dest/<tenant>/<agent>`` (agent.yaml and intents.yaml) and return
    that folder. The trailing number makes each sentence distinct."""
    rng = random.Random(seed)
    folder = dest / tenant / agent
    folder.mkdir(parents=True, exist_ok=True)
    agent_yaml = {"tenant_id": tenant, "agent_id": agent, "name": f"{tenant} {agent}"}
    (folder / "agent.yaml").write_text(yaml.safe_dump(agent_yaml, sort_keys=False))
    counter = iter(range(1, texts_of(intents, examples) + 1))
    listed = [
        {
            "id": f"intent_{i:05d}",
            "description": _sentence(rng, next(counter)),
            "examples": [_sentence(rng, next(counter)) for _ in range(examples)],
        }
        for i in range(intents)
    ]
    (folder / "intents.yaml").write_text(yaml.safe_dump({"intents": listed}, sort_keys=False))
    return folder
