"""What the source viewer shows: a cited chunk in its page (PDF) or section, and reading on.

No Textual here: ``SourceReader`` turns a citation into ``Passage``s (text, the span of the
quote, the span of the cited chunk) that the viewer only renders. Overlapping chunks are
merged by their character spans, so a page reads as the document does, without repeats.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import TYPE_CHECKING

from docmem.agent.citations import _TRANSLATE  # the same character folding as the verifier
from docmem.agent.functions import NOTES_PATH, CitationResult
from docmem.schema import Chunk

if TYPE_CHECKING:
    from docmem.store.corpus import Corpus

SECTION_CHUNKS = 8  # at most this many chunks per "section" view (documents without pages)
_LINE_HYPHEN = re.compile(r"-[ \t]*\n\s*")


@dataclass(frozen=True)
class Passage:
    path: str
    label: str  # "page 12 of 80" | "chunks 3-7 of 40 · Intro > Setup"
    text: str
    quote: tuple[int, int] | None  # span of the cited quote in ``text``
    cited: tuple[int, int] | None  # span of the cited chunk in ``text``
    first: int  # chunk indexes shown
    last: int
    page: int | None
    has_previous: bool
    has_next: bool


# -- finding a quote the way the verifier does (case, whitespace, quotes, hyphens) ----------


def _folded(text: str) -> tuple[str, list[int]]:
    """``text`` folded like citations.normalize, and for each folded char its original index."""
    skip: set[int] = set()
    for match in _LINE_HYPHEN.finditer(text):
        skip.update(range(match.start(), match.end()))
    out: list[str] = []
    where: list[int] = []
    space = True
    for i, ch in enumerate(text):
        if i in skip:
            continue
        for c in unicodedata.normalize("NFKC", ch).translate(_TRANSLATE).lower():
            if c.isspace():
                if space:
                    continue
                c, space = " ", True
            else:
                space = False
            out.append(c)
            where.append(i)
    return "".join(out), where


def find_quote(text: str, quote: str, near: tuple[int, int] | None = None) -> tuple[int, int] | None:
    """The span of ``quote`` in ``text`` (case/whitespace-insensitive, fuzzy as a last resort).

    Among several occurrences the one overlapping ``near`` (the cited chunk) wins."""
    folded, where = _folded(text)
    q = _folded(quote)[0].strip(" .…\"'")
    if not q or not folded:
        return None
    spans = []
    start = folded.find(q)
    while start != -1:
        spans.append((where[start], where[start + len(q) - 1] + 1))
        start = folded.find(q, start + 1)
    if spans:
        if near:
            inside = [s for s in spans if s[0] < near[1] and s[1] > near[0]]
            spans = inside or spans
        return spans[0]
    # Verified fuzzily (a changed word, a dropped hyphen): mark the best-matching stretch.
    lo, hi = (0, len(folded))
    if near:
        lo = next((k for k, i in enumerate(where) if i >= near[0]), 0)
        hi = next((k for k, i in enumerate(where) if i >= near[1]), len(folded))
    match = SequenceMatcher(None, folded, q, autojunk=False).find_longest_match(lo, hi, 0, len(q))
    if match.size < min(8, len(q)):
        return None
    first = max(0, match.a - match.b)
    last = min(len(folded), first + len(q)) - 1
    return where[first], where[last] + 1


# -- merging chunks ---------------------------------------------------------------------------


def merge(chunks: list[Chunk]) -> tuple[str, dict[int, tuple[int, int]]]:
    """Chunks of one document (any order) as one text, and each chunk's span in it."""
    parts: list[str] = []
    spans: dict[int, tuple[int, int]] = {}
    length = 0
    end: int | None = None  # char_end (in the document) of what has been written
    previous: int | None = None
    for chunk in sorted(chunks, key=lambda c: c.index):
        if end is not None and previous is not None and chunk.index == previous + 1 and chunk.char_start < end:
            overlap = min(end - chunk.char_start, len(chunk.text))
            start = length - overlap
            piece = chunk.text[overlap:]
        else:
            if parts:
                gap = "\n\n" if previous is not None and chunk.index == previous + 1 else "\n\n[…]\n\n"
                parts.append(gap)
                length += len(gap)
            start = length
            piece = chunk.text
        parts.append(piece)
        length += len(piece)
        spans[chunk.index] = (start, start + len(chunk.text))
        end = max(end or 0, chunk.char_end)
        previous = chunk.index
    return "".join(parts), spans


