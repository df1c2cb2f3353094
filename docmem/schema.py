"""The records that cross layers: a chunk as ingest writes it, a hit as search returns it.

Point ids derive from (document key, chunk index), the key being the file's content hash
bound to its path, so writing the same file twice yields the same points: re-ingesting is
idempotent and a crash resumes cleanly. A point id also carries its section: its first half is
a hash of (document key, heading path), so ranking by section needs no read of the store
(see ``section_of``).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any


# Payload kind of a corpus chunk vs a fact the agent stored with archival_insert.
KIND_DOCUMENT = "document"
KIND_NOTE = "note"


def document_key(path: str, content_hash: str) -> str:
    """A document's identity: its content *at its path*. Two identical files in two folders
    are two documents (each cited by its own path), so their points must not collide."""
    return hashlib.sha256(f"{path}\0{content_hash}".encode()).hexdigest()


def chunk_id(doc_hash: str, index: int) -> str:
    """The short, stable id a person (or the agent) cites: 12 hex digits, dash, index."""
    return f"{doc_hash[:12]}-{index}"


_OPENING_MARK = 0xA5C396E1
_MARK_BITS = 0x3FFFFFFF  # the 32 bits after the variant's two


def point_id(doc_hash: str, index: int, headings: tuple[str, ...] = (), opens_section: bool = False) -> str:
    """A UUID (version 8: laid out by docmem) whose first 64 bits name the chunk's section and
    the rest the chunk. Ordering search results by section reads the section of 50 candidates;
    from the store that was a third of a search's time at 1M chunks (bench/README.md, section
    2), from the id it is free. A chunk without headings is its own section (as in
    docmem.ranking.section_key), so its first half hashes the chunk itself.

    The chunk that opens its section (it starts at the heading) says so in its id, for the
    same reason (see ``section_opener``): its second half starts with its first 32 bits XOR
    ``_OPENING_MARK``. The rest of an id's second half is a hash of the chunk alone, so the id of
    any other chunk (or one made before the mark) matches it only by a 2^-30 chance (the
    variant takes two bits): no id already stored is misread as opening its section."""
    own = hashlib.sha256(f"{doc_hash}:{index}".encode()).digest()
    section = hashlib.sha256("\0".join((doc_hash, *headings)).encode()).digest() if headings else own
    raw = bytearray(section[:8] + own[8:16])
    raw[6] = (raw[6] & 0x0F) | 0x80  # version 8
    if opens_section and headings:
        raw[8:12] = (int.from_bytes(raw[:4], "big") ^ _OPENING_MARK).to_bytes(4, "big")
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    return str(uuid.UUID(bytes=bytes(raw)))


def section_of(point_id: str) -> str | None:
    """The section a point id names (16 hex digits), or None for an id made before ids carried
    it (uuid5: a file ingested before keeps them until it is re-ingested; their sections are read)."""
    return point_id[:8] + point_id[9:13] + point_id[14:18] if point_id[14:15] == "8" else None


def section_opener(point_id: str) -> bool:
    """Whether a point id (docmem.schema.point_id) is that of a chunk starting at its section's
    heading: string arithmetic only, as the ranking asks it of 100 candidates per search. False
    for ids made before ids carried it: their files rank as before until the next ingest
    re-extracts them (ingest.pipeline.EXTRACTION_VERSION 5)."""
    if point_id[14:15] != "8":
        return False
    expected = int(point_id[:8], 16) ^ _OPENING_MARK
    return (int(point_id[19:23] + point_id[24:28], 16) ^ expected) & _MARK_BITS == 0


@dataclass(frozen=True)
class Chunk:
    """One passage of a document with everything needed to cite it."""

    doc_hash: str
    index: int
    text: str
    path: str  # relative to the ingested root, POSIX separators
    title: str
    page: int | None = None  # 1-based PDF page where the chunk starts
    page_end: int | None = None  # page where it ends (a chunk may straddle a page break)
    section: str | None = None  # nearest heading, for formats without pages
    headings: tuple[str, ...] = ()
    char_start: int = 0  # span in the document's extracted text
    char_end: int = 0
    kind: str = KIND_DOCUMENT
    scope: str | None = None  # notes only: which session (or shared batch) may see them
    opens_section: bool = False  # starts at a heading: the section's own statement of its topic

    @property
    def id(self) -> str:
        return chunk_id(self.doc_hash, self.index)

    @property
    def point_id(self) -> str:
        document = self.kind == KIND_DOCUMENT
        return point_id(self.doc_hash, self.index, self.headings if document else (),
                        document and self.opens_section)

    def visible_to(self, notes_scope: str | None) -> bool:
        """Documents are visible to everyone; a note only to its own scope (its session, or a
        shared batch). Every reader of chunks by id, page or position applies this, as the
        store's search filter does."""
        return self.kind != KIND_NOTE or (notes_scope is not None and self.scope == notes_scope)

    def payload(self) -> dict[str, Any]:
        data = asdict(self)
        data["headings"] = list(self.headings)
        data["chunk_id"] = self.id
        return data

    def embed_text(self) -> str:
        """What both BM25 and the dense model see: the text under its title and headings.

        The stored text stays verbatim (citations are checked against it); the context line
        lets a passage that never names its subject still be found by it.
        """
        return embed_text_of(self.payload())

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> "Chunk":
        known = {k: payload[k] for k in cls.__dataclass_fields__ if k in payload}
        known["headings"] = tuple(known.get("headings") or ())
        return cls(**known)


def embed_text_of(payload: dict[str, Any]) -> str:
    """``Chunk.embed_text`` from a partial payload (title, headings, text)."""
    context = " > ".join(h for h in (payload.get("title"), *(payload.get("headings") or ())) if h)
    text = payload.get("text", "")
    return f"{context}\n{text}" if context else text


