"""Token-aware chunking that keeps every chunk citable.

A document's blocks are joined into one extracted text; chunks are spans of it, so each
keeps its exact character span, page and heading path. Cuts fall between blocks where
possible, then between sentences, then between words, never inside a word. A heading
starts a new chunk as soon as the current one holds any text under its own heading, and
such a chunk needs no overlap: a chunk never spans two sections, so its heading path names
the section all of its text comes from (short sections had been packed into the chunk of the
section before them and filed under its heading: a citation named the wrong section, and
the section could not be found by its own heading). Other consecutive chunks overlap by
about ``overlap`` tokens of the previous one, snapped to a word start.
"""

from __future__ import annotations

import bisect
import dataclasses
import re
from dataclasses import dataclass

from docmem.schema import Chunk
from docmem.tokens import TokenCounter
from ingest.document import Block, Document

BLOCK_SEPARATOR = "\n\n"
# Greedy: up to the last sentence end (followed by a space) / the last whitespace.
_LAST_SENTENCE_END = re.compile(r".*[.!?;:](?=\s)", re.S)
_LAST_GAP = re.compile(r".*\s", re.S)
# A text longer than this many characters per allowed token is too long for one chunk without
# counting it (English averages about 4; only runs of spaces or symbols go far beyond).
_MAX_CHARS_PER_TOKEN = 32


@dataclass(frozen=True)
class _Piece:
    start: int
    end: int
    tokens: int
    block: Block
    opens_block: bool
    tail: int = 0  # characters of its last ``overlap`` tokens, when known (saves an encode)


def extracted_text(document: Document) -> tuple[str, list[int]]:
    """The full text the spans refer to, and each block's start offset in it."""
    starts, parts, offset = [], [], 0
    for block in document.blocks:
        starts.append(offset)
        parts.append(block.text)
        offset += len(block.text) + len(BLOCK_SEPARATOR)
    return BLOCK_SEPARATOR.join(parts), starts