# -- reading a document around a citation -------------------------------------------------------


class SourceReader:
    """The cited chunk in context; ``next()`` / ``previous()`` read on by page or section."""

    def __init__(self, corpus: Corpus, citation: CitationResult, notes_scope: str | None = None) -> None:
        """``notes_scope``: the session whose agent notes may be shown (others' never are)."""
        self.corpus = corpus
        self.citation = citation
        self.notes_scope = notes_scope
        found = self._visible(corpus.store.by_chunk_ids([citation.chunk_id]))
        if not found:
            raise LookupError(f"chunk {citation.chunk_id} is not in corpus '{corpus.name}' "
                              "(was the answer given over another corpus, or the file re-ingested?)")
        self.anchor = found[0]
        record = corpus.manifest.get(self.anchor.path)
        self.pages = record.pages if record else 0
        self.count = record.chunks if record else self.anchor.index + 1
        self.paged = self.anchor.page is not None and self.pages > 0
        self.current: Passage | None = None

    def open(self) -> Passage:
        if self.anchor.path == NOTES_PATH:
            return self._show([self.anchor], "agent note (archival_insert)")
        if self.paged:
            return self._page(self.anchor.page or 1)
        index = self.anchor.index
        window = self._section(index, before=SECTION_CHUNKS // 2, after=SECTION_CHUNKS // 2)
        return self._show(window)

    def next(self) -> Passage | None:
        current = self.current or self.open()
        if not current.has_next:
            return None
        if self.paged and current.page is not None:
            return self._page(current.page + 1)
        return self._show(self._section(current.last + 1, before=0, after=SECTION_CHUNKS - 1))

    def previous(self) -> Passage | None:
        current = self.current or self.open()
        if not current.has_previous:
            return None
        if self.paged and current.page is not None:
            return self._page(current.page - 1)
        return self._show(self._section(current.first - 1, before=SECTION_CHUNKS - 1, after=0))

    # -- views ---------------------------------------------------------------------------

    def _visible(self, chunks: list[Chunk]) -> list[Chunk]:
        return [c for c in chunks if c.visible_to(self.notes_scope)]

    def _page(self, page: int) -> Passage:
        chunks = self._visible(self.corpus.store.on_page(self.anchor.path, page))
        label = f"page {page} of {self.pages}"
        if not chunks:
            self.current = Passage(self.anchor.path, label, f"(no text was extracted from page {page})",
                                   None, None, -1, -1, page, page > 1, page < self.pages)
            return self.current
        return self._show(chunks, label, page)

    def _section(self, index: int, *, before: int, after: int) -> list[Chunk]:
        """Chunks around ``index`` that share its heading path, at most before/after of them."""
        around = self._visible(self.corpus.store.neighbours(self.anchor.path, max(0, index - before), index + after))
        by_index = {c.index: c for c in around}
        centre = by_index.get(index)
        if centre is None:
            return around
        picked = [centre]
        for step, limit in ((-1, before), (1, after)):
            i = index + step
            while abs(i - index) <= limit and i in by_index and by_index[i].headings == centre.headings:
                picked.append(by_index[i])
                i += step
        return sorted(picked, key=lambda c: c.index)

    def _show(self, chunks: list[Chunk], label: str | None = None, page: int | None = None) -> Passage:
        text, spans = merge(chunks)
        first, last = chunks[0].index, chunks[-1].index
        if label is None:
            heading = " > ".join(chunks[0].headings)
            shown = f"chunk {first + 1}" if first == last else f"chunks {first + 1}-{last + 1}"
            label = f"{shown} of {self.count}" + (f" · {heading}" if heading else "")
        cited = spans.get(self.anchor.index) if any(c.id == self.anchor.id for c in chunks) else None
        quote = find_quote(text, self.citation.quote, cited) if cited else None
        if page is not None:
            has_previous, has_next = page > 1, page < self.pages
        else:
            has_previous, has_next = first > 0, last + 1 < self.count
        self.current = Passage(self.anchor.path, label, text, quote, cited, first, last, page,
                               has_previous, has_next)
        return self.current
