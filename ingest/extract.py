"""What a worker does with one file: hash it and, if its content is new, load and chunk it.

Kept apart from the pipeline so that a worker process imports only the loaders and the
chunker, not the store and the embedder.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

from docmem.schema import Chunk, document_key
from ingest.chunker import Chunker
from ingest.discover import confined
from ingest.document import LoadError
from ingest.loaders import load

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    path: str
    rel: str
    known_hash: str | None
    chunk_tokens: int
    overlap: int
    confine: str | None = None  # the real folder the file must resolve inside (no symlink escape)
    size: int = 0
    max_unpacked: int | None = None  # bytes an archive format (DOCX, PPTX, EPUB) may unpack to


@dataclass
class Outcome:
    rel: str
    status: str  # "same" | "ok" | "failed"
    hash: str = ""
    reason: str | None = None
    title: str | None = None
    pages: int = 0
    chunks: list[Chunk] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def file_hash(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_CHUNKERS: dict[tuple[int, int], Chunker] = {}


def process(job: Job) -> Outcome:
    """Runs in a worker process: hash, and if the content is new, load and chunk."""
    try:
        path = confined(job.path, job.confine)
        digest = file_hash(path)
        if digest == job.known_hash:
            return Outcome(job.rel, "same", hash=digest)
        document = load(Path(path), max_unpacked=job.max_unpacked)
        key = (job.chunk_tokens, job.overlap)
        chunker = _CHUNKERS.get(key) or _CHUNKERS.setdefault(key, Chunker(*key))
        chunks = chunker.chunk(document, doc_hash=document_key(job.rel, digest), path=job.rel)
        if not chunks:
            raise LoadError("no text")
        return Outcome(job.rel, "ok", hash=digest, title=document.title, pages=document.pages,
                       chunks=chunks, warnings=document.warnings)
    except LoadError as exc:
        return Outcome(job.rel, "failed", reason=str(exc))
    except FileNotFoundError:
        return Outcome(job.rel, "failed", reason="file vanished during the run")
    except PermissionError:
        return Outcome(job.rel, "failed", reason="permission denied")
    except IsADirectoryError:
        return Outcome(job.rel, "failed", reason="is a directory")
    except OSError as exc:
        return Outcome(job.rel, "failed", reason=f"cannot read: {exc.strerror or exc}")
    except MemoryError:
        return Outcome(job.rel, "failed", reason="too large when unpacked (out of memory)")
    except Exception as exc:  # a loader bug must not stop the other files
        log.exception("unexpected failure on %s", job.rel)
        return Outcome(job.rel, "failed", reason=f"unexpected error: {type(exc).__name__}: {exc}")
