"""The service interface every front end talks to (DESIGN: "Front ends and the service layer").

The CLI, the TUI, the local server and the MCP server call a ``Service`` and never open a
store: ``LocalService`` runs the work in this process on corpora it owns, ``RemoteService``
asks the process that owns a corpus, and ``connect`` gives a ``Docmem`` that picks, per
corpus, whichever of the two applies. Results are the typed records of ``docmem.schema``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Iterator, Protocol, Sequence

from docmem.schema import CorpusInfo, IngestOptions, JobEvent, ReadPage, SearchPage

if TYPE_CHECKING:
    from pathlib import Path

    from docmem.agent.loop import Step
    from docmem.agent.recall import SessionInfo
    from docmem.config import Settings
    from docmem.embedders import DenseEmbedder
    from docmem.protocols import Processor
    from docmem.store.base import ArchivalStore
    from docmem.store.manifest import FileRecord


class ManifestView(Protocol):
    """The reads of a corpus manifest that the agent, the batch runner and the TUI make."""

    def get_meta(self, key: str) -> str | None: ...

    def get(self, path: str) -> "FileRecord | None": ...

    def files(self, root: str | None = None) -> Iterator["FileRecord"]: ...

    def paths(self) -> list[str]: ...

    def totals(self) -> tuple[int, int, int]: ...


class CorpusView(Protocol):
    """An open corpus as the agent sees it: ``store.Corpus`` in the owner, a proxy elsewhere."""

    name: str
    settings: "Settings"
    embedder_spec: str

    @property
    def store(self) -> "ArchivalStore": ...

    @property
    def manifest(self) -> ManifestView: ...

    @property
    def has_dense(self) -> bool: ...

    @property
    def embedder(self) -> "DenseEmbedder | None": ...


class IngestJob(Protocol):
    """An ingest submitted to a corpus's owner: one writer per corpus runs at a time."""

    id: str

    def events(self) -> Iterator[JobEvent]:
        """Every event from the job's start, blocking until it ends with JOB_DONE or JOB_FAILED."""
        ...

    def cancel(self) -> None:
        """Stop it at its next progress event; what it wrote stays, and a re-run resumes."""
        ...


class Service(Protocol):
    """docmem's Python API. ``corpus=None`` means the settings' corpus."""

    settings: "Settings"

    def corpora(self) -> list[CorpusInfo]: ...

    def delete_corpus(self, name: str) -> None: ...

    def open_corpus(self, name: str | None = None, *, create: bool = False,
                    embedder: str | None = None) -> CorpusView:
        """The corpus, open until ``release`` (or ``close``)."""
        ...

    def release(self, name: str) -> None:
        """Done with a corpus for now (the TUI switching corpus)."""
        ...

    def search(self, query: str, *, corpus: str | None = None, page: int = 1, page_size: int | None = None,
               path: str | None = None, ranking: str | None = None,
               candidates: int | None = None) -> SearchPage: ...

    def read(self, *, corpus: str | None = None, chunk_id: str | None = None, path: str | None = None,
             page: int | None = None, direction: str = "here", count: int = 4) -> ReadPage:
        """Read a document in order around a chunk id (or a path and page); next/previous read on."""
        ...

    def ingest(self, paths: Sequence["Path"], *, corpus: str | None = None,
               options: IngestOptions = IngestOptions()) -> IngestJob: ...

    def ask(self, question: str, *, corpus: str | None = None, session: str | None = None,
            max_steps: int = 24, processor: "Processor | None" = None,
            on_text: Callable[[str], None] | None = None) -> Iterator["Step"]:
        """The agent's typed steps (LLM calls, function calls, memory events), ending with a
        ``FinalStep`` whose result holds the verified citations and the status."""
        ...

    def sessions(self) -> list["SessionInfo"]: ...

    def close(self) -> None: ...