@dataclass(frozen=True)
class Hit:
    """A ranked chunk as search returns it (structured; formatting is a separate layer)."""

    rank: int  # 1-based over the whole result list, stable across pages
    score: float
    chunk: Chunk

    def as_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "score": self.score, **self.chunk.payload()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Hit":
        return cls(int(data["rank"]), float(data["score"]), Chunk.from_payload(data))


@dataclass(frozen=True)
class SearchPage:
    """One page of results and the truth about the whole list."""

    query: str
    page: int  # 1-based
    page_size: int
    hits: list[Hit]
    total: int  # candidates retrieved (capped)
    capped: bool  # True when there may be more than `total`
    mode: str  # "hybrid" | "hybrid, BM25-led (identifier)" | "bm25" | "dense"
    filters: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the header alone would hide
    closest: float | None = None  # the best dense cosine of any candidate (None: no dense list)

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.page_size))

    @property
    def first(self) -> int:
        return (self.page - 1) * self.page_size + 1 if self.hits else 0

    @property
    def last(self) -> int:
        return self.first + len(self.hits) - 1 if self.hits else 0

    def total_label(self) -> str:
        return f"{self.total}+" if self.capped else str(self.total)

    def header(self) -> str:
        if not self.total:
            query = self.query if len(self.query) <= 80 else self.query[:79] + "…"  # a pasted page
            return f'No results for "{query}"'
        pages = f"{self.pages}+" if self.capped else str(self.pages)
        if not self.hits:
            many = self.capped or self.total > 1, self.capped or self.pages > 1
            return (
                f"Page {self.page} is past the last page: {self.total_label()} "
                f"result{'s' if many[0] else ''} ({pages} page{'s' if many[1] else ''})"
            )
        return (
            f"Showing results {self.first}-{self.last} of {self.total_label()} "
            f"(page {self.page} of {pages})"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "header": self.header(),
            "page": self.page,
            "page_size": self.page_size,
            "pages": self.pages,
            "total": self.total,
            "capped": self.capped,
            "mode": self.mode,
            "filters": self.filters,
            "notes": self.notes,
            "closest": self.closest,
            "hits": [h.as_dict() for h in self.hits],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SearchPage":
        """The inverse of ``as_dict``: a page as a remote owner sent it."""
        return cls(data["query"], int(data["page"]), int(data["page_size"]),
                   [Hit.from_dict(h) for h in data["hits"]], int(data["total"]), bool(data["capped"]),
                   data["mode"], dict(data.get("filters") or {}), list(data.get("notes") or []),
                   None if data.get("closest") is None else float(data["closest"]))


@dataclass(frozen=True)
class ReadPage:
    """A stretch of one document read in order around a chunk or a page (``open_document``)."""

    path: str
    title: str
    chunks: list[Chunk]
    total_chunks: int  # in the whole document
    previous: str | None = None  # chunk id to read on from, backwards (None at the start)
    next: str | None = None  # chunk id to read on from, forwards (None at the end)

    def header(self) -> str:
        if not self.chunks:
            return f"{self.path}: nothing to read"
        first, last = self.chunks[0].index + 1, self.chunks[-1].index + 1
        return f"{self.path} ({self.title}), chunks {first}-{last} of {self.total_chunks}"

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "title": self.title, "header": self.header(),
                "total_chunks": self.total_chunks, "previous": self.previous, "next": self.next,
                "chunks": [c.payload() for c in self.chunks]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ReadPage":
        return cls(data["path"], data["title"], [Chunk.from_payload(c) for c in data["chunks"]],
                   int(data["total_chunks"]), data.get("previous"), data.get("next"))


@dataclass(frozen=True)
class CorpusInfo:
    """A corpus as ``docmem corpora`` lists it, read from its manifest (never its store)."""

    name: str
    files: int
    failed: int
    chunks: int
    embedder: str
    dim: int
    backend: str
    bytes_on_disk: int
    roots: list[str] = field(default_factory=list)  # the folders ingested into it (absolute paths)
    last_ingest: float | None = None  # when the last ingest ended (epoch seconds)
    dense_pending: int | None = None  # chunks without a dense vector after the last ingest; None: unknown

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class IngestOptions:
    """What ``docmem ingest`` was asked to do, as an ingest job carries it to the corpus owner."""

    excludes: tuple[str, ...] = ()
    embedder: str | None = None  # for a new corpus; a different one is refused for an old one
    chunk_tokens: int | None = None
    chunk_overlap: int | None = None
    workers: int | None = None
    dense: bool = True
    force: bool = False
    follow_symlinks: bool = False  # also links that lead outside the ingested folders
    in_process: bool | None = None  # read files in the owner's process, no budget (None: workers <= 1)
    file_timeout: int | None = None  # per-file budget (None: the owner's settings)
    file_memory_mb: int | None = None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["excludes"] = list(self.excludes)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "IngestOptions":
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        known["excludes"] = tuple(known.get("excludes") or ())
        return cls(**known)


# Kinds of ``JobEvent``: waiting behind other writers, a pipeline progress event, the end.
JOB_QUEUED, JOB_PROGRESS, JOB_DONE, JOB_FAILED = "queued", "progress", "done", "failed"


@dataclass(frozen=True)
class JobEvent:
    """One thing an ingest job reports: its place in the corpus's queue of writers (one runs at a
    time), a progress event of the pipeline (``progress``: its fields), its summary, or its error."""

    job: str
    kind: str  # JOB_QUEUED | JOB_PROGRESS | JOB_DONE | JOB_FAILED
    position: int = 0  # JOB_QUEUED: writers ahead of this one
    progress: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "JobEvent":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
