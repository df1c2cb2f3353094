"""A Qdrant server or cluster through qdrant-client (``--qdrant-url``).

Same points and payload as the embedded backend. BM25 sparse vectors are computed by
docmem (the same ``qdrant_edge.Bm25`` everywhere) and sent with the IDF modifier, so the
server needs no inference service. Tests run this against qdrant-client's local mode.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

from docmem.errors import DocmemError
from docmem.schema import KIND_DOCUMENT, KIND_NOTE, Chunk, embed_text_of as _embed_text
from docmem.store.base import (
    DENSE, INTEGER_FIELDS, KEYWORD_FIELDS, SECTION_FIELDS, SPARSE, FusionSpec, Scored, Section, SparseVec,
    VectorQuery, in_stable_order,
)

log = logging.getLogger(__name__)

_SCROLL_PAGE = 512


class ServerStore:
    """An ``ArchivalStore`` on one collection of a Qdrant server (or qdrant-client local mode)."""

    def __init__(self, client: Any, collection: str, dense_dim: int | None) -> None:
        from qdrant_client import models

        self.m = models
        self.client = client
        self.collection = collection
        self.dense_dim = dense_dim
        if not client.collection_exists(collection):
            client.create_collection(
                collection,
                vectors_config=(
                    {DENSE: models.VectorParams(size=dense_dim, distance=models.Distance.COSINE)}
                    if dense_dim else {}
                ),
                sparse_vectors_config={SPARSE: models.SparseVectorParams(modifier=models.Modifier.IDF)},
            )
            for name in KEYWORD_FIELDS:
                client.create_payload_index(collection, name, models.PayloadSchemaType.KEYWORD)
            for name in INTEGER_FIELDS:
                client.create_payload_index(collection, name, models.PayloadSchemaType.INTEGER)

    @classmethod
    def connect(cls, url: str, api_key: str | None, collection: str, dense_dim: int | None) -> "ServerStore":
        try:
            from qdrant_client import QdrantClient
        except ImportError as exc:  # an optional extra
            raise DocmemError("--qdrant-url needs qdrant-client: pip install 'docmem[server]'") from exc
        if url == ":memory:":
            client = QdrantClient(location=":memory:")
        elif url.startswith(("http://", "https://")):
            client = QdrantClient(url=url, api_key=api_key)
        else:  # a folder: qdrant-client's local mode
            client = QdrantClient(path=url)
        return cls(client, collection, dense_dim)

    def _vec(self, v: SparseVec | list[float]) -> Any:
        if isinstance(v, SparseVec):
            return self.m.SparseVector(indices=v.indices, values=v.values)
        return list(v)

    def _path_filter(self, paths: Sequence[str] | None, extra: list[Any] | None = None) -> Any:
        must: list[Any] = list(extra or [])
        if paths is not None:
            must.append(self.m.FieldCondition(key="path", match=self.m.MatchAny(any=list(paths))))
        return self.m.Filter(must=must) if must else None

    def _visible(self, notes_scope: str | None) -> Any:
        m = self.m
        documents = m.FieldCondition(key="kind", match=m.MatchValue(value=KIND_DOCUMENT))
        if notes_scope is None:
            return documents
        notes = m.Filter(must=[m.FieldCondition(key="kind", match=m.MatchValue(value=KIND_NOTE)),
                               m.FieldCondition(key="scope", match=m.MatchValue(value=notes_scope))])
        return m.Filter(should=[documents, notes])

    def upsert(
        self, chunks: Sequence[Chunk], sparse: Sequence[SparseVec],
        dense: Sequence[list[float]] | None = None,
    ) -> None:
        points = []
        for i, chunk in enumerate(chunks):
            vector: dict[str, Any] = {SPARSE: self._vec(sparse[i])}
            if dense is not None:
                vector[DENSE] = list(dense[i])
            points.append(self.m.PointStruct(id=chunk.point_id, vector=vector, payload=chunk.payload()))
        if points:
            self.client.upsert(self.collection, points=points, wait=True)

    def delete_paths(self, paths: Sequence[str]) -> None:
        if paths:
            self.client.delete(self.collection, points_selector=self.m.FilterSelector(
                filter=self._path_filter(paths)), wait=True)

    def delete_scope(self, scope: str) -> None:
        self.client.delete(self.collection, points_selector=self.m.FilterSelector(filter=self.m.Filter(
            must=[self.m.FieldCondition(key="scope", match=self.m.MatchValue(value=scope))])), wait=True)

    def set_dense(self, point_ids: Sequence[str], vectors: Sequence[list[float]]) -> None:
        if point_ids:
            self.client.update_vectors(self.collection, points=[
                self.m.PointVectors(id=pid, vector={DENSE: list(v)}) for pid, v in zip(point_ids, vectors)
            ], wait=True)

    def _no_dense(self) -> Any:
        return self.m.Filter(must_not=[self.m.HasVectorCondition(has_vector=DENSE)])

    def missing_dense(self, limit: int) -> list[tuple[str, str]]:
        if not self.dense_dim:
            return []
        records, _ = self.client.scroll(self.collection, scroll_filter=self._no_dense(), limit=limit,
                                        with_payload=["text", "title", "headings"], with_vectors=False)
        return [(str(r.id), _embed_text(r.payload or {})) for r in records]

    def lacking_dense(self, point_ids: Sequence[str]) -> list[str]:
        if not self.dense_dim or not point_ids:
            return []
        flt = self.m.Filter(must=[self.m.HasIdCondition(has_id=list(point_ids))],
                            must_not=self._no_dense().must_not)
        records, _ = self.client.scroll(self.collection, scroll_filter=flt, limit=len(point_ids),
                                        with_payload=False, with_vectors=False)
        return [str(r.id) for r in records]

    def count(self, paths: Sequence[str] | None = None, missing_dense: bool = False) -> int:
        if missing_dense and not self.dense_dim:
            return 0
        flt = self._path_filter(paths, [self._no_dense()] if missing_dense else None)
        return self.client.count(self.collection, count_filter=flt, exact=True).count

    def query(
        self, lists: Sequence[VectorQuery], fusion: FusionSpec | None, limit: int,
        paths: Sequence[str] | None = None, notes_scope: str | None = None,
    ) -> list[Scored]:
        m = self.m
        flt = self._path_filter(paths, [self._visible(notes_scope)])
        if len(lists) == 1:
            only = lists[0]
            result = self.client.query_points(self.collection, query=self._vec(only.vector),
                                              using=only.using, query_filter=flt, limit=limit,
                                              with_payload=False)
        else:
            assert fusion is not None
            prefetch = [m.Prefetch(query=self._vec(q.vector), using=q.using, limit=q.limit, filter=flt)
                        for q in lists]
            if fusion.method == "dbsf":
                query: Any = m.FusionQuery(fusion=m.Fusion.DBSF)
            else:
                query = m.RrfQuery(rrf=m.Rrf(k=fusion.k, weights=list(fusion.weights) if fusion.weights else None))
            result = self.client.query_points(self.collection, prefetch=prefetch, query=query,
                                              limit=limit, with_payload=False)
        return in_stable_order([Scored(str(p.id), float(p.score)) for p in result.points])

    def candidates(
        self, lists: Sequence[VectorQuery], paths: Sequence[str] | None = None,
        notes_scope: str | None = None,
    ) -> list[list[Scored]]:
        m = self.m
        flt = self._path_filter(paths, [self._visible(notes_scope)])
        requests = [m.QueryRequest(query=self._vec(q.vector), using=q.using, filter=flt, limit=q.limit,
                                   with_payload=False) for q in lists]
        responses = self.client.query_batch_points(self.collection, requests=requests)
        return [[Scored(str(p.id), float(p.score)) for p in r.points] for r in responses]

    def sections(self, point_ids: Sequence[str]) -> dict[str, Section]:
        records = self.client.retrieve(self.collection, ids=list(point_ids),
                                       with_payload=SECTION_FIELDS) if point_ids else []
        return {str(r.id): ((r.payload or {}).get("path", ""), tuple((r.payload or {}).get("headings") or ()))
                for r in records}

    def retrieve(self, point_ids: Sequence[str]) -> dict[str, Chunk]:
        if not point_ids:
            return {}
        records = self.client.retrieve(self.collection, ids=list(point_ids), with_payload=True)
        return {str(r.id): Chunk.from_payload(r.payload or {}) for r in records}

    def _scroll_all(self, flt: Any) -> list[Chunk]:
        out: list[Chunk] = []
        offset = None
        while True:
            records, offset = self.client.scroll(self.collection, scroll_filter=flt, limit=_SCROLL_PAGE,
                                                 offset=offset, with_payload=True, with_vectors=False)
            out.extend(Chunk.from_payload(r.payload or {}) for r in records)
            if offset is None:
                return out

    def by_chunk_ids(self, chunk_ids: Sequence[str]) -> list[Chunk]:
        if not chunk_ids:
            return []
        found = {c.id: c for c in self._scroll_all(self.m.Filter(must=[
            self.m.FieldCondition(key="chunk_id", match=self.m.MatchAny(any=list(chunk_ids)))]))}
        return [found[c] for c in chunk_ids if c in found]

    def neighbours(self, path: str, first: int, last: int) -> list[Chunk]:
        m = self.m
        flt = m.Filter(must=[
            m.FieldCondition(key="path", match=m.MatchValue(value=path)),
            m.FieldCondition(key="index", range=m.Range(gte=first, lte=last)),
        ])
        return sorted(self._scroll_all(flt), key=lambda c: c.index)

    def on_page(self, path: str, page: int) -> list[Chunk]:
        m = self.m
        flt = m.Filter(must=[
            m.FieldCondition(key="path", match=m.MatchValue(value=path)),
            m.FieldCondition(key="page", range=m.Range(lte=page)),
            m.FieldCondition(key="page_end", range=m.Range(gte=page)),
        ])
        return sorted(self._scroll_all(flt), key=lambda c: c.index)

    def flush(self) -> None:
        """The server persists each write it acknowledged (wait=True)."""

    def optimize(self) -> None:
        """The server's own optimizer indexes in the background."""

    def close(self) -> None:
        self.client.close()
