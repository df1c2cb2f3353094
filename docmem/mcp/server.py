"""The MCP tools: search, read, ask, corpora, and (with ``allow_ingest``) ingest.

Descriptions are written for the calling LLM. Results are the same pages the agent and
``docmem search`` see (truthful header, stable chunk ids); ``ask`` runs docmem's own agent and
returns its verified citations and its status. Errors the caller can act on come back as
tool errors with docmem's one-line message.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, TypeVar

from pydantic import Field

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from docmem import __version__
from docmem.config import Settings
from docmem.display import printable
from docmem.errors import DocmemError
from docmem.schema import Hit, IngestOptions, ReadPage, SearchPage

T = TypeVar("T")

INSTRUCTIONS = (
    "docmem answers questions about large document collections with checkable citations. "
    "Use `search` to find passages (each has a chunk id), `read` to read a document in order "
    "around a chunk, and `ask` to have docmem's own agent research a question and return a cited, "
    "verified answer. `corpora` lists the collections."
)

Corpus = Annotated[str | None, Field(description="Corpus name (from `corpora`); omit for the default.")]


def _where(hit_chunk: Any) -> str:
    where = printable(hit_chunk.path)
    if hit_chunk.page is not None:
        where += f" p.{hit_chunk.page}"
    return where


def render_page(page: SearchPage) -> str:
    """The page as the agent's archival_search shows it: header, then a block per hit."""
    lines = [page.header() + f' for "{page.query}" ({page.mode})']
    for hit in page.hits:
        lines.append(_hit(hit))
    if page.hits and page.page < page.pages:
        lines.append(f"\nMore: search(query={page.query!r}, page={page.page + 1})")
    return "\n".join(lines)


def _hit(hit: Hit) -> str:
    c = hit.chunk
    heading = f" | {printable(' > '.join(c.headings))}" if c.headings else ""
    return f"\n[{hit.rank}] chunk {c.id} | {_where(c)}{heading}\n{printable(' '.join(c.text.split()))}"


def render_read(page: ReadPage) -> str:
    parts = [printable(page.header())]
    parts += [f"\n[chunk {c.id} | {_where(c)}]\n{printable(c.text.strip(), lines=True)}" for c in page.chunks]
    more = []
    if page.previous:
        more.append(f"previous: read(chunk_id={page.previous!r}, direction='previous')")
    if page.next:
        more.append(f"next: read(chunk_id={page.next!r}, direction='next')")
    return "\n".join(parts) + ("\n\n" + "; ".join(more) if more else "")


def _user_errors(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except DocmemError as exc:
        raise ToolError(str(exc)) from exc


def under_roots(paths: list[str], roots: list[Path]) -> list[Path]:
    """Each path, resolved (links followed), must lie inside one of the configured roots."""
    if not roots:
        raise DocmemError("ingest is allowed only under configured roots, and none is configured (--root)")
    out = []
    for raw in paths:
        resolved = Path(os.path.realpath(Path(raw).expanduser()))
        if not any(resolved == root or resolved.is_relative_to(root) for root in roots):
            raise DocmemError(f"{raw} is not under an allowed root ({', '.join(map(str, roots))})")
        out.append(resolved)
    return out


def build_server(service: Any, settings: Settings, *, allow_ingest: bool = False,
                 roots: list[str] | None = None, max_steps: int = 24) -> MCPServer:
    """The MCP server over a ``Service`` (``docmem.api``)."""
    server: MCPServer = MCPServer("docmem", instructions=INSTRUCTIONS, version=__version__)
    allowed = [Path(os.path.realpath(r)) for r in roots or []]

    @server.tool()
    def search(
        query: Annotated[str, Field(description="Keywords, a phrase, an exact identifier, or a question.")],
        page: Annotated[int, Field(description="Page of results, from 1.", ge=1)] = 1,
        path: Annotated[str | None, Field(description="Only files whose path matches this glob, e.g. '*.pdf'.")] = None,
        corpus: Corpus = None,
    ) -> str:
        """Search a document corpus (BM25 + dense, fused). Returns one page of passages under a
        header that tells the truth about the whole list ("Showing results 6-10 of 243 (page 2 of
        49)"). Each passage has a chunk id (cite it, or pass it to `read`), its file and page."""
        return _user_errors(lambda: render_page(service.search(query, corpus=corpus, page=page, path=path)))

    @server.tool()
    def read(
        chunk_id: Annotated[str | None, Field(description="A chunk id from `search` (or from a previous `read`).")] = None,
        path: Annotated[str | None, Field(description="A file path, instead of a chunk id (with `page` for PDFs).")] = None,
        page: Annotated[int | None, Field(description="Page number in `path`.", ge=1)] = None,
        direction: Annotated[Literal["here", "next", "previous"], Field(
            description="'here': the chunk and what follows; 'next'/'previous': read on from it.")] = "here",
        corpus: Corpus = None,
    ) -> str:
        """Read a document in order around a passage: the full text of a few consecutive chunks,
        then how to read on (next / previous)."""
        return _user_errors(lambda: render_read(service.read(corpus=corpus, chunk_id=chunk_id, path=path,
                                                             page=page, direction=direction)))

    @server.tool()
    def ask(
        question: Annotated[str, Field(description="The question, in plain words.")],
        corpus: Corpus = None,
    ) -> dict[str, Any]:
        """Have docmem's own agent research a question in the corpus (it pages through search
        results and documents) and answer it. Returns the answer, its status ("answered" with
        verified citations, "unverified" when the model replied citing nothing verifiable,
        "abstained" when the corpus does not contain it, or "error"), and citations whose quotes
        were verified against the cited chunks. Slower than `search` (several LLM calls)."""
        from docmem.agent.loop import FinalStep

        def run() -> dict[str, Any]:
            result = None
            for step in service.ask(question, corpus=corpus, max_steps=max_steps):
                if isinstance(step, FinalStep):
                    result = step.result
            assert result is not None
            return {"status": result.status, "answer": result.answer, "error": result.error,
                    "citations": [c.as_dict() for c in result.citations], "steps": result.steps}
        return _user_errors(run)

    @server.tool()
    def corpora() -> list[dict[str, Any]]:
        """The document corpora available: name, files, chunks, embedder."""
        return _user_errors(lambda: [i.as_dict() for i in service.corpora()])

    if allow_ingest:
        @server.tool()
        def ingest(
            paths: Annotated[list[str], Field(description="Files or folders to index (under the allowed roots).")],
            corpus: Corpus = None,
        ) -> dict[str, Any]:
            """Index files or folders into a corpus (incremental: unchanged files are skipped).
            Only paths under the server's configured roots are accepted."""
            from docmem.api.ops import follow_job

            def run() -> dict[str, Any]:
                job = service.ingest(under_roots(paths, allowed), corpus=corpus, options=IngestOptions(workers=1))
                summary = follow_job(job)
                return {k: summary.as_dict()[k] for k in ("corpus", "added", "updated", "removed", "failed",
                                                           "chunks_written")}
            return _user_errors(run)

    return server


def streamable_app(service: Any, settings: Settings, *, allow_ingest: bool,
                   roots: list[str]) -> tuple[Any, Any]:
    """(the streamable-HTTP ASGI app, its lifespan) for ``docmem serve --mcp``."""
    app = build_server(service, settings, allow_ingest=allow_ingest, roots=roots).streamable_http_app(
        streamable_http_path="/mcp", host="127.0.0.1")
    return app, app.router.lifespan_context
