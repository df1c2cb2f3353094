"""Qdrant Edge: the Qdrant engine embedded in this process (the default backend).

Edge has no background optimizer: until ``optimize()`` runs, dense search is brute force,
so ingest calls it at the end of a run. BM25 and filtered search are fast either way.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import qdrant_edge as qe

from docmem.schema import KIND_DOCUMENT, KIND_NOTE, Chunk, embed_text_of as _embed_text
from docmem.store.base import (
    DENSE, INTEGER_FIELDS, KEYWORD_FIELDS, SECTION_FIELDS, SPARSE, FusionSpec, Scored, Section, SparseVec,
    VectorQuery, in_stable_order,
)
from docmem.threads import signals_to_main

log = logging.getLogger(__name__)

_SCROLL_PAGE = 512


def _path_filter(paths: Sequence[str] | None, extra: list[Any] | None = None) -> qe.Filter | None:
    must: list[Any] = list(extra or [])
    if paths is not None:
        must.append(qe.FieldCondition("path", match=qe.MatchAny(list(paths))))
    return qe.Filter(must=must) if must else None


def _visible(notes_scope: str | None) -> Any:
    """Documents always; agent notes only of the given scope."""
    documents = qe.FieldCondition("kind", match=qe.MatchValue(KIND_DOCUMENT))
    if notes_scope is None:
        return documents
    notes = qe.Filter(must=[qe.FieldCondition("kind", match=qe.MatchValue(KIND_NOTE)),
                            qe.FieldCondition("scope", match=qe.MatchValue(notes_scope))])
    return qe.Filter(should=[documents, notes])


def _vector(v: SparseVec | list[float]) -> Any:
    return qe.SparseVector(v.indices, v.values) if isinstance(v, SparseVec) else list(v)


class EdgeStore:
    """An ``ArchivalStore`` on one Qdrant Edge shard directory."""

    def __init__(self, path: Path, dense_dim: int | None) -> None:
        self.path = path
        self.dense_dim = dense_dim
        vectors = (
            {DENSE: qe.EdgeVectorParams(size=dense_dim, distance=qe.Distance.Cosine)}
            if dense_dim else {}
        )
        config = qe.EdgeConfig(
            vectors=vectors,
            sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
        )
        exists = (path / "segments").exists() or (path / "wal").exists()
        if not exists:
            path.mkdir(parents=True, exist_ok=True)
        with signals_to_main():  # the shard's search threads start here
            self.shard = qe.EdgeShard.load(str(path)) if exists else qe.EdgeShard.create(str(path), config)
        if not exists:
            for name in KEYWORD_FIELDS:
                self.shard.update(qe.UpdateOperation.create_field_index(name, qe.PayloadSchemaType.Keyword))
            for name in INTEGER_FIELDS:
                self.shard.update(qe.UpdateOperation.create_field_index(name, qe.PayloadSchemaType.Integer))

    # -- writes ---------------------------------------------------------------

    def upsert(
        self, chunks: Sequence[Chunk], sparse: Sequence[SparseVec],
        dense: Sequence[list[float]] | None = None,
    ) -> None:
        points = []
        for i, chunk in enumerate(chunks):
            vector: dict[str, Any] = {SPARSE: _vector(sparse[i])}
            if dense is not None:
                vector[DENSE] = list(dense[i])
            points.append(qe.Point(chunk.point_id, vector, chunk.payload()))
        if points:
            self.shard.update(qe.UpdateOperation.upsert_points(points))

    def delete_paths(self, paths: Sequence[str]) -> None:
        if paths:
            self.shard.update(qe.UpdateOperation.delete_points_by_filter(_path_filter(paths)))

    def delete_scope(self, scope: str) -> None:
        self.shard.update(qe.UpdateOperation.delete_points_by_filter(
            qe.Filter(must=[qe.FieldCondition("scope", match=qe.MatchValue(scope))])))

    def set_dense(self, point_ids: Sequence[str], vectors: Sequence[list[float]]) -> None:
        ops = [qe.PointVectors(pid, {DENSE: list(v)}) for pid, v in zip(point_ids, vectors)]
        if ops:
            self.shard.update(qe.UpdateOperation.update_vectors(ops))

    # -- reads ----------------------------------------------------------------

    def _missing_dense_filter(self) -> qe.Filter:
        return qe.Filter(must_not=[qe.HasVectorCondition(DENSE)])

    def missing_dense(self, limit: int) -> list[tuple[str, str]]:
        if not self.dense_dim:
            return []
        records, _ = self.shard.scroll(qe.ScrollRequest(
            limit=limit, filter=self._missing_dense_filter(),
            with_payload=qe.PayloadSelector.Include(["text", "title", "headings"]), with_vector=False,
        ))
        return [(str(r.id), _embed_text(r.payload or {})) for r in records]

    def lacking_dense(self, point_ids: Sequence[str]) -> list[str]:
        if not self.dense_dim or not point_ids:
            return []
        records, _ = self.shard.scroll(qe.ScrollRequest(
            limit=len(point_ids), with_payload=False, with_vector=False,
            filter=qe.Filter(must=[qe.HasIdCondition(set(point_ids))], must_not=[qe.HasVectorCondition(DENSE)]),
        ))
        return [str(r.id) for r in records]

    def count(self, paths: Sequence[str] | None = None, missing_dense: bool = False) -> int:
        extra = [qe.Filter(must_not=[qe.HasVectorCondition(DENSE)])] if missing_dense else None
        if missing_dense and not self.dense_dim:
            return 0
        return self.shard.count(qe.CountRequest(filter=_path_filter(paths, extra), exact=True))

    def query(
        self, lists: Sequence[VectorQuery], fusion: FusionSpec | None, limit: int,
        paths: Sequence[str] | None = None, notes_scope: str | None = None,
    ) -> list[Scored]:
        flt = _path_filter(paths, [_visible(notes_scope)])
        if len(lists) == 1:
            only = lists[0]
            request = qe.QueryRequest(
                limit=limit, query=qe.Query.Nearest(_vector(only.vector), using=only.using),
                filter=flt, with_payload=False, with_vector=False,
            )
        else:
            assert fusion is not None
            prefetches = [
                qe.Prefetch(limit=q.limit, query=qe.Query.Nearest(_vector(q.vector), using=q.using),
                            filter=flt)
                for q in lists
            ]
            method = (
                qe.Fusion.Dbsf() if fusion.method == "dbsf"
                else qe.Fusion.Rrf(k=fusion.k, weights=list(fusion.weights) if fusion.weights else None)
            )
            request = qe.QueryRequest(limit=limit, prefetches=prefetches, query=method,
                                      with_payload=False, with_vector=False)
        return in_stable_order([Scored(str(p.id), float(p.score)) for p in self.shard.query(request)])

    def candidates(
        self, lists: Sequence[VectorQuery], paths: Sequence[str] | None = None,
        notes_scope: str | None = None,
    ) -> list[list[Scored]]:
        flt = _path_filter(paths, [_visible(notes_scope)])
        requests = [qe.QueryRequest(limit=q.limit, query=qe.Query.Nearest(_vector(q.vector), using=q.using),
                                    filter=flt, with_payload=False, with_vector=False) for q in lists]
        return [[Scored(str(p.id), float(p.score)) for p in points]
                for points in self.shard.query_batch(qe.QueryBatchRequest(requests))]

    def sections(self, point_ids: Sequence[str]) -> dict[str, Section]:
        records = self.shard.retrieve(list(point_ids), with_payload=qe.PayloadSelector.Include(SECTION_FIELDS),
                                      with_vector=False) if point_ids else []
        return {str(r.id): ((r.payload or {}).get("path", ""), tuple((r.payload or {}).get("headings") or ()))
                for r in records}

    def retrieve(self, point_ids: Sequence[str]) -> dict[str, Chunk]:
        if not point_ids:
            return {}
        records = self.shard.retrieve(list(point_ids), with_payload=True, with_vector=False)
        return {str(r.id): Chunk.from_payload(r.payload or {}) for r in records}

    def _scroll_all(self, flt: qe.Filter) -> list[Chunk]:
        out: list[Chunk] = []
        offset = None
        while True:
            records, offset = self.shard.scroll(qe.ScrollRequest(
                offset=offset, limit=_SCROLL_PAGE, filter=flt, with_payload=True, with_vector=False,
            ))
            out.extend(Chunk.from_payload(r.payload or {}) for r in records)
            if offset is None:
                return out

    def by_chunk_ids(self, chunk_ids: Sequence[str]) -> list[Chunk]:
        if not chunk_ids:
            return []
        found = {c.id: c for c in self._scroll_all(
            qe.Filter(must=[qe.FieldCondition("chunk_id", match=qe.MatchAny(list(chunk_ids)))]))}
        return [found[c] for c in chunk_ids if c in found]

    def neighbours(self, path: str, first: int, last: int) -> list[Chunk]:
        flt = qe.Filter(must=[
            qe.FieldCondition("path", match=qe.MatchValue(path)),
            qe.FieldCondition("index", range=qe.RangeFloat(gte=first, lte=last)),
        ])
        return sorted(self._scroll_all(flt), key=lambda c: c.index)

    def on_page(self, path: str, page: int) -> list[Chunk]:
        flt = qe.Filter(must=[
            qe.FieldCondition("path", match=qe.MatchValue(path)),
            qe.FieldCondition("page", range=qe.RangeFloat(lte=page)),
            qe.FieldCondition("page_end", range=qe.RangeFloat(gte=page)),
        ])
        return sorted(self._scroll_all(flt), key=lambda c: c.index)

    def flush(self) -> None:
        self.shard.flush()

    def optimize(self) -> None:
        self.shard.optimize()

    def close(self) -> None:
        self.shard.close()
