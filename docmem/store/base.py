"""The backend-neutral shape of archival storage and of a query against it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

from docmem.schema import Chunk

SPARSE = "bm25"
DENSE = "dense"

# Payload fields with an index: filters and look-ups on them stay fast at scale.
KEYWORD_FIELDS = ("path", "chunk_id", "doc_hash", "kind", "scope")
INTEGER_FIELDS = ("index", "page", "page_end")


@dataclass(frozen=True)
class SparseVec:
    indices: list[int]
    values: list[float]


@dataclass(frozen=True)
class VectorQuery:
    """One ranked list: a query vector against one named vector."""

    using: str  # SPARSE or DENSE
    vector: SparseVec | list[float]
    limit: int


@dataclass(frozen=True)
class FusionSpec:
    """How two ranked lists become one: weighted RRF or DBSF (Qdrant's own fusions)."""

    method: str = "rrf"  # "rrf" | "dbsf" (both also in docmem.ranking) | "linear" (docmem.ranking only)
    k: int = 60
    weights: tuple[float, ...] | None = None  # per list, in prefetch order


Prefetch = VectorQuery


@dataclass(frozen=True)
class Scored:
    point_id: str
    score: float


# What ranking needs to group points by section (small: the text stays on disk).
SECTION_FIELDS = ["path", "headings"]

Section = tuple[str, tuple[str, ...]]  # (path, heading path)


def in_stable_order(points: Sequence[Scored]) -> list[Scored]:
    """Best first, ties by point id: Qdrant's RRF returns tied scores in hash-map order, which
    changes between calls, and each page is its own call, so without this page 2 could repeat
    a page-1 hit."""
    return sorted(points, key=lambda s: (-s.score, s.point_id))


class ArchivalStore(Protocol):
    """What ingest, search and the agent need from a Qdrant collection."""

    dense_dim: int | None

    def upsert(
        self, chunks: Sequence[Chunk], sparse: Sequence[SparseVec],
        dense: Sequence[list[float]] | None = None,
    ) -> None: ...

    def delete_paths(self, paths: Sequence[str]) -> None: ...

    def set_dense(self, point_ids: Sequence[str], vectors: Sequence[list[float]]) -> None: ...

    def missing_dense(self, limit: int) -> list[tuple[str, str]]:
        """(point id, text) of chunks that have no dense vector yet."""
        ...

    def count(self, paths: Sequence[str] | None = None, missing_dense: bool = False) -> int: ...

    def lacking_dense(self, point_ids: Sequence[str]) -> list[str]:
        """Those of ``point_ids`` that have no dense vector yet (found by id, not by a scan)."""
        ...

    def query(
        self, lists: Sequence[VectorQuery], fusion: FusionSpec | None, limit: int,
        paths: Sequence[str] | None = None, notes_scope: str | None = None,
    ) -> list[Scored]:
        """Documents, plus the agent notes of ``notes_scope`` (no notes when None)."""
        ...

    def candidates(
        self, lists: Sequence[VectorQuery], paths: Sequence[str] | None = None,
        notes_scope: str | None = None,
    ) -> list[list[Scored]]:
        """Each list on its own (one batched call), best first, for fusion in docmem."""
        ...

    def sections(self, point_ids: Sequence[str]) -> dict[str, Section]:
        """Each point's (path, headings), for ordering a result list by section."""
        ...

    def delete_scope(self, scope: str) -> None:
        """Forget the agent notes of one scope."""
        ...

    def retrieve(self, point_ids: Sequence[str]) -> dict[str, Chunk]:
        """Chunks by the id the store holds them under (a point written by an older docmem has
        an id that ``Chunk.point_id`` no longer yields)."""
        ...

    def by_chunk_ids(self, chunk_ids: Sequence[str]) -> list[Chunk]: ...

    def neighbours(self, path: str, first: int, last: int) -> list[Chunk]:
        """Chunks of one document with first <= index <= last, in order."""
        ...

    def on_page(self, path: str, page: int) -> list[Chunk]:
        """Chunks of one document that start on or span the given page, in order."""
        ...

    def flush(self) -> None: ...

    def optimize(self) -> None: ...

    def close(self) -> None: ...