class Chunker:
    def __init__(self, max_tokens: int = 200, overlap: int = 30, counter: TokenCounter | None = None) -> None:
        if max_tokens < 16 or not 0 <= overlap < max_tokens // 2:
            raise ValueError("chunk size must be >= 16 tokens and overlap below half of it")
        self.max_tokens = max_tokens
        self.overlap = overlap
        self.counter = counter or TokenCounter()

    # -- splitting into pieces no larger than a chunk ----------------------------

    def _fits(self, text: str) -> int | None:
        """The token count of ``text`` if it may fit in one chunk, else None without counting.

        Counting a 50 MB paragraph only to learn it is too long costs seconds; a text of more
        than ``_MAX_CHARS_PER_TOKEN`` characters per allowed token is split without asking."""
        if len(text) > self.max_tokens * _MAX_CHARS_PER_TOKEN:
            return None
        tokens = self.counter.count(text)
        return tokens if tokens <= self.max_tokens else None

    def _split(self, text: str, base: int, block: Block) -> list[_Piece]:
        """Cut a block too long for one chunk into runs of at most ``max_tokens``, in linear time.

        Each run is a window of characters sized by the text's own characters-per-token so far,
        cut back to its last sentence end (or, failing one, its last gap between words) and
        counted exactly; a window over budget shrinks in proportion. Every character is counted
        a small constant number of times, so a 50 MB line costs 50 times a 1 MB one (counting
        word by word was quadratic). A "word" longer than a chunk (a URL, base64) is cut at the
        window's end. Runs shorter than a chunk are packed together again by ``chunk``."""
        pieces: list[_Piece] = []
        budget = self.max_tokens - self.overlap  # so that the next chunk has room for its overlap
        n, pos, chars_per_token = len(text), 0, 4.0
        while pos < n and text[pos].isspace():
            pos += 1
        while pos < n:
            size, tail = max(1, int(budget * chars_per_token * 0.95)), 0
            for _attempt in range(12):
                end = _cut(text, pos, min(n, pos + size))
                if end is None:  # inside a giant word: a run of `budget` bytes has at most as many tokens
                    end, tokens = _byte_run(text, pos, budget)
                    break
                ids = self.counter.encoding.encode(text[pos:end], disallowed_special=())
                tokens, tail = len(ids), 0
                if tokens <= budget or end - pos == 1:
                    chars_per_token = 0.5 * chars_per_token + 0.5 * (end - pos) / max(tokens, 1)
                    if self.overlap and tokens > self.overlap:
                        tail = len(self.counter.encoding.decode(ids[-self.overlap:]))
                    break
                size = max(1, int((end - pos) * budget / tokens * 0.9))
            pieces.append(_Piece(base + pos, base + end, tokens, block, False, tail))
            pos = end
            while pos < n and text[pos].isspace():
                pos += 1
        return pieces

    def _pieces(self, document: Document, starts: list[int]) -> list[_Piece]:
        pieces: list[_Piece] = []
        for block, start in zip(document.blocks, starts):
            if not block.text.strip():
                continue
            tokens = self._fits(block.text)
            if tokens is not None:
                pieces.append(_Piece(start, start + len(block.text), tokens, block, True))
            else:
                split = self._split(block.text, start, block)
                if split:
                    split[0] = dataclasses.replace(split[0], opens_block=True)
                pieces.extend(split)
        return pieces

    # -- packing pieces into chunks ---------------------------------------------

    def _overlap_start(self, text: str, prev_start: int, boundary: int, tokens: int, last: _Piece) -> int:
        """Start of a tail of text[prev_start:boundary] of at most ``tokens`` tokens, at a word;
        ``last``, the piece before ``boundary``, may know its tail already."""
        if tokens <= 0:
            return boundary
        if last.tail and tokens == self.overlap and not text[last.end:boundary].strip():
            start = last.end - last.tail
        else:
            window = text[max(prev_start, boundary - tokens * 6):boundary]
            if _LAST_GAP.match(window) is None:  # inside one giant word: no word to start at
                return boundary
            start = boundary - len(self.counter.tail(window, tokens))
        # Snap forward to the start of a word so no chunk begins mid-word.
        while start < boundary and start > 0 and not text[start - 1].isspace():
            start += 1
        while start < boundary and text[start].isspace():
            start += 1
        return max(start, prev_start)

    def chunk(self, document: Document, *, doc_hash: str, path: str) -> list[Chunk]:
        text, starts = extracted_text(document)
        pieces = self._pieces(document, starts)
        groups: list[tuple[list[_Piece], int]] = []  # pieces and their tokens
        current: list[_Piece] = []
        used = 0
        has_body = False  # the current chunk holds more than headings
        for piece in pieces:
            heading_cut = piece.block.is_heading and piece.opens_block and has_body
            # A chunk led by a heading gets no overlap prefix, so it may use the whole size:
            # a heading is never left alone in a chunk because its first paragraph is long.
            led_by_heading = bool(current) and current[0].block.is_heading and current[0].opens_block
            budget = self.max_tokens if led_by_heading else self.max_tokens - self.overlap
            cost = piece.tokens + (1 if current else 0)  # the blank line between blocks is a token
            if current and (used + cost > budget or heading_cut):
                groups.append((current, used))
                current, used, cost, has_body = [], 0, piece.tokens, False
            current.append(piece)
            used += cost
            has_body = has_body or not piece.block.is_heading
        if current:
            groups.append((current, used))

        chunks: list[Chunk] = []
        prev_start = 0
        ends = [p.end for p in pieces]
        for index, (group, used) in enumerate(groups):
            first = group[0]
            start = first.start
            led = first.block.is_heading and first.opens_block
            if index and not led:
                # A block that nearly fills a chunk on its own leaves less room for overlap.
                room = min(self.overlap, self.max_tokens - used - 1)
                start = self._overlap_start(text, prev_start, first.start, room, groups[index - 1][0][-1])
            end = group[-1].end
            pages = [p.block.page for p in group if p.block.page is not None]
            start_page = _page_at(pieces, ends, start) or (pages[0] if pages else None)
            # The heading path of the chunk's first body text: headings that open the chunk
            # are its ancestors, so "# Guide / ## Owls / text" is cited as Guide > Owls.
            body = next((p for p in group if not p.block.is_heading), first)
            headings = body.block.headings
            chunks.append(Chunk(
                doc_hash=doc_hash, index=index, text=text[start:end], path=path, title=document.title,
                page=start_page, page_end=pages[-1] if pages else None,
                section=headings[-1] if headings else None, headings=headings,
                char_start=start, char_end=end, opens_section=led and bool(headings),
            ))
            prev_start = first.start
        return chunks


def _page_at(pieces: list[_Piece], ends: list[int], offset: int) -> int | None:
    """The page of the first piece that holds or follows ``offset`` (a bisection: linear scans
    per chunk made chunking quadratic in the number of pieces)."""
    at = bisect.bisect_right(ends, offset)
    return pieces[at].block.page if at < len(pieces) else None


def _cut(text: str, start: int, end: int) -> int | None:
    """Where a run of text[start:end] should end: ``end`` if the text ends there; else after the
    window's last sentence end if that keeps at least a quarter of it; else after its last whole
    word; None inside one giant word."""
    if end >= len(text):
        return len(text[start:].rstrip()) + start
    sentence = _LAST_SENTENCE_END.match(text, start, end)
    if sentence is not None and sentence.end() - start >= (end - start) // 4:
        return sentence.end()
    if text[end].isspace():
        return len(text[start:end].rstrip()) + start
    gap = _LAST_GAP.match(text, start, end)
    if gap is None:
        return None
    return len(text[start:gap.end()].rstrip()) + start


def _byte_run(text: str, start: int, budget: int) -> tuple[int, int]:
    """The end of a run from ``start`` of at most ``budget`` UTF-8 bytes, and its byte length:
    a bound on its tokens that needs no tokenizer (BPE on a long "word" is slow)."""
    end = min(len(text), start + budget)
    size = len(text[start:end].encode("utf-8", "surrogatepass"))
    while size > budget and end - start > 1:
        end = start + max(1, (end - start) * budget // size)
        size = len(text[start:end].encode("utf-8", "surrogatepass"))
    return end, size
