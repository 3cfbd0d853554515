"""The Qdrant adapter behind ``processors.retrieval.ports.VectorIndex``.

Collection layout depends on the mode, because local mode (``path`` / ``:memory:``) ignores
payload indexes and scans every point of a collection on a filtered search:

- **per-scope** (local default): one collection per tenant, agent and type,
  ``{prefix}__{tenant}__{agent}__{type}``; memories are split further into ``buckets``
  collections per agent by a hash of the customer id, ``...__memories__b{NNN}``, so a
  customer's search scans only its bucket.
- **shared** (server default): one collection per type, ``{prefix}__{type}``, with keyword
  payload indexes on tenant_id (``is_tenant``), agent_id and customer_id.

Every query filters on tenant_id and agent_id (and customer_id for memories) in both
layouts: isolation never rests on collection names alone. Point ids are UUID5 of
(tenant, agent, type, customer, object id), so the same object id in two tenants never
collides. Local mode is not thread-safe, so calls on a local client are serialised.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import threading
import uuid
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models

from processors.embedding import Vector, Vectors, normalize_rows
from processors.retrieval.descriptors import descriptor
from processors.retrieval.model import IndexItem, Scope, StoredDoc, VectorHit
from schemas.settings import Settings

_POINT_NS = uuid.UUID("5d1f3c1e-8a52-4c0e-9b8e-6f1f7f2a0b11")
_SAFE_PART = re.compile(r"[a-z0-9-]{1,48}")
_SCROLL_PAGE = 1024


class Layout(StrEnum):
    PER_SCOPE = "per_scope"
    SHARED = "shared"


def name_part(raw: str) -> str:
    """A collection-name-safe, collision-free rendering of an id: kept as is when it is
    short, lowercase ``[a-z0-9-]``; otherwise a slug plus ``_`` and a hash of the raw id
    (``_`` never appears in a kept part, so two ids never map to one name)."""
    if _SAFE_PART.fullmatch(raw):
        return raw
    slug = re.sub(r"[^a-z0-9-]+", "-", raw.lower()).strip("-")[:32] or "x"
    return f"{slug}_{hashlib.sha256(raw.encode()).hexdigest()[:10]}"


def point_id(scope: Scope, object_id: str) -> str:
    key = "\x1f".join(
        (scope.tenant_id, scope.agent_id, scope.rtype.value, scope.customer_id or "", object_id)
    )
    return str(uuid.uuid5(_POINT_NS, key))


class VectorStore:
    """Upsert, delete and search points of one scope at a time (see the module docstring)."""

    def __init__(
        self,
        client: QdrantClient,
        dim: int,
        *,
        layout: Layout,
        local: bool,
        prefix: str = "ts",
        memory_buckets: int = 64,
    ) -> None:
        if memory_buckets < 1:
            raise ValueError("memory_buckets must be >= 1")
        self._client = client
        self._dim = dim
        self._layout = layout
        self._local = local
        self._prefix = name_part(prefix)
        self._buckets = memory_buckets
        self._known: set[str] = set()
        self._lock: contextlib.AbstractContextManager[Any] = (
            threading.RLock() if local else contextlib.nullcontext()
        )

    @classmethod
    def local(cls, path: str | Path, dim: int, **kwargs: Any) -> VectorStore:
        """Local mode on a data directory (one process only may open it)."""
        kwargs.setdefault("layout", Layout.PER_SCOPE)
        return cls(QdrantClient(path=str(path)), dim, local=True, **kwargs)

    @classmethod
    def memory(cls, dim: int, **kwargs: Any) -> VectorStore:
        kwargs.setdefault("layout", Layout.PER_SCOPE)
        return cls(QdrantClient(location=":memory:"), dim, local=True, **kwargs)

    @classmethod
    def server(
        cls, url: str, dim: int, *, api_key: str | None = None, **kwargs: Any
    ) -> VectorStore:
        kwargs.setdefault("layout", Layout.SHARED)
        return cls(QdrantClient(url=url, api_key=api_key), dim, local=False, **kwargs)

    @classmethod
    def from_settings(cls, settings: Settings, dim: int) -> VectorStore:
        """The Qdrant server at ``qdrant_url`` if set, else local mode under ``data_dir``."""
        if settings.qdrant_url:
            return cls.server(settings.qdrant_url, dim)
        return cls.local(settings.data_dir / "qdrant", dim)

    def close(self) -> None:
        with self._lock:
            self._client.close()

    def collection(self, scope: Scope) -> str:
        if self._layout is Layout.SHARED:
            return f"{self._prefix}__{scope.rtype.value}"
        name = f"{self._prefix}__{name_part(scope.tenant_id)}__{name_part(scope.agent_id)}"
        name += f"__{scope.rtype.value}"
        if descriptor(scope.rtype).customer_scoped:
            digest = hashlib.sha256((scope.customer_id or "").encode()).digest()
            name += f"__b{int.from_bytes(digest[:8], 'big') % self._buckets:03d}"
        return name

    # --- writes -------------------------------------------------------------------------

    def upsert(self, scope: Scope, items: Sequence[IndexItem], vectors: Vectors) -> None:
        if len(items) != len(vectors):
            raise ValueError("one vector per item")
        if not items:
            return
        if vectors.shape[1] != self._dim:
            raise ValueError(f"vectors have dim {vectors.shape[1]}, the store {self._dim}")
        points = [
            models.PointStruct(
                id=point_id(scope, item.object_id),
                vector=vec.astype(float).tolist(),
                payload={
                    **_scope_payload(scope),
                    "object_id": item.object_id,
                    "group": item.group_id,
                    "text": item.text,
                    "content_hash": item.content_hash,
                    "data": dict(item.payload),
                },
            )
            for item, vec in zip(items, vectors, strict=True)
        ]
        with self._lock:
            name = self._ensure(scope)
            self._client.upsert(name, points=points, wait=True)

    def delete(self, scope: Scope, object_ids: Sequence[str]) -> None:
        if not object_ids:
            return
        with self._lock:
            name = self.collection(scope)
            if not self._exists(name):
                return
            ids: list[models.ExtendedPointId] = [point_id(scope, o) for o in object_ids]
            selector = models.FilterSelector(
                filter=models.Filter(
                    must=[*_scope_conditions(scope), models.HasIdCondition(has_id=ids)]
                )
            )
            self._client.delete(name, points_selector=selector, wait=True)

    # --- reads --------------------------------------------------------------------------

    def hashes(self, scope: Scope) -> dict[str, str]:
        return {
            p["object_id"]: p["content_hash"]
            for p in self._scroll(scope, ["object_id", "content_hash"])
        }

    def documents(self, scope: Scope) -> list[StoredDoc]:
        return [
            StoredDoc(p["object_id"], p["group"], p["text"])
            for p in self._scroll(scope, ["object_id", "group", "text"])
        ]

    def search(self, scope: Scope, vector: Vector, limit: int) -> list[VectorHit]:
        with self._lock:
            name = self.collection(scope)
            if limit <= 0 or not self._exists(name):
                return []
            response = self._client.query_points(
                name,
                query=np.asarray(vector, dtype=float).tolist(),
                query_filter=_scope_filter(scope),
                limit=limit,
                with_payload=True,
            )
        return [_hit(p.payload or {}, float(p.score)) for p in response.points]

    def lookup(self, scope: Scope, vector: Vector, object_ids: Sequence[str]) -> list[VectorHit]:
        with self._lock:
            name = self.collection(scope)
            if not object_ids or not self._exists(name):
                return []
            records = self._client.retrieve(
                name,
                ids=[point_id(scope, o) for o in object_ids],
                with_payload=True,
                with_vectors=True,
            )
        query = np.asarray(vector, dtype=np.float32)
        hits = []
        for rec in records:
            payload = rec.payload or {}
            if not _in_scope(payload, scope) or not isinstance(rec.vector, list):
                continue
            stored = np.asarray(rec.vector, dtype=np.float32)
            norm = float(np.linalg.norm(stored)) or 1.0
            hits.append(_hit(payload, float(query @ stored) / norm))
        return hits

    def points(self, scope: Scope) -> tuple[list[VectorHit], Vectors]:
        """Every point of a scope with its vector (scores 0): what an in-memory snapshot of a
        small scope is built from (``processors.retrieval.snapshot_index``)."""
        hits: list[VectorHit] = []
        rows: list[np.ndarray[Any, np.dtype[np.float32]]] = []
        with self._lock:
            name = self.collection(scope)
            if not self._exists(name):
                return hits, np.zeros((0, self._dim), dtype=np.float32)
            offset = None
            while True:
                records, offset = self._client.scroll(
                    name,
                    scroll_filter=_scope_filter(scope),
                    limit=_SCROLL_PAGE,
                    offset=offset,
                    with_payload=True,
                    with_vectors=True,
                )
                for rec in records:
                    vector = np.asarray(rec.vector, dtype=np.float32)
                    if vector.shape == (self._dim,):
                        hits.append(_hit(rec.payload or {}, 0.0))
                        rows.append(vector)
                if offset is None:
                    break
        matrix = np.stack(rows) if rows else np.zeros((0, self._dim), dtype=np.float32)
        return hits, normalize_rows(matrix) if len(rows) else matrix

    # --- internals ----------------------------------------------------------------------

    def _scroll(self, scope: Scope, fields: list[str]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        with self._lock:
            name = self.collection(scope)
            if not self._exists(name):
                return out
            offset = None
            while True:
                records, offset = self._client.scroll(
                    name,
                    scroll_filter=_scope_filter(scope),
                    limit=_SCROLL_PAGE,
                    offset=offset,
                    with_payload=fields,
                    with_vectors=False,
                )
                out.extend(rec.payload or {} for rec in records)
                if offset is None:
                    return out

    def _exists(self, name: str) -> bool:
        if name in self._known:
            return True
        if self._client.collection_exists(name):
            self._known.add(name)
            return True
        return False

    def _ensure(self, scope: Scope) -> str:
        name = self.collection(scope)
        if self._exists(name):
            return name
        self._client.create_collection(
            name,
            vectors_config=models.VectorParams(size=self._dim, distance=models.Distance.COSINE),
        )
        if not self._local:
            self._client.create_payload_index(
                name,
                "tenant_id",
                field_schema=models.KeywordIndexParams(
                    type=models.KeywordIndexType.KEYWORD, is_tenant=True
                ),
            )
            for field in ("agent_id", "customer_id"):
                self._client.create_payload_index(
                    name, field, field_schema=models.PayloadSchemaType.KEYWORD
                )
        self._known.add(name)
        return name


def _scope_payload(scope: Scope) -> dict[str, str]:
    payload = {"tenant_id": scope.tenant_id, "agent_id": scope.agent_id}
    if scope.customer_id is not None:
        payload["customer_id"] = scope.customer_id
    return payload


def _scope_conditions(scope: Scope) -> list[models.Condition]:
    return [
        models.FieldCondition(key=key, match=models.MatchValue(value=value))
        for key, value in _scope_payload(scope).items()
    ]


def _scope_filter(scope: Scope) -> models.Filter:
    return models.Filter(must=_scope_conditions(scope))


def _in_scope(payload: dict[str, Any], scope: Scope) -> bool:
    return all(payload.get(k) == v for k, v in _scope_payload(scope).items())


def _hit(payload: dict[str, Any], score: float) -> VectorHit:
    return VectorHit(
        object_id=payload["object_id"],
        group_id=payload.get("group") or payload["object_id"],
        text=payload.get("text", ""),
        score=score,
        payload=payload.get("data") or {},
    )
