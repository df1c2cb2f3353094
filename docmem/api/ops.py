"""What a service does on an open corpus, whoever owns it: reading a document in order and
running the agent. Both work on a ``CorpusView``, so a client runs them against the owner's
store exactly as the owner does (the LLM calls, and their credentials, stay with the caller)."""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

from docmem.errors import DocmemError
from docmem.schema import KIND_NOTE, Chunk, ReadPage

if TYPE_CHECKING:
    from docmem.agent.loop import Step
    from docmem.agent.recall import SessionInfo
    from docmem.api.protocol import CorpusView
    from docmem.config import Settings
    from docmem.protocols import Processor

DIRECTIONS = ("here", "next", "previous")


def read_document(view: "CorpusView", *, chunk_id: str | None = None, path: str | None = None,
                  page: int | None = None, direction: str = "here", count: int = 4,
                  notes_scope: str | None = None) -> ReadPage:
    """``count`` chunks of one document around an anchor: the anchor and what follows ("here"),
    or what comes after / before it ("next" / "previous"). Agent notes are read only by their
    own ``notes_scope`` (none by default), as search shows them."""
    if direction not in DIRECTIONS:
        raise DocmemError(f"direction must be one of {', '.join(DIRECTIONS)}, not {direction!r}")
    if not 1 <= count <= 50:
        raise DocmemError("count must be between 1 and 50")
    store = view.store

    def visible(chunks: list[Chunk]) -> list[Chunk]:
        return [c for c in chunks if c.visible_to(notes_scope)]

    if chunk_id:
        found = visible(store.by_chunk_ids([chunk_id]))
        if not found:
            raise DocmemError(f"no chunk {chunk_id} in corpus '{view.name}': use an id as search shows it")
        anchor = found[0]
    elif path:
        record = view.manifest.get(path)
        if record is None:
            raise DocmemError(f"no file {path!r} in corpus '{view.name}'")
        chunks = visible(store.on_page(path, page) if page else store.neighbours(path, 0, 0))
        if not chunks:
            raise DocmemError(f"{path} has no text on page {page} (it has {record.pages} pages)" if page
                              else f"{path} has no text")
        anchor = chunks[0]
    else:
        raise DocmemError("give a chunk id, or a path (and a page)")
    record = view.manifest.get(anchor.path)
    total = record.chunks if record else anchor.index + 1
    if direction == "previous":
        first, last = max(0, anchor.index - count), anchor.index - 1
    elif direction == "next":
        first, last = anchor.index + 1, anchor.index + count
    else:
        first, last = anchor.index, anchor.index + count - 1
    if last < first or first >= total:
        raise DocmemError(f"{anchor.path} has no chunk {direction} of {anchor.id} (it has {total} chunks)")
    chunks = visible(store.neighbours(anchor.path, first, last))
    if anchor.kind == KIND_NOTE:  # notes share one "document": a note is read alone
        chunks = [c for c in chunks if c.id == anchor.id]
    if not chunks:
        raise DocmemError(f"{anchor.path} has no chunks {first + 1}-{last + 1}")
    return ReadPage(anchor.path, anchor.title, chunks, total,
                    previous=chunks[0].id if chunks[0].index > 0 else None,
                    next=chunks[-1].id if chunks[-1].index + 1 < total else None)


def check_paths(paths: "Sequence[os.PathLike[str] | str]") -> None:
    """Refuse an ingest of nothing before any corpus is made for it."""
    if not any(os.path.lexists(os.path.expanduser(p)) for p in paths):
        raise DocmemError(f"no such file or directory: {', '.join(str(p) for p in paths)}")


def ask_steps(view: "CorpusView", settings: "Settings", question: str, *, session: str | None = None,
              max_steps: int = 24, processor: "Processor | None" = None,
              on_text: Callable[[str], None] | None = None) -> Iterator["Step"]:
    """Run the agent on one question. Unnamed sessions live in a throwaway recall, and the notes
    such a question stored die with it."""
    from docmem.agent.loop import Agent
    from docmem.agent.recall import Recall
    from docmem.agent.session import agent_options, make_processor, recall_path

    if not question.strip():
        raise DocmemError("empty question")
    processor = processor or make_processor(settings)
    recall = Recall(recall_path(settings), session) if session else Recall(":memory:", f"ask-{uuid.uuid4().hex[:8]}")
    try:
        agent = Agent(processor, view, recall, max_steps=max_steps, on_text=on_text,  # type: ignore[arg-type]
                      **agent_options(settings))
        try:
            yield from agent.run(question)
        finally:
            if not session:
                view.store.delete_scope(agent.state.notes_scope)
    finally:
        recall.close()


def saved_sessions(settings: "Settings") -> list["SessionInfo"]:
    """Sessions live in one SQLite file of the data home (WAL): any process may read them."""
    from docmem.agent.recall import Recall
    from docmem.agent.session import recall_path

    path = recall_path(settings)
    if not path.exists():
        return []
    recall = Recall(path, "")
    try:
        return recall.sessions()
    finally:
        recall.close()


def follow_job(job: Any, on_progress: Callable[[Any], None] | None = None,
               on_note: Callable[[str], None] | None = None) -> Any:
    """Watch an ingest job to its end: pipeline events to ``on_progress`` (as ``Progress``), its
    place in the queue of writers and resumptions to ``on_note``; the ``IngestSummary`` back.
    Ctrl+C stops the job (as it stopped an ingest run in-process)."""
    from ingest.pipeline import Progress

    from docmem.schema import JOB_DONE, JOB_FAILED, JOB_PROGRESS, JOB_QUEUED

    try:
        for event in job.events():
            if event.kind == JOB_QUEUED and on_note is not None:
                if event.error:
                    on_note(event.error)
                elif event.position:
                    ahead = "1 ingest" if event.position == 1 else f"{event.position} ingests"
                    on_note(f"waiting: {ahead} ahead of this one in this corpus (one writer at a time)")
            elif event.kind == JOB_PROGRESS and on_progress is not None and event.progress:
                on_progress(Progress(**event.progress))
            elif event.kind == JOB_FAILED:
                raise DocmemError(event.error or "the ingest failed")
            elif event.kind == JOB_DONE:
                return summary_from_dict(event.summary or {})
    except KeyboardInterrupt:
        job.cancel()
        raise
    raise DocmemError("the ingest job ended without a result")


def summary_from_dict(data: dict[str, Any]) -> Any:
    """An ``IngestSummary`` back from its ``as_dict`` (a job's summary as it crossed a socket)."""
    from ingest.pipeline import IngestSummary

    fields = dict(data)
    for key, second in (("skipped", "reason"), ("failed", "reason"), ("warnings", "message")):
        fields[key] = [(item["path"], item[second]) for item in fields.get(key) or []]
    known = set(IngestSummary.__dataclass_fields__)
    return IngestSummary(**{k: v for k, v in fields.items() if k in known})
