"""Corpus state, and answers whose citations no longer hold.

The *corpus state* is a fingerprint of what a search can find: the embedder and its
dimension, the chunking, and the content hash of every file in the manifest. Re-ingesting
unchanged files keeps it; adding, changing or removing a file changes it. Agent notes and
the progress of dense embedding are not part of it.

An answer is *stale* when a chunk it cites is gone from the store (chunk ids derive from
their file's path and content hash, so editing a file makes its old chunks disappear) or now has other
text (its sha256 no longer matches the ``content_hash`` recorded with the citation).
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterable

from docmem.store.corpus import Corpus

META_KEYS = ("embedder", "dim", "chunking")


def corpus_state(corpus: Corpus) -> str:
    """16 hex digits; the same for the same files, embedder and chunking."""
    digest = hashlib.sha256()
    for key in META_KEYS:
        digest.update(f"{key}={corpus.manifest.get_meta(key)}\n".encode())
    for record in corpus.manifest.files():
        if record.status == "ok":
            digest.update(f"{record.path}\t{record.hash}\n".encode())
    return digest.hexdigest()[:16]


def text_hash(text: str) -> str:
    """As ``CitationResult.content_hash``: sha256 of the chunk's text, 16 hex digits."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def stale_reasons(corpus: Corpus, records: Iterable[dict[str, Any]]) -> dict[str, list[str]]:
    """{question id: why} for every record with a cited chunk that changed or disappeared."""
    records = list(records)
    wanted = sorted({c["chunk_id"] for r in records for c in r.get("citations") or [] if c.get("chunk_id")})
    current = {c.id: text_hash(c.text) for c in corpus.store.by_chunk_ids(wanted)} if wanted else {}
    out: dict[str, list[str]] = {}
    for record in records:
        reasons = []
        for c in record.get("citations") or []:
            where = f"{c.get('file') or '?'}" + (f" p.{c['page']}" if c.get("page") is not None else "")
            now = current.get(c.get("chunk_id"))
            if now is None:
                reasons.append(f"cited chunk {c.get('chunk_id')} ({where}) disappeared")
            elif c.get("content_hash") != now:
                reasons.append(f"cited chunk {c.get('chunk_id')} ({where}) changed")
        if reasons:
            out[str(record["id"])] = reasons
    return out
