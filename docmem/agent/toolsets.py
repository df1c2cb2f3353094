"""Which functions the model is offered: the full set, or a compact one for small windows.

The full set (nine functions, ~1,100 tokens of schemas) is the MemGPT memory hierarchy.
A small model in a 4k window cannot afford it and is confused by it: ``minimal`` offers
only search, read and answer, with one-line descriptions (about a third of the tokens;
``docmem ask --tools`` and bench/real_model report the exact counts). ``auto`` picks
minimal below ``AUTO_MINIMAL_BELOW`` tokens of window.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from docmem.agent.functions import TOOLS
from docmem.agent.tools import Tool, compact
from docmem.config import AUTO_MINIMAL_BELOW
from docmem.errors import DocmemError

MODES = ("auto", "minimal", "full")


class ShortCitation(BaseModel):
    chunk_id: str = Field(description="Chunk id.")
    quote: str = Field(description="A few exact words from that chunk, under 20.")


def _by_name(name: str) -> Tool:
    return next(t for t in TOOLS if t.name == name)


MINIMAL: list[Tool] = [
    compact(_by_name("archival_search"), "Search the documents; one page of hits with chunk ids.",
            {"query": "Keywords or a question.", "page": "Page, from 1."}),
    compact(_by_name("open_document"), "Read a chunk in full, and what follows it.",
            {"chunk_id": "Chunk id from a hit.", "direction": "here, next or previous."},
            types={"chunk_id": str}, required=frozenset({"chunk_id"})),
    compact(_by_name("answer"), "Final answer; cite each claim with a chunk id and an exact quote.",
            {"text": "The answer, with [1] markers.", "citations": "One per marker.",
             "not_found": "true if the documents lack the answer."},
            types={"citations": Annotated[list[ShortCitation], Field()]}),
]


def select(mode: str, window: int) -> tuple[str, list[Tool]]:
    """(the mode in effect, its tools)."""
    if mode not in MODES:
        raise DocmemError(f"unknown tool set {mode!r}: use {', '.join(MODES)}")
    if mode == "auto":
        mode = "minimal" if window < AUTO_MINIMAL_BELOW else "full"
    return mode, (MINIMAL if mode == "minimal" else list(TOOLS))
