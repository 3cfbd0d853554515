"""Embed every recorded message once, in batches, before the replay runs its turns.

A turn embeds the customer's message alone (the P4.1 query), and a replay knows every
message in advance: embedding them in batches of :data:`BATCH` is several times cheaper per
text than one model call per turn (what the worker's embed batcher does across concurrent
turns). Texts not embedded in advance (another query text) go to the model as before.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from processors.embedding import Embedder, Vectors

BATCH = 64


@dataclass
class PrefetchedEmbedder:
    """An :class:`Embedder` that answers known texts from a table filled by :meth:`prefetch`."""

    inner: Embedder
    known: dict[str, Vectors] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    def prefetch(self, texts: Iterable[str]) -> None:
        todo = sorted({t for t in texts if t not in self.known})
        for start in range(0, len(todo), BATCH):
            chunk = todo[start : start + BATCH]
            for text, vector in zip(chunk, self.inner.embed(chunk), strict=True):
                self.known[text] = vector

    def embed(self, texts: Sequence[str]) -> Vectors:
        if texts and all(t in self.known for t in texts):
            return np.stack([self.known[t] for t in texts])
        return self.inner.embed(texts)
