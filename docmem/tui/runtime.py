"""The chat session behind the TUI: one corpus, one recall session, one agent. No Textual here.

Everything here runs in the app's worker threads; widgets only ever see the values it
returns (``Snapshot``, ``Turn``). Corpora come from the service (``docmem.api``): the chat
owns its corpus and serves it to other docmem processes while it is open, or is a client of
the process that owns it. Switching corpus opens the new one, moves the agent over, then
releases the old one; an ingest is a job of the corpus's owner.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from docmem.agent.functions import CitationResult
from docmem.agent.loop import Agent, AnswerResult
from docmem.agent.memory import Usage
from docmem.agent.recall import Recall
from docmem.agent.session import agent_options, recall_path
from docmem.config import Settings
from docmem.protocols import LLMError, Message, Processor
from docmem.api.ops import follow_job, saved_sessions  # noqa: F401  (the TUI's session list)
from docmem.api.owner import Docmem
from docmem.api.protocol import CorpusView
from docmem.schema import IngestOptions
from docmem.store.corpus import default_corpus

if TYPE_CHECKING:
    from ingest.pipeline import IngestSummary, Progress

# What the loop itself pushes as "user" messages: not shown as the person's words.
_LOOP_PREFIXES = ("[system]", "[system alert]", "[heartbeat]", "[memory]")


class Unconfigured:
    """Stands in for the LLM when none is configured: every question gets the reason back."""

    model = "none"

    def __init__(self, error: LLMError) -> None:
        self.error = error

    def complete(self, messages: list[Message], tools: list[dict[str, Any]],
                 on_text: Callable[[str], None] | None = None, *,
                 schema: dict[str, Any] | None = None) -> Any:
        raise self.error


@dataclass(frozen=True)
class Snapshot:
    """The memory system at one moment, for the gauge and the memory pane."""

    usage: Usage
    recall_events: int
    archival_points: int
    hidden: int
    queue_messages: int
    working: str
    working_budget: int
    summary: str


@dataclass(frozen=True)
class CorpusLabel:
    name: str
    files: int
    chunks: int
    embedder: str

    def __str__(self) -> str:
        return f"{self.name} · {_plural(self.files, 'file')} · {_plural(self.chunks, 'chunk')}"


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


@dataclass(frozen=True)
class Turn:
    """One thing in the conversation history: ``kind`` is user | answer | message | notice."""

    kind: str
    text: str = ""
    result: AnswerResult | None = None


def new_session_name() -> str:
    return time.strftime("chat-%Y%m%d-%H%M%S")




class Workspace:
    def __init__(self, settings: Settings, processor: Processor, session: str, *,
                 corpus: str | None = None, max_steps: int = 24) -> None:
        self.settings = settings
        self.processor = processor
        self.session = session
        self.max_steps = max_steps
        self.recall = Recall(recall_path(settings), session)
        self.corpus_name = corpus or self._session_corpus() or default_corpus(settings, strict=False)
        self.service = Docmem(settings, workers=1)  # spawned workers would write to Textual's terminal
        self.corpus: CorpusView | None = None
        self.agent: Agent | None = None
        self.on_text: Callable[[str], None] | None = None

    def _session_corpus(self) -> str | None:
        return next((s.corpus for s in self.recall.sessions() if s.name == self.session), None)

    # -- opening, switching, closing ---------------------------------------------------

    def open(self, name: str | None = None, *, create: bool = False) -> None:
        """Open corpus ``name`` (default: the current one) with an agent resuming the session."""
        name = name or self.corpus_name
        if self.agent is not None:
            self.agent.save()  # the new agent restores what the old one knew
        corpus = self.service.open_corpus(name, create=create)
        try:
            agent = Agent(self.processor, corpus, self.recall, max_steps=self.max_steps,  # type: ignore[arg-type]
                          on_text=self._text, **agent_options(self.settings))
        except BaseException:
            self.service.release(corpus.name)
            raise
        old = self.corpus
        self.corpus, self.agent, self.corpus_name = corpus, agent, corpus.name
        agent.save()  # the session is listed (and resumable) from its first moment
        if old is not None and old.name != corpus.name:
            self.service.release(old.name)

    def close(self) -> bool:
        """Save and close; a session in which nothing was ever said is not kept. True: saved."""
        if self.agent is not None:
            self.agent.save()
        self.service.close()
        self.agent = self.corpus = None
        kept = self.recall.count() > 0
        if not kept:
            self.recall.delete_session(self.session)
        self.recall.close()
        return kept

    def _text(self, delta: str) -> None:
        if self.on_text is not None:
            self.on_text(delta)

    # -- ingest -------------------------------------------------------------------------

    def ingest(self, paths: list[Path], progress: Callable[[Progress], None]) -> IngestSummary:
        """Ingest into the active corpus, creating it if there is none: a job of the corpus's owner
        (this process, with one worker, or the process it is a client of)."""
        job = self.service.ingest(paths, corpus=self.corpus_name, options=IngestOptions(workers=1))
        summary = follow_job(job, progress)
        if self.corpus is None:
            self.open()
        return summary

    # -- what the widgets show ------------------------------------------------------------

    def corpus_label(self) -> CorpusLabel | None:
        if self.corpus is None:
            return None
        files, _failed, chunks = self.corpus.manifest.totals()
        return CorpusLabel(self.corpus.name, files, chunks, self.corpus.embedder_spec)

    def snapshot(self) -> Snapshot | None:
        agent = self.agent
        if agent is None:
            return None
        ctx = agent.ctx
        usage = ctx.usage(agent.counter, agent.schemas, agent.window, agent.reserve)
        return Snapshot(usage, self.recall.count(), agent.corpus.store.count(), ctx.hidden, len(ctx.queue),
                        ctx.working, ctx.working_budget, ctx.summary)

    def history(self, limit: int = 400) -> list[Turn]:
        """The conversation so far, rebuilt from recall storage (evicted messages included)."""
        turns = history_turns(self.recall.history(limit))
        cited = [c for t in turns if t.result for c in t.result.citations]
        if cited and self.corpus is not None:
            scope = self.agent.state.notes_scope if self.agent is not None else None
            chunks = {c.id: c for c in self.corpus.store.by_chunk_ids(sorted({c.chunk_id for c in cited}))
                      if c.visible_to(scope)}
            for c in cited:
                if c.chunk_id in chunks:
                    c.path, c.page = chunks[c.chunk_id].path, chunks[c.chunk_id].page
        return turns


def history_turns(messages: list[Message]) -> list[Turn]:
    """User questions, accepted answers, messages to the user and interruptions, in order."""
    turns: list[Turn] = []
    answers: dict[str, dict[str, Any]] = {}
    for m in messages:
        role, content = m.get("role"), m.get("content") or ""
        if role == "user":
            if content.startswith("[system] The user interrupted you"):
                turns.append(Turn("notice", "Interrupted by the user."))
            elif not content.startswith(_LOOP_PREFIXES):
                turns.append(Turn("user", content))
        elif role == "assistant":
            calls = m.get("tool_calls") or []
            if not calls and content.strip():
                turns.append(Turn("message", content.strip()))
            for call in calls:
                fn = call.get("function", {})
                try:
                    args = json.loads(fn.get("arguments") or "{}")
                except json.JSONDecodeError:
                    continue
                if not isinstance(args, dict):
                    continue
                if fn.get("name") == "answer":
                    answers[call.get("id", "")] = args
                elif fn.get("name") == "send_message" and args.get("text"):
                    turns.append(Turn("message", str(args["text"])))
        elif role == "tool" and content == "Answer accepted.":
            args = answers.pop(m.get("tool_call_id", ""), None)
            if args is None:
                continue
            citations = [CitationResult(str(c.get("chunk_id", "")), str(c.get("quote", "")), True, 1.0)
                         for c in args.get("citations") or [] if isinstance(c, dict)]
            status = "abstained" if args.get("not_found") else "answered"
            turns.append(Turn("answer", result=AnswerResult(status, str(args.get("text", "")), citations)))
    return turns
