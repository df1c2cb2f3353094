"""The ingest run: discover -> load+chunk (worker processes) -> BM25 write -> dense fill.

Order of writes per file, so that a crash anywhere leaves a state the next run completes:
drop the manifest row and mark the path dirty (one transaction), delete the file's old points,
upsert the new ones, then commit the row and clear the mark (one transaction); a run starts
by deleting the points of paths left dirty. Dense vectors are filled afterwards from the store itself (points that lack one), so
an interrupted run resumes embedding exactly where it stopped.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from docmem.embedders import bm25_document
from docmem.errors import DocmemError
from docmem.store.corpus import Corpus
from docmem.store.manifest import DENSE_COMPLETE, FileRecord, now
from ingest.chunker import Chunker
from ingest.discover import Found, discover
from ingest.extract import Job, Outcome, file_hash, process
from ingest.loaders import unsupported_reason
from ingest.workers import FileBudget, run_pool

__all__ = ["FileBudget", "IngestSummary", "Progress", "ProgressCallback", "file_hash", "ingest"]

log = logging.getLogger(__name__)

UPSERT_BATCH = 256
DEFAULT_CHUNK_TOKENS = 200  # chosen on the NQ retrieval benchmark (bench/README.md)
DEFAULT_OVERLAP = 30
# Bump when a loader or the chunker changes the chunks a file gives: a corpus built by another
# version is then re-extracted on its next ingest, as when its chunk settings change.
# 2: chunks bounded exactly in tokens, headings kept with their paragraph, PDF dot leaders.
# 3: long paragraphs cut in linear time, in runs that leave room for the next overlap.
# 4: HTML admonition titles (DocBook's "Tip", "Note") and page chrome (navigation, Sphinx's
#    sidebar and "¶") open no section.
# 5: a chunk that starts at a heading says so (Chunk.opens_section, in its point id).
# 6: DocBook's and Texinfo's "Prev Up Next" panels and Texinfo's index "¶" links are page chrome.
# 7: so are the Apache manual's site header, footer, breadcrumb and language bars, and any
#    permalink ("¶", "§", a "#" in a heading).
# 8: Markdown's HTML comments are not text (Node.js's docs: version history under each API), nor
#    is HTML a browser does not show (hidden, display: none).
# 9: nor Word's hidden text, nor what an HTML mail hides (its body is read as a page).
# 10: nor reStructuredText's comments.
# 11: a chunk never spans two sections (a heading cuts as soon as the chunk holds text); more
#     generators' chrome (MkDocs, Read the Docs theme, Doxygen), zero-width characters.
EXTRACTION_VERSION = "11"
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
LOADING_EMBEDDER = "loading embedder"  # the message of the "dense" event sent before the model loads


class Interrupted(KeyboardInterrupt):
    """Ctrl+C (or SIGTERM/SIGHUP turned into an exception by the caller) stopped the run; every
    file counted in ``summary`` is saved, and running the same ingest again resumes."""

    def __init__(self, summary: "IngestSummary", cause: BaseException) -> None:
        super().__init__(str(cause))
        self.summary = summary
        self.cause = cause


@dataclass
class IngestSummary:
    corpus: str
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason): not a document
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    retried: list[str] = field(default_factory=list)  # unchanged files that had failed: read again
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


def _run_jobs(jobs: list[Job], workers: int, in_process: bool, budget: FileBudget) -> Iterator[Outcome | None]:
    """Outcomes as they complete: in this process (no budget), or in worker processes (with a
    ``None`` now and then while none completes)."""
    if in_process:
        for job in jobs:
            yield process(job)
        return
    yield from run_pool(jobs, max(1, min(workers, len(jobs))), budget, process, size=lambda job: job.size,
                        failed=lambda job, reason: Outcome(job.rel, "failed", reason=reason))


def ingest(corpus: Corpus, paths: list[Path], *, excludes: tuple[str, ...] = (),
           progress: ProgressCallback | None = None, workers: int | None = None,
           dense: bool = True, force: bool = False, follow_symlinks: bool = False,
           in_process: bool | None = None, budget: FileBudget | None = None) -> IngestSummary:
    """Bring the corpus in line with the files under ``paths``; ``force`` re-extracts all.

    ``follow_symlinks`` also follows links that lead outside an ingested folder. Files are read
    in ``workers`` processes, each file under ``budget`` (by default the corpus settings'
    file_timeout and file_memory_mb); ``in_process`` (the default for ``workers`` 0 or 1) reads
    them in this process instead, with no budget (tests, and the TUI, whose terminal a worker
    must not write to)."""
    summary = IngestSummary(corpus=corpus.name)
    try:
        return _ingest(corpus, paths, summary, excludes=excludes, progress=progress, workers=workers,
                       dense=dense, force=force, follow_symlinks=follow_symlinks, in_process=in_process,
                       budget=budget)
    except KeyboardInterrupt as exc:
        corpus.store.flush()
        raise Interrupted(summary, exc) from exc


def _ingest(corpus: Corpus, paths: list[Path], summary: IngestSummary, *, excludes: tuple[str, ...],
            progress: ProgressCallback | None, workers: int | None, dense: bool, force: bool,
            follow_symlinks: bool, in_process: bool | None, budget: FileBudget | None) -> IngestSummary:
    emit = progress or (lambda _event: None)
    settings = corpus.settings
    started = time.perf_counter()
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
    _finish_interrupted_rewrites(corpus)
    found = discover(paths, excludes, follow_symlinks)
    summary.failed.extend((p.rel, p.reason) for p in found.problems)
    summary.skipped.extend((p.rel, p.reason) for p in found.skipped)
    emit(Progress("scan", done=len(found.files), total=len(found.files)))

    manifest, store = corpus.manifest, corpus.store
    if corpus.has_dense:  # chunks are written before their dense vectors: search must check them
        manifest.set_meta(DENSE_COMPLETE, "0")
    roots = {str(r) for r in found.roots}
    seen = {p.rel for p in found.problems}
    jobs: list[Job] = []
    budget = budget or FileBudget(seconds=settings.file_timeout, memory_mb=settings.file_memory_mb)
    budget_key, previous_budget = f"{budget.seconds:g}/{budget.memory_mb}", manifest.get_meta("file_budget")
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
            if record.status != "failed":
                summary.unchanged.append(item.rel)
                continue
            if not may_have_changed(record.reason or "", budget_key != previous_budget):
                summary.failed.append((item.rel, f"{record.reason} (unchanged since last run; --force retries it)"))
                continue
            summary.retried.append(item.rel)
        sizes[item.rel] = item
        jobs.append(Job(str(item.path), item.rel, record.hash if record and not force else None,
                        tokens, overlap, item.confine, item.size, budget.memory_mb * 1024 * 1024))

    # Biggest first keeps both workers busy to the end.
    jobs.sort(key=lambda j: -sizes[j.rel].size)
    if in_process is None:  # as asked: 0 or 1 in this process; by default, worker processes
        in_process = workers is not None and workers <= 1
    workers = min(os.cpu_count() or 1, 8) if workers is None else workers
    total_bytes = sum(sizes[j.rel].size for j in jobs)
    emit(Progress("extract", done=0, total=len(jobs), bytes=0, message=f"{total_bytes} bytes"))
    done = 0

    def extracted(path: str | None = None) -> Progress:
        return Progress("extract", done=done, total=len(jobs), path=path, pages=summary.pages,
                        chunks=summary.chunks_written, bytes=summary.bytes)

    for outcome in _run_jobs(jobs, workers, in_process, budget):
        if outcome is None:  # a slow file: the same progress again, so that a cancel is seen
            emit(extracted())
            continue
        done += 1
        item = sizes[outcome.rel]
        _apply(corpus, item, outcome, summary)
        summary.bytes += item.size
        emit(extracted(outcome.rel))

    for record in list(manifest.files()):
        if record.root in roots and record.path not in seen:
            manifest.begin_rewrite(record.path)
            _fault("rewrite-begun")
            store.delete_paths([record.path])
            manifest.finish_removal(record.path)
            summary.removed.append(record.path)
    store.flush()
    manifest.set_meta("chunking", chunking)  # after the files it describes were rewritten
    manifest.set_meta("extraction", EXTRACTION_VERSION)
    manifest.set_meta("file_budget", budget_key)
    summary.seconds_extract = time.perf_counter() - started

    if corpus.has_dense:  # so that an interrupted dense stage leaves an honest count behind
        manifest.set_meta("dense_pending", str(store.count(missing_dense=True)))
    if dense and corpus.has_dense:
        dense_started = time.perf_counter()
        _fill_dense(corpus, summary, emit)
        summary.seconds_dense = time.perf_counter() - dense_started
    summary.dense_pending = store.count(missing_dense=True) if corpus.has_dense else 0
    manifest.set_meta("dense_pending", str(summary.dense_pending))  # for `docmem corpora`
    if corpus.has_dense:
        manifest.set_meta(DENSE_COMPLETE, "0" if summary.dense_pending else "1")
    manifest.set_meta("last_ingest", str(now()))
    if summary.chunks_written or summary.chunks_embedded or summary.removed:
        emit(Progress("index", message="optimizing the index"))
        store.optimize()
    store.flush()
    summary.seconds_total = time.perf_counter() - started
    emit(Progress("done"))
    return summary


# Failures that say something about this machine or this docmem, not about the file: tried
# again on every run (an extra installed, a file made readable, a bug fixed). Budget failures
# are tried again when the budget changed. Everything else (corrupt, encrypted, empty, no
# text) waits for the file to change, or --force.
_CAUSE_MAY_HAVE_GONE = ("permission denied", "cannot read", "file vanished", "needs the formats extra",
                        "unsupported unstructured version", "encrypted PDF needs a dependency",
                        "EPUB needs pandoc", "worker crashed", "worker failed", "unexpected error")
_OVER_BUDGET = ("took longer than", "too large when unpacked")


def may_have_changed(reason: str, budget_changed: bool) -> bool:
    """Whether an unchanged file that failed for ``reason`` is worth reading again."""
    return reason.startswith(_CAUSE_MAY_HAVE_GONE) or (budget_changed and reason.startswith(_OVER_BUDGET))


def _chunking(tokens: int | None, overlap: int | None, recorded: str | None) -> tuple[int, int]:
    """Explicit settings win; otherwise a corpus keeps what it was built with."""
    old_tokens, old_overlap = (int(x) for x in (recorded or f"{DEFAULT_CHUNK_TOKENS}/{DEFAULT_OVERLAP}").split("/"))
    return tokens or old_tokens, overlap if overlap is not None else old_overlap


def _apply(corpus: Corpus, item: Found, outcome: Outcome, summary: IngestSummary) -> None:
    manifest, store = corpus.manifest, corpus.store
    previous = manifest.get(outcome.rel)
    if outcome.status == "same":
        manifest.touch(outcome.rel, item.mtime_ns)
        summary.unchanged.append(outcome.rel)
        summary.rechecked += 1
        return
    # Journaled (see docmem.store.manifest): the row goes and the path is dirty before the store
    # changes, and both come back in one transaction after it holds exactly the new points.
    manifest.begin_rewrite(outcome.rel)
    _fault("rewrite-begun")
    if previous or store.count(paths=[outcome.rel]):  # a version is in the store: it goes first
        store.delete_paths([outcome.rel])
    _fault("old-deleted")
    if outcome.status == "failed":  # gone from disk or unreadable: don't serve the old text
        manifest.commit_file(FileRecord(outcome.rel, str(item.root), "", item.size, item.mtime_ns, "failed",
                                        outcome.reason, None, 0, 0, now()))
        summary.failed.append((outcome.rel, outcome.reason or "failed"))
        return
    for start in range(0, len(outcome.chunks), UPSERT_BATCH):
        batch = outcome.chunks[start:start + UPSERT_BATCH]
        store.upsert(batch, [bm25_document(c.embed_text()) for c in batch])
    _fault("new-written")
    manifest.commit_file(FileRecord(outcome.rel, str(item.root), outcome.hash, item.size, item.mtime_ns, "ok",
                                    "; ".join(outcome.warnings) or None, outcome.title, outcome.pages,
                                    len(outcome.chunks), now()))
    (summary.updated if previous and previous.status == "ok" else summary.added).append(outcome.rel)
    summary.pages += outcome.pages
    summary.chunks_written += len(outcome.chunks)
    summary.warnings.extend((outcome.rel, w) for w in outcome.warnings)


def _finish_interrupted_rewrites(corpus: Corpus) -> None:
    """A run killed mid-rewrite left its path dirty: delete whatever the store holds for it (old
    version, part of the new one); the file is then ingested again as new."""
    for path in corpus.manifest.dirty():
        corpus.store.delete_paths([path])
        corpus.manifest.finish_removal(path)


FAULT_ENV = "DOCMEM_INGEST_FAULT"


def _fault(point: str) -> None:
    """Test hook: die by SIGKILL at a named point of a rewrite (tests set DOCMEM_INGEST_FAULT)."""
    if os.environ.get(FAULT_ENV) == point:
        os.kill(os.getpid(), signal.SIGKILL)


def _fill_dense(corpus: Corpus, summary: IngestSummary, emit: ProgressCallback) -> None:
    store = corpus.store
    total = store.count(missing_dense=True)
    if not total:
        return
    emit(Progress("dense", done=0, total=total, message=LOADING_EMBEDDER))
    try:
        loading = time.perf_counter()
        embedder = corpus.embedder
        assert embedder is not None
        summary.seconds_embedder_load = time.perf_counter() - loading
        emit(Progress("dense", done=0, total=total))
        while batch := store.missing_dense(DENSE_BATCH):
            ids = [pid for pid, _ in batch]
            vectors = embedder.embed([text for _, text in batch])
            store.set_dense(ids, vectors)
            summary.chunks_embedded += len(ids)
            emit(Progress("dense", done=summary.chunks_embedded, total=total))
    except DocmemError as exc:
        summary.dense_error = str(exc)
        log.warning("dense embedding stopped: %s", exc)
