"""The functions the agent calls to page through its memory.

Each is a plain typed function of the agent's state; ``tools.derive`` turns its signature
and docstring into the JSON schema the model sees. A ``ToolError`` goes back to the model
as a failed result (and forces a heartbeat); anything else is a bug or an I/O failure.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Annotated, Any, Callable, Literal

from pydantic import BaseModel, Field

from docmem.agent.citations import shown_quote, verify_quote
from docmem.agent.tools import ToolError, derive
from docmem.embedders import bm25_document
from docmem.errors import DocmemError
from docmem.schema import KIND_NOTE, Chunk
from docmem.search import search, shares_identifier

if TYPE_CHECKING:
    from docmem.agent.memory import MainContext
    from docmem.agent.recall import Recall
    from docmem.store.corpus import Corpus
    from docmem.tokens import TokenCounter

NOTES_PATH = "(agent notes)"
RECALL_PAGE_SIZE = 5
NOTE_TOKENS = 1000  # the largest note archival_insert accepts (setting note_tokens)


@dataclass
class CitationResult:
    chunk_id: str
    quote: str
    verified: bool
    score: float
    path: str | None = None
    page: int | None = None
    content_hash: str | None = None  # of the cited chunk's text, to detect stale answers
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Final:
    status: str  # "answered" | "abstained"
    text: str
    citations: list[CitationResult]


@dataclass
class State:
    """What the functions may read and change; owned by the loop."""

    corpus: "Corpus"
    ctx: "MainContext"
    recall: "Recall"
    counter: "TokenCounter"
    page_size: int = 5
    room: int = 1500  # tokens a result may take now; set by the loop before each call
    seen: dict[str, str] = field(default_factory=dict)  # chunk id -> text shown during this question, oldest first
    read: set[str] = field(default_factory=set)  # of those, the chunks open_document showed
    refused: set[str] = field(default_factory=set)  # chunks cited by a constrained answer refused as unsupported
    searches: list[dict[str, Any]] = field(default_factory=list)
    final: Final | None = None
    notes_scope: str = "default"  # archival_insert writes here; every reader sees only these notes
    note_tokens: int = NOTE_TOKENS
    on_message: Callable[[str], None] = lambda _text: None
    # A page's hits listed from its last to its best, so the best is read last (constrained
    # small models): the constrained 0.5B cited the page's 4th or 5th hit in 6 of 10
    # questions whatever held the answer, and the best hit held it in 13 of bench/real_model's 20.
    best_last: bool = False

    def saw(self, chunk_id: str, text: str, read: bool = False) -> None:
        """Record a chunk as shown, as the most recent (a constrained answer cites recent ones);
        ``read``: shown whole by open_document (a constrained model is not offered it again)."""
        self.seen.pop(chunk_id, None)
        self.seen[chunk_id] = text
        if read:
            self.read.add(chunk_id)


# -- archival storage ------------------------------------------------------------

# Below this dense cosine for the best candidate, a search result says no passage is close in
# meaning (a hint, not a verdict: the model reads and decides). Measured with the bundled
# embedder over sample_corpora: 2 of 84 answerable paraphrased questions fall below 0.35, and
# 17 of 48 PostgreSQL questions that corpus cannot answer, 3 of bench/real_model's 5 (0.22-0.31).
WEAK_MATCH = 0.35


def _location(chunk: Chunk) -> str:
    where = chunk.path
    if chunk.page is not None:
        where += f" p.{chunk.page}" + (f"-{chunk.page_end}" if chunk.page_end not in (None, chunk.page) else "")
    return where


def _visible(state: State, chunks: list[Chunk]) -> list[Chunk]:
    """The chunks this agent may read: documents, and its own scope's notes only."""
    return [c for c in chunks if c.visible_to(state.notes_scope)]


def _fit(state: State, text: str, tokens: int) -> str:
    if state.counter.count(text) <= tokens:
        return text
    return state.counter.truncate(text, max(tokens, 8)).rstrip() + " …[cut]"


