"""Building an agent for a command: the corpus, the LLM, recall storage and the session."""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from docmem.agent.loop import Agent
from docmem.agent.recall import Recall
from docmem.config import Settings
from docmem.errors import CorpusNotFound, DocmemError
from docmem.protocols import Processor
from docmem.store.corpus import open_corpus


def recall_path(settings: Settings) -> Path:
    return settings.home / "sessions.sqlite"


def make_processor(settings: Settings) -> Processor:
    """The one real processor; any OpenAI-compatible server (OpenAI, Ollama, vLLM, ...)."""
    from docmem.llm.openai import from_settings, options_from

    return from_settings(settings.model, settings.base_url, settings.api_key, **options_from(settings))


def agent_options(settings: Settings) -> dict[str, Any]:
    """The Agent keyword arguments every front end takes from the settings."""
    return {"window": settings.context_window, "model": settings.model, "page_size": settings.page_size,
            "tools": settings.tools, "note_tokens": settings.note_tokens, "first_search": settings.first_search,
            "constrain": settings.constrain}


@contextmanager
def open_agent(settings: Settings, *, session: str | None = None, processor: Processor | None = None,
               max_steps: int = 24, on_text: Callable[[str], None] | None = None) -> Iterator[Agent]:
    """An agent over the settings' corpus. Unnamed sessions live in a throwaway recall."""
    processor = processor or make_processor(settings)  # before the corpus: fail fast on config
    with open_corpus(settings) as corpus:
        if session:
            recall = Recall(recall_path(settings), session)
        else:
            recall = Recall(":memory:", f"ask-{uuid.uuid4().hex[:8]}")
        agent = Agent(processor, corpus, recall, max_steps=max_steps, on_text=on_text, **agent_options(settings))
        try:
            yield agent
        finally:
            if not session:  # a one-off question's notes die with it
                corpus.store.delete_scope(agent.state.notes_scope)
            recall.close()


def delete_session(service: Any, name: str) -> None:
    """Delete a saved session: its recall, its state, and the notes it stored in its corpus's
    archival storage (through ``service``, a ``docmem.api`` service, so a corpus another
    process serves is reached through it). The notes go first: a failure deletes nothing."""
    settings = service.settings
    info = next((s for s in service.sessions() if s.name == name), None)
    if info is None:
        raise DocmemError(f"no session '{name}': `docmem sessions` lists them")
    try:
        service.open_corpus(info.corpus).store.delete_scope(name)
    except CorpusNotFound:
        pass  # its corpus was deleted already, and its notes with it
    recall = Recall(recall_path(settings), name)
    try:
        recall.delete_session(name)
    finally:
        recall.close()
