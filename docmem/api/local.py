"""``LocalService``: the service in this process, on corpora it opens (and so owns).

Qdrant Edge is single-process with no read-only open, so a corpus open here is closed to
every other process; ``docmem.api.owner`` serves it to them on a socket while it is open.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from docmem.api import ops
from docmem.api.jobs import Job, JobQueue
from docmem.config import Settings
from docmem.errors import EmbedderMismatch
from docmem.schema import CorpusInfo, IngestOptions, ReadPage, SearchPage
from docmem.store.corpus import Corpus, delete_corpus, list_corpora, open_corpus, resolve_corpus

if TYPE_CHECKING:
    from docmem.agent.loop import Step
    from docmem.agent.recall import SessionInfo
    from docmem.protocols import Processor


class LocalService:
    """Opens corpora in-process and keeps them open until ``release`` or ``close``.

    ``on_open(corpus)`` is told of every corpus this service comes to own (the owner starts
    serving it); ``workers`` caps ingest worker processes (the TUI uses 1: spawned workers
    would write to the terminal Textual owns)."""

    def __init__(self, settings: Settings, *, on_open: Callable[[Corpus], None] | None = None,
                 on_release: Callable[[str], None] | None = None, workers: int | None = None) -> None:
        self.settings = settings
        self.jobs = JobQueue()
        self.workers = workers
        self._on_open = on_open
        self._on_release = on_release
        self._corpora: dict[str, Corpus] = {}
        self._lock = threading.RLock()

    # -- corpora ----------------------------------------------------------------------

    def owns(self, name: str) -> bool:
        return name in self._corpora

    def open_corpus(self, name: str | None = None, *, create: bool = False,
                    embedder: str | None = None) -> Corpus:
        name = resolve_corpus(self.settings, name, create=create)
        with self._lock:
            corpus = self._corpora.get(name)
            if corpus is None:
                corpus = open_corpus(self.settings, name, create=create, embedder=embedder)
                self._corpora[name] = corpus
                if self._on_open is not None:
                    self._on_open(corpus)
            elif embedder is not None and embedder != corpus.embedder_spec:
                raise EmbedderMismatch(
                    f"corpus '{name}' was built with embedder {corpus.embedder_spec}, not {embedder}: "
                    f"drop --embedder, or ingest into another --corpus")
            return corpus

    def release(self, name: str) -> None:
        """Close a corpus once its queued ingest jobs are done."""
        self.jobs.wait_idle(name)
        with self._lock:
            corpus = self._corpora.pop(name, None)
            if corpus is None:
                return
            if self._on_release is not None:
                self._on_release(name)
            corpus.close()

    def close(self) -> None:
        for name in list(self._corpora):
            self.release(name)

    def __enter__(self) -> "LocalService":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def corpora(self) -> list[CorpusInfo]:
        return list_corpora(self.settings)

    def delete_corpus(self, name: str) -> None:
        self.release(name)
        delete_corpus(self.settings, name)

    # -- reading ----------------------------------------------------------------------

    def search(self, query: str, *, corpus: str | None = None, page: int = 1, page_size: int | None = None,
               path: str | None = None, ranking: str | None = None,
               candidates: int | None = None) -> SearchPage:
        from docmem.search import search

        return search(self.open_corpus(corpus), query, page=page, page_size=page_size, path=path,
                      ranking=ranking, candidates=candidates)

    def read(self, *, corpus: str | None = None, chunk_id: str | None = None, path: str | None = None,
             page: int | None = None, direction: str = "here", count: int = 4) -> ReadPage:
        return ops.read_document(self.open_corpus(corpus), chunk_id=chunk_id, path=path, page=page,
                                 direction=direction, count=count)

    def ask(self, question: str, *, corpus: str | None = None, session: str | None = None,
            max_steps: int = 24, processor: "Processor | None" = None,
            on_text: Callable[[str], None] | None = None) -> Iterator["Step"]:
        return ops.ask_steps(self.open_corpus(corpus), self.settings, question, session=session,
                             max_steps=max_steps, processor=processor, on_text=on_text)

    def sessions(self) -> list["SessionInfo"]:
        return ops.saved_sessions(self.settings)

    # -- writing ----------------------------------------------------------------------

    def ingest(self, paths: Sequence[Path], *, corpus: str | None = None,
               options: IngestOptions = IngestOptions(), client_pid: int | None = None) -> Job:
        """Queue an ingest behind the corpus's running one (if any); watch it with ``events()``."""
        ops.check_paths(paths)
        opened = self.open_corpus(corpus, create=True, embedder=options.embedder)
        absolute = [Path(p).expanduser().absolute() for p in paths]
        return self.jobs.submit(opened.name, lambda emit: self._run_ingest(opened, absolute, options, emit),
                                owner_pid=client_pid)

    def _run_ingest(self, corpus: Corpus, paths: list[Path], options: IngestOptions,
                    emit: Callable[[Any], None]) -> dict[str, Any]:
        from ingest.pipeline import ingest

        # The job's chunk settings, on the same open store and the same (lazily loaded) embedder: the
        # pipeline loads it after its "loading embedder" event, so a client sees why it waits.
        view = copy.copy(corpus)
        view.settings = replace(corpus.settings, chunk_tokens=options.chunk_tokens,
                                chunk_overlap=options.chunk_overlap,
                                file_timeout=options.file_timeout or corpus.settings.file_timeout,
                                file_memory_mb=options.file_memory_mb or corpus.settings.file_memory_mb)
        workers = options.workers
        if self.workers is not None:
            workers = min(workers or self.workers, self.workers)
        summary = ingest(view, paths, excludes=options.excludes, workers=workers, dense=options.dense,
                         force=options.force, follow_symlinks=options.follow_symlinks,
                         in_process=True if self.workers == 1 else options.in_process, progress=emit)
        return summary.as_dict()