def archival_search(
    state: State,
    query: Annotated[str, Field(description="What to look for: keywords, a phrase or a question.")],
    page: Annotated[int, Field(description="Page of results, from 1.", ge=1)] = 1,
    path: Annotated[str | None, Field(description="Only files whose path matches this glob, e.g. '*.pdf'.")] = None,
) -> str:
    """Search archival storage (the document corpus and stored notes); returns one page of results.

    Hits marked (seen) were already shown during this question."""
    try:
        result = search(state.corpus, query, page=page, page_size=state.page_size, path=path,
                        notes_scope=state.notes_scope)
    except DocmemError as exc:
        raise ToolError(str(exc)) from exc
    new = [h for h in result.hits if h.chunk.id not in state.seen]
    weak = (result.closest is not None and result.closest < WEAK_MATCH
            and not shares_identifier(query, [h.chunk.text for h in result.hits]))
    state.searches.append({"query": query, "page": page, "path": path, "total": result.total,
                           "capped": result.capped, "shown": len(result.hits), "new": len(new), "weak": weak,
                           "hits": [h.chunk.id for h in result.hits]})
    if result.total and not result.hits:
        raise ToolError(result.header() + ": ask for a lower page")
    header = result.header() if not result.total else f'{result.header()} for "{query}"'
    header += f" in {path}" if path else ""
    if not result.hits:
        return header
    per_hit = max(40, (state.room - state.counter.count(header) - 20) // len(result.hits) - 30)
    lines = [header, "(Listed from the last to the best: hit [1] comes at the end.)"] if state.best_last and \
        len(result.hits) > 1 else [header]
    for hit in reversed(result.hits) if state.best_last else result.hits:
        c = hit.chunk
        seen = c.id in state.seen
        heading = f" | {' > '.join(c.headings)}" if c.headings else ""
        lines.append(f"\n[{hit.rank}] chunk {c.id} | {_location(c)}{heading}" + (" (seen)" if seen else ""))
        shown = _fit(state, " ".join(c.text.split()), min(per_hit, 40) if seen else per_hit)
        lines.append(shown)
        # shown whole: read (a constrained model is not offered to open it; the 0.5B opened the
        # page's last hit, whatever held the answer, when every hit was there in full)
        state.saw(c.id, c.text, read=c.id in state.read or not shown.endswith(" …[cut]"))
    if weak and page == 1:  # last: read just before deciding
        lines.append(f"\n[No passage is close in meaning to the query (best similarity {result.closest:.2f}): "
                     "the documents may not cover it.]")
    return "\n".join(lines)


def archival_insert(
    state: State,
    content: Annotated[str, Field(description="The fact or note to store, self-contained, with its sources.")],
) -> str:
    """Store a fact in archival storage, so later searches (and later questions) can find it."""
    if not content.strip():
        raise ToolError("content is empty")
    tokens = state.counter.count(content)
    if tokens > state.note_tokens:
        raise ToolError(f"the note has {tokens} tokens; a note holds at most {state.note_tokens}: store the "
                        "fact itself, in your own words, with its chunk ids (split a long one into several notes)")
    digest = hashlib.sha256(f"{state.notes_scope}\n{content}".encode()).hexdigest()
    chunk = Chunk(doc_hash=digest, index=0, text=content, path=NOTES_PATH, title="Agent note",
                  char_end=len(content), kind=KIND_NOTE, scope=state.notes_scope)
    embedder = state.corpus.embedder
    dense = embedder.embed([chunk.embed_text()]) if embedder else None
    state.corpus.store.upsert([chunk], [bm25_document(chunk.embed_text())], dense)
    return f"Stored as chunk {chunk.id}."


def open_document(
    state: State,
    chunk_id: Annotated[str | None, Field(description="A chunk id from a search result.")] = None,
    path: Annotated[str | None, Field(description="A file path, with `page`, instead of a chunk id.")] = None,
    page: Annotated[int | None, Field(description="Page number in `path` (PDF pages).", ge=1)] = None,
    direction: Annotated[Literal["here", "next", "previous"], Field(
        description="'here' reads the chunk itself and what follows; 'next'/'previous' read on from it.")] = "here",
) -> str:
    """Read a document sequentially around a chunk (or a page): the full text, then what follows."""
    store = state.corpus.store
    if chunk_id:
        found = _visible(state, store.by_chunk_ids([chunk_id]))
        if not found:
            raise ToolError(f"no chunk {chunk_id}: use an id exactly as a search result shows it")
        anchor = found[0]
    elif path and page:
        on_page = _visible(state, store.on_page(path, page))
        if not on_page:
            record = state.corpus.manifest.get(path)
            if record is None:
                raise ToolError(f"no file {path!r} in the corpus")
            raise ToolError(f"{path} has no text on page {page} (it has {record.pages} pages)")
        anchor = on_page[0]
    else:
        raise ToolError("give chunk_id, or path and page")
    record = state.corpus.manifest.get(anchor.path)
    count = record.chunks if record else anchor.index + 1
    if direction == "previous":
        first, last = max(0, anchor.index - 4), anchor.index - 1
    elif direction == "next":
        first, last = anchor.index + 1, anchor.index + 4
    else:
        first, last = anchor.index, anchor.index + 3
    if last < first or first >= count:
        raise ToolError(f"{anchor.path} has no chunk {direction} of {anchor.id} (it has {count} chunks)")
    chunks = _visible(state, store.neighbours(anchor.path, first, last))
    if anchor.kind == KIND_NOTE:  # notes share one "document": a note is read alone
        chunks = [c for c in chunks if c.id == anchor.id]
    if not chunks:
        raise ToolError(f"{anchor.path} has no chunk {direction} of {anchor.id}")
    if direction == "previous":
        chunks = chunks[::-1]  # nearest first, so what fits is what is closest
    parts: list[str] = []
    used = 0
    for chunk in chunks:
        block = f"\n[chunk {chunk.id} | {_location(chunk)}]\n{chunk.text.strip()}"
        tokens = state.counter.count(block)
        if parts and used + tokens > state.room - 60:
            break
        parts.append(_fit(state, block, state.room - 60 - used))
        used += tokens
        state.saw(chunk.id, chunk.text, read=True)
    shown = chunks[:len(parts)]
    if direction == "previous":
        parts, shown = parts[::-1], shown[::-1]
    title = f"{anchor.path} ({anchor.title}), chunks {shown[0].index + 1}-{shown[-1].index + 1} of {count}"
    more = []
    if shown[0].index > 0:
        more.append(f"previous: open_document(chunk_id='{shown[0].id}', direction='previous')")
    if shown[-1].index + 1 < count:
        more.append(f"next: open_document(chunk_id='{shown[-1].id}', direction='next')")
    return title + "".join(parts) + ("\n\n" + "; ".join(more) if more else "")


# -- recall storage ---------------------------------------------------------------


def _events(state: State, events: list[Any], total: int, page: int, what: str) -> str:
    pages = max(1, -(-total // RECALL_PAGE_SIZE))
    if not total:
        return f"No messages {what}."
    if not events:
        raise ToolError(f"page {page} is past the last page ({pages})")
    first = (page - 1) * RECALL_PAGE_SIZE + 1
    lines = [f"Showing messages {first}-{first + len(events) - 1} of {total} {what} (page {page} of {pages})"]
    per = max(40, state.room // max(1, len(events)) - 20)
    for e in events:
        lines.append(f"[{e.when()}] {e.role}: " + _fit(state, " ".join(e.content.split()), per))
    return "\n".join(lines)


def conversation_search(
    state: State,
    query: Annotated[str, Field(description="Words to look for in past messages.")],
    page: Annotated[int, Field(description="Page of results, from 1.", ge=1)] = 1,
) -> str:
    """Search recall storage: every past message of this session, including evicted ones."""
    events, total = state.recall.search(query, page, RECALL_PAGE_SIZE)
    return _events(state, events, total, page, f'matching "{query}"')


def _parse_date(text: str, end: bool) -> float:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ToolError(f"bad date {text!r}: use YYYY-MM-DD or YYYY-MM-DDTHH:MM") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    if end and len(text.strip()) <= 10:  # a whole day: include all of it
        moment += timedelta(days=1)
    return moment.timestamp()


def conversation_search_date(
    state: State,
    start: Annotated[str, Field(description="Start date, YYYY-MM-DD (UTC), inclusive.")],
    end: Annotated[str, Field(description="End date, YYYY-MM-DD (UTC), inclusive.")],
    page: Annotated[int, Field(description="Page of results, from 1.", ge=1)] = 1,
) -> str:
    """Read past messages of this session between two dates, oldest first."""
    events, total = state.recall.between(_parse_date(start, False), _parse_date(end, True), page,
                                         RECALL_PAGE_SIZE)
    return _events(state, events, total, page, f"from {start} to {end}")


# -- working context ----------------------------------------------------------------


def working_context_append(
    state: State,
    text: Annotated[str, Field(description="A line to add to your working context (notes, findings, leads).")],
) -> str:
    """Add a note to your working context, which stays in view for the whole session."""
    new = (state.ctx.working + "\n" + text.strip()).strip()
    used = state.counter.count(new)
    if used > state.ctx.working_budget:
        raise ToolError(f"working context would use {used} of {state.ctx.working_budget} tokens: "
                        "shorten it with working_context_replace first")
    state.ctx.working = new
    return f"Working context: {used}/{state.ctx.working_budget} tokens."


def working_context_replace(
    state: State,
    old: Annotated[str, Field(description="Exact text now in working context.")],
    new: Annotated[str, Field(description="Text to put in its place (empty to delete).")],
) -> str:
    """Replace (or delete) text in your working context."""
    occurrences = state.ctx.working.count(old) if old else 0
    if occurrences != 1:
        raise ToolError(f"'old' must occur exactly once in working context; it occurs {occurrences} times")
    candidate = state.ctx.working.replace(old, new)
    used = state.counter.count(candidate)
    if used > state.ctx.working_budget:
        raise ToolError(f"working context would use {used} of {state.ctx.working_budget} tokens")
    state.ctx.working = candidate
    return f"Working context: {used}/{state.ctx.working_budget} tokens."


# -- talking to the user --------------------------------------------------------------


def send_message(
    state: State,
    text: Annotated[str, Field(description="What to tell the user now (progress, a clarifying question).")],
) -> str:
    """Tell the user something without finishing (e.g. what you are doing or a question)."""
    state.on_message(text)
    return "Sent."


class Citation(BaseModel):
    chunk_id: str = Field(description="The id of the chunk that supports the claim.")
    quote: str = Field(description="A few words copied exactly from that chunk (a phrase under 20 words, not the whole chunk).")


def answer(
    state: State,
    text: Annotated[str, Field(description="The final answer, with [1], [2] ... markers for the citations.")],
    citations: Annotated[list[Citation], Field(description="Sources, in marker order; each a chunk id and a verbatim quote.")] = [],  # noqa: B006
    not_found: Annotated[bool, Field(description="true if the corpus does not contain the answer.")] = False,
) -> str:
    """Give the final answer, with each citation's quote copied verbatim from its chunk."""
    if not citations and not not_found:
        raise ToolError("an answer needs at least one citation (chunk_id + verbatim quote), "
                        "or not_found: true if the corpus does not contain it")
    chunks = {c.id: c for c in _visible(state, state.corpus.store.by_chunk_ids([c.chunk_id for c in citations]))}
    results, problems = [], []
    for n, citation in enumerate(citations, start=1):
        chunk = chunks.get(citation.chunk_id)
        if chunk is None:
            problems.append(f"[{n}] no chunk {citation.chunk_id}")
            continue
        check = verify_quote(citation.quote, chunk.text)
        results.append(CitationResult(
            citation.chunk_id, shown_quote(citation.quote) if check.ok else citation.quote, check.ok, round(check.score, 3), chunk.path, chunk.page,
            hashlib.sha256(chunk.text.encode()).hexdigest()[:16], check.reason))
        if not check.ok:
            problems.append(f"[{n}] {citation.chunk_id}: {check.reason}; re-read it with "
                            f"open_document(chunk_id='{citation.chunk_id}') and copy the words exactly")
    if problems:
        raise ToolError("citations not verified, answer not accepted: " + " | ".join(problems))
    status = "abstained" if not_found else "answered"
    text_out = text
    if not_found:
        searched = "; ".join(f'"{s["query"]}" p.{s["page"]} ({s["total"]} results)' for s in state.searches)
        seen = len(state.seen)
        text_out = f"{text}\n\nSearched: {searched or 'nothing'}; {seen} passages seen."
    state.final = Final(status, text_out, results)
    return "Answer accepted."


TOOLS = [derive(f) for f in (archival_search, archival_insert, open_document, conversation_search,
                             conversation_search_date, working_context_append, working_context_replace,
                             send_message)] + [derive(answer, terminal=True)]
