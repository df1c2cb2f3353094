"""Corpus state, and answers whose citations no longer hold.

The *corpus state* is a fingerprint of what a search can find: the embedder and its
dimension, the chunking and extraction version, and the content hash of every file in the manifest. Re-ingesting
unchanged files keeps it; adding, changing or removing a file changes it. Agent notes and
the progress of dense embedding are not part of it.

An answer is *stale* when the text it cites is gone: its chunk now has other text (its
sha256 no longer matches the ``content_hash`` recorded with the citation), or the chunk
disappeared and no chunk of the same file has that text. Chunk ids derive from their
file's path and content hash, so any edit renames every chunk of the file; a citation
whose text survived the edit follows it to its new id.
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterable

from docmem.schema import Chunk
from docmem.store.corpus import Corpus

META_KEYS = ("embedder", "dim", "chunking", "extraction")


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
    """{question id: why} for every record with a cited chunk that changed or disappeared.

    A citation whose chunk id is gone but whose exact text is still in the same file (an
    edit elsewhere in a file renames all its chunks) still holds: it is moved to the new
    chunk id in place, so the record stays openable and is not asked again.
    """
    records = list(records)
    scopes = {str(r["notes_scope"]) for r in records if r.get("notes_scope")}  # the batch's shared notes
    wanted = sorted({c["chunk_id"] for r in records for c in r.get("citations") or [] if c.get("chunk_id")})
    found = corpus.store.by_chunk_ids(wanted) if wanted else []
    current = {c.id: text_hash(c.text) for c in found if any(c.visible_to(s) for s in scopes | {None})}
    moved = _moved_chunks(corpus, [c for r in records for c in r.get("citations") or []
                                   if c.get("chunk_id") not in current], scopes)
    out: dict[str, list[str]] = {}
    for record in records:
        reasons = []
        for c in record.get("citations") or []:
            where = f"{c.get('path') or '?'}" + (f" p.{c['page']}" if c.get("page") is not None else "")
            now = current.get(c.get("chunk_id"))
            if now is None and (c.get("path"), c.get("content_hash")) in moved:
                chunk = moved[c["path"], c["content_hash"]]
                c.update(chunk_id=chunk.id, page=chunk.page)
            elif now is None:
                reasons.append(f"cited chunk {c.get('chunk_id')} ({where}) disappeared")
            elif c.get("content_hash") != now:
                reasons.append(f"cited chunk {c.get('chunk_id')} ({where}) changed")
        if reasons:
            out[str(record["id"])] = reasons
    return out


def _moved_chunks(corpus: Corpus, citations: list[dict[str, Any]], scopes: set[str]) -> dict[tuple[str, str], Chunk]:
    """(file, text hash) -> the chunk of that file that now holds exactly that text (never
    another session's note)."""
    found: dict[tuple[str, str], Chunk] = {}
    for path in sorted({c["path"] for c in citations if c.get("path") and c.get("content_hash")}):
        for chunk in corpus.store.neighbours(path, 0, 2**31 - 1):
            if any(chunk.visible_to(s) for s in scopes | {None}):
                found.setdefault((path, text_hash(chunk.text)), chunk)
    return found
