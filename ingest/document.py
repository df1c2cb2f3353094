"""What a loader returns: the document's text as ordered blocks that keep their place."""

from __future__ import annotations

from dataclasses import dataclass, field


class LoadError(Exception):
    """A file that cannot be read; the message is the one-line reason shown to the user."""


@dataclass(frozen=True)
class Block:
    """A paragraph-like run of text: the chunker prefers to cut between blocks."""

    text: str
    page: int | None = None  # 1-based page (PDF, slides); None for flowing formats
    headings: tuple[str, ...] = ()  # heading path in force at this block, outermost first
    is_heading: bool = False  # the block is itself a heading


@dataclass
class Document:
    title: str
    blocks: list[Block]
    pages: int = 0  # pages (PDF) or slides; 0 for flowing formats
    warnings: list[str] = field(default_factory=list)  # e.g. "pages 3-5 have no text"
