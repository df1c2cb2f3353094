"""The ingest run: discover -> load+chunk (worker processes) -> BM25 write -> dense fill.

Order of writes per file, so that a crash anywhere leaves a state the next run completes:
drop the manifest row, delete the file's old points, upsert the new ones, then commit the
row. Dense vectors are filled afterwards from the store itself (points that lack one), so
an interrupted run resumes embedding exactly where it stopped.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import time
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from docmem.embedders import bm25_document
from docmem.errors import DocmemError
from docmem.schema import Chunk, document_key
from docmem.store.corpus import Corpus
from docmem.store.manifest import FileRecord, now
from ingest.chunker import Chunker
from ingest.discover import Found, confined, discover
from ingest.document import LoadError
from ingest.loaders import load, unsupported_reason

log = logging.getLogger(__name__)

UPSERT_BATCH = 256
DEFAULT_CHUNK_TOKENS = 200  # chosen on the NQ retrieval benchmark (bench/README.md)
DEFAULT_OVERLAP = 30
# Bump when a loader or the chunker changes the chunks a file gives: a corpus built by another
# version is then re-extracted on its next ingest, as when its chunk settings change.
# 2: chunks bounded exactly in tokens, headings kept with their paragraph, PDF dot leaders.
# 3: long paragraphs cut in linear time, in runs that leave room for the next overlap.
EXTRACTION_VERSION = "3"
DENSE_BATCH = 128


@dataclass(frozen=True)
class Progress:
    """One step of the run, for whoever renders it (rich in the CLI, a bar in the TUI)."""

    stage: str  # "scan" | "extract" | "dense" | "index" | "done"
    done: int = 0
    total: int = 0
    path: str | None = None
    pages: int = 0  # cumulative, for "extract"
    chunks: int = 0  # cumulative
    bytes: int = 0  # cumulative
    message: str | None = None


ProgressCallback = Callable[[Progress], None]


@dataclass
class IngestSummary:
    corpus: str
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): not a document
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    pages: int = 0
    bytes: int = 0
    chunks_written: int = 0
    chunks_embedded: int = 0
    dense_pending: int = 0
    dense_error: str | None = None
    rechecked: int = 0  # files whose size or time changed but whose content did not
    seconds_extract: float = 0.0
    seconds_dense: float = 0.0  # including seconds_embedder_load
    seconds_embedder_load: float = 0.0
    seconds_total: float = 0.0

    @property
    def processed(self) -> int:
        return len(self.added) + len(self.updated) + len(self.removed) + len(self.unchanged)

    def as_dict(self) -> dict[str, object]:
        data = dict(self.__dict__)
        data["skipped"] = [{"path": p, "reason": r} for p, r in self.skipped]
        data["failed"] = [{"path": p, "reason": r} for p, r in self.failed]
        data["warnings"] = [{"path": p, "message": m} for p, m in self.warnings]
        return data


@dataclass(frozen=True)
class _Job:
    path: str
    rel: str
    known_hash: str | None
    chunk_tokens: int
    overlap: int
    confine: str | None = None


@dataclass
class _Outcome:
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


def _process(job: _Job) -> _Outcome:
    """Runs in a worker process: hash, and if the content is new, load and chunk."""
    try:
        path = confined(job.path, job.confine)
        digest = file_hash(path)
        if digest == job.known_hash:
            return _Outcome(job.rel, "same", hash=digest)
        document = load(Path(path))
        key = (job.chunk_tokens, job.overlap)
        chunker = _CHUNKERS.get(key) or _CHUNKERS.setdefault(key, Chunker(*key))
        chunks = chunker.chunk(document, doc_hash=document_key(job.rel, digest), path=job.rel)
        if not chunks:
            raise LoadError("no text")
        return _Outcome(job.rel, "ok", hash=digest, title=document.title, pages=document.pages,
                        chunks=chunks, warnings=document.warnings)
    except LoadError as exc:
        return _Outcome(job.rel, "failed", reason=str(exc))
    except FileNotFoundError:
        return _Outcome(job.rel, "failed", reason="file vanished during the run")
    except PermissionError:
        return _Outcome(job.rel, "failed", reason="permission denied")
    except IsADirectoryError:
        return _Outcome(job.rel, "failed", reason="is a directory")
    except OSError as exc:
        return _Outcome(job.rel, "failed", reason=f"cannot read: {exc.strerror or exc}")
    except Exception as exc:  # a loader bug must not stop the other files
        log.exception("unexpected failure on %s", job.rel)
        return _Outcome(job.rel, "failed", reason=f"unexpected error: {type(exc).__name__}: {exc}")


def _run_jobs(jobs: list[_Job], workers: int) -> Iterator[_Outcome]:
    """Outcomes as they complete; worker processes only when there is enough to share."""
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield _process(job)
        return
    # spawn, not fork: the parent holds Qdrant and onnxruntime thread pools.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending: dict[Future[_Outcome], _Job] = {}
        queue = iter(jobs)
        for job in queue:  # keep a bounded number in flight: results hold whole documents
            pending[pool.submit(_process, job)] = job
            if len(pending) >= workers * 2:
                break
        while pending:
            done = next(_as_completed(pending))
            job = pending.pop(done)
            try:
                yield done.result()
            except Exception as exc:  # a worker died (e.g. out of memory on one file)
                yield _Outcome(job.rel, "failed", reason=f"worker crashed: {type(exc).__name__}")
            for job in queue:
                pending[pool.submit(_process, job)] = job
                break


def _as_completed(pending: dict[Future[_Outcome], _Job]) -> Iterator[Future[_Outcome]]:
    from concurrent.futures import FIRST_COMPLETED, wait

    done, _ = wait(pending, return_when=FIRST_COMPLETED)
    yield from done


def ingest(corpus: Corpus, paths: list[Path], *, excludes: tuple[str, ...] = (),
           progress: ProgressCallback | None = None, workers: int | None = None,
           dense: bool = True, force: bool = False, follow_symlinks: bool = False) -> IngestSummary:
    """Bring the corpus in line with the files under ``paths``; ``force`` re-extracts all.

    ``follow_symlinks`` also follows links that lead outside an ingested folder."""
    emit = progress or (lambda _event: None)
    settings = corpus.settings
    started = time.perf_counter()
    summary = IngestSummary(corpus=corpus.name)
    previous_chunking = corpus.manifest.get_meta("chunking")
    tokens, overlap = _chunking(settings.chunk_tokens, settings.chunk_overlap, previous_chunking)
    chunking = f"{tokens}/{overlap}"
    try:
        Chunker(tokens, overlap)
    except ValueError as exc:
        raise DocmemError(f"bad chunk settings {chunking}: {exc}") from None
    if previous_chunking not in (None, chunking):
        summary.notes.append(f"chunk settings changed from {previous_chunking} to {chunking} tokens: "
                             "re-chunking every file")
        force = True
    built_by = corpus.manifest.get_meta("extraction") or ("1" if previous_chunking else None)
    if built_by not in (None, EXTRACTION_VERSION) and not force:
        summary.notes.append(f"this corpus was built by an older text extraction (v{built_by}, now "
                             f"v{EXTRACTION_VERSION}): re-extracting every file")
        force = True
    found = discover(paths, excludes, follow_symlinks)
    summary.failed.extend((p.rel, p.reason) for p in found.problems)
    summary.skipped.extend((p.rel, p.reason) for p in found.skipped)
    emit(Progress("scan", done=len(found.files), total=len(found.files)))

    manifest, store = corpus.manifest, corpus.store
    roots = {str(r) for r in found.roots}
    seen = {p.rel for p in found.problems}
    jobs: list[_Job] = []
    sizes: dict[str, Found] = {}
    for item in found.files:
        if item.rel in seen:  # two roots holding the same path, or undecodable names that display alike
            summary.failed.append((item.rel, "another file of this run has the same path; use another --corpus"))
            continue
        seen.add(item.rel)
        reason = unsupported_reason(item.path)
        if reason:
            summary.skipped.append((item.rel, reason))
            continue
        record = manifest.get(item.rel)
        if record and record.root != str(item.root):
            summary.failed.append((item.rel, f"same path already ingested from {record.root}; use another --corpus"))
            continue
        if not force and record and record.size == item.size and record.mtime_ns == item.mtime_ns:
            if record.status == "failed":
                summary.failed.append((item.rel, f"{record.reason} (unchanged since last run)"))
            else:
                summary.unchanged.append(item.rel)
            continue
        sizes[item.rel] = item
        jobs.append(_Job(str(item.path), item.rel, record.hash if record and not force else None,
                         tokens, overlap, item.confine))

    # Biggest first keeps both workers busy to the end.
    jobs.sort(key=lambda j: -sizes[j.rel].size)
    workers = min(os.cpu_count() or 1, 8) if workers is None else workers
    total_bytes = sum(sizes[j.rel].size for j in jobs)
    emit(Progress("extract", done=0, total=len(jobs), bytes=0, message=f"{total_bytes} bytes"))
    for done, outcome in enumerate(_run_jobs(jobs, workers), start=1):
        item = sizes[outcome.rel]
        _apply(corpus, item, outcome, summary)
        summary.bytes += item.size
        emit(Progress("extract", done=done, total=len(jobs), path=outcome.rel, pages=summary.pages,
                      chunks=summary.chunks_written, bytes=summary.bytes))

    for record in list(manifest.files()):
        if record.root in roots and record.path not in seen:
            store.delete_paths([record.path])
            manifest.remove(record.path)
            summary.removed.append(record.path)
    store.flush()
    manifest.set_meta("chunking", chunking)  # after the files it describes were rewritten
    manifest.set_meta("extraction", EXTRACTION_VERSION)
    summary.seconds_extract = time.perf_counter() - started

    if corpus.has_dense:  # so that an interrupted dense stage leaves an honest count behind
        manifest.set_meta("dense_pending", str(store.count(missing_dense=True)))
    if dense and corpus.has_dense:
        dense_started = time.perf_counter()
        _fill_dense(corpus, summary, emit)
        summary.seconds_dense = time.perf_counter() - dense_started
    summary.dense_pending = store.count(missing_dense=True) if corpus.has_dense else 0
    manifest.set_meta("dense_pending", str(summary.dense_pending))  # for `docmem corpora`
    manifest.set_meta("last_ingest", str(now()))
    if summary.chunks_written or summary.chunks_embedded or summary.removed:
        emit(Progress("index", message="optimizing the index"))
        store.optimize()
    store.flush()
    summary.seconds_total = time.perf_counter() - started
    emit(Progress("done"))
    return summary


def _chunking(tokens: int | None, overlap: int | None, recorded: str | None) -> tuple[int, int]:
    """Explicit settings win; otherwise a corpus keeps what it was built with."""
    old_tokens, old_overlap = (int(x) for x in (recorded or f"{DEFAULT_CHUNK_TOKENS}/{DEFAULT_OVERLAP}").split("/"))
    return tokens or old_tokens, overlap if overlap is not None else old_overlap


def _apply(corpus: Corpus, item: Found, outcome: _Outcome, summary: IngestSummary) -> None:
    manifest, store = corpus.manifest, corpus.store
    previous = manifest.get(outcome.rel)
    if outcome.status == "same":
        manifest.touch(outcome.rel, item.mtime_ns)
        summary.unchanged.append(outcome.rel)
        summary.rechecked += 1
        return
    if outcome.status == "failed":
        if previous:  # the old version is gone from disk or unreadable: don't serve stale text
            manifest.remove(outcome.rel)
            store.delete_paths([outcome.rel])
        manifest.put(FileRecord(outcome.rel, str(item.root), "", item.size, item.mtime_ns, "failed",
                                outcome.reason, None, 0, 0, now()))
        summary.failed.append((outcome.rel, outcome.reason or "failed"))
        return
    if previous:
        manifest.remove(outcome.rel)
        store.delete_paths([outcome.rel])
    for start in range(0, len(outcome.chunks), UPSERT_BATCH):
        batch = outcome.chunks[start:start + UPSERT_BATCH]
        store.upsert(batch, [bm25_document(c.embed_text()) for c in batch])
    manifest.put(FileRecord(outcome.rel, str(item.root), outcome.hash, item.size, item.mtime_ns, "ok",
                            "; ".join(outcome.warnings) or None, outcome.title, outcome.pages,
                            len(outcome.chunks), now()))
    (summary.updated if previous and previous.status == "ok" else summary.added).append(outcome.rel)
    summary.pages += outcome.pages
    summary.chunks_written += len(outcome.chunks)
    summary.warnings.extend((outcome.rel, w) for w in outcome.warnings)


def _fill_dense(corpus: Corpus, summary: IngestSummary, emit: ProgressCallback) -> None:
    store = corpus.store
    total = store.count(missing_dense=True)
    if not total:
        return
    emit(Progress("dense", done=0, total=total))
    try:
        embedder = corpus.embedder
        assert embedder is not None
        while batch := store.missing_dense(DENSE_BATCH):
            ids = [pid for pid, _ in batch]
            vectors = embedder.embed([text for _, text in batch])
            store.set_dense(ids, vectors)
            summary.chunks_embedded += len(ids)
            emit(Progress("dense", done=summary.chunks_embedded, total=total))
    except DocmemError as exc:
        summary.dense_error = str(exc)
        log.warning("dense embedding stopped: %s", exc)
