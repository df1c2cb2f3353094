"""Archival storage: one interface (``ArchivalStore``), two Qdrant backends.

``edge`` runs the Qdrant engine in-process (the default); ``server`` talks to a Qdrant
server or cluster through qdrant-client. Both store the same points: a sparse BM25 vector
(always), an optional dense vector, and the chunk as payload.
"""

from docmem.store.base import ArchivalStore, FusionSpec, Prefetch, VectorQuery
from docmem.store.corpus import Corpus, CorpusInfo, list_corpora, open_corpus

__all__ = [
    "ArchivalStore",
    "Corpus",
    "CorpusInfo",
    "FusionSpec",
    "Prefetch",
    "VectorQuery",
    "list_corpora",
    "open_corpus",
]
