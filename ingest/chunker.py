"""Token-aware chunking that keeps every chunk citable.

A document's blocks are joined into one extracted text; chunks are spans of it, so each
keeps its exact character span, page and heading path. Cuts fall between blocks where
possible, then between sentences, then between words, never inside a word. A heading
starts a new chunk once the current one is reasonably full, and such a chunk needs no
overlap. Other consecutive chunks overlap by about ``overlap`` tokens of the previous one,
snapped to a word start.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from docmem.schema import Chunk
from docmem.tokens import TokenCounter
from ingest.document import Block, Document

BLOCK_SEPARATOR = "\n\n"
_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+")
_WORD = re.compile(r"\S+\s*")


@dataclass(frozen=True)
class _Piece:
    start: int
    end: int
    tokens: int
    block: Block
    opens_block: bool


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

    def _split(self, text: str, base: int, block: Block) -> list[_Piece]:
        """Sentences, then word runs, for a block too long for one chunk."""
        pieces: list[_Piece] = []
        cursor = 0
        for sentence_end in [m.start() for m in _SENTENCE_END.finditer(text)] + [len(text)]:
            sentence = text[cursor:sentence_end]
            if sentence.strip():
                pieces.extend(self._words(sentence, base + cursor, block))
            cursor = sentence_end
            while cursor < len(text) and text[cursor].isspace():
                cursor += 1
        return pieces

    def _words(self, text: str, base: int, block: Block) -> list[_Piece]:
        tokens = self.counter.count(text)
        if tokens <= self.max_tokens:
            return [_Piece(base, base + len(text.rstrip()), tokens, block, False)]
        pieces, start, run = [], 0, 0
        for match in _WORD.finditer(text):
            word_tokens = self.counter.count(match.group())
            if run and run + word_tokens > self.max_tokens:
                pieces.append(_Piece(base + start, base + len(text[:match.start()].rstrip()), run, block, False))
                start, run = match.start(), 0
            if word_tokens > self.max_tokens:  # one enormous "word" (a URL, base64): cut it up
                offset, word = match.start(), match.group().rstrip()
                while word:
                    piece_text = self.counter.truncate(word, self.max_tokens)
                    if not piece_text or not word.startswith(piece_text):  # a split multi-byte char
                        piece_text = word[:self.max_tokens]
                    pieces.append(_Piece(base + offset, base + offset + len(piece_text),
                                         self.max_tokens, block, False))
                    offset, word = offset + len(piece_text), word[len(piece_text):]
                start, run = match.end(), 0
                continue
            run += word_tokens
        if run and text[start:].strip():
            pieces.append(_Piece(base + start, base + len(text.rstrip()), run, block, False))
        return pieces

    def _pieces(self, document: Document, starts: list[int]) -> list[_Piece]:
        pieces: list[_Piece] = []
        for block, start in zip(document.blocks, starts):
            if not block.text.strip():
                continue
            tokens = self.counter.count(block.text)
            if tokens <= self.max_tokens:
                pieces.append(_Piece(start, start + len(block.text), tokens, block, True))
            else:
                split = self._split(block.text, start, block)
                if split:
                    split[0] = _Piece(split[0].start, split[0].end, split[0].tokens, block, True)
                pieces.extend(split)
        return pieces

    # -- packing pieces into chunks ---------------------------------------------

    def _overlap_start(self, text: str, prev_start: int, boundary: int, tokens: int) -> int:
        """Start of a tail of text[prev_start:boundary] of at most ``tokens`` tokens, at a word."""
        if tokens <= 0:
            return boundary
        window = text[max(prev_start, boundary - tokens * 8):boundary]
        ids = self.counter.encoding.encode(window, disallowed_special=())
        if len(ids) <= tokens:
            tail_len = len(window)
        else:
            tail_len = len(self.counter.encoding.decode(ids[-tokens:]))
        start = boundary - tail_len
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
        for piece in pieces:
            heading_cut = piece.block.is_heading and piece.opens_block and used >= self.max_tokens // 3
            # A chunk led by a heading gets no overlap prefix, so it may use the whole size:
            # a heading is never left alone in a chunk because its first paragraph is long.
            led_by_heading = bool(current) and current[0].block.is_heading and current[0].opens_block
            budget = self.max_tokens if led_by_heading else self.max_tokens - self.overlap
            cost = piece.tokens + (1 if current else 0)  # the blank line between blocks is a token
            if current and (used + cost > budget or heading_cut):
                groups.append((current, used))
                current, used, cost = [], 0, piece.tokens
            current.append(piece)
            used += cost
        if current:
            groups.append((current, used))

        chunks: list[Chunk] = []
        prev_start = 0
        for index, (group, used) in enumerate(groups):
            first = group[0]
            start = first.start
            if index and not (first.block.is_heading and first.opens_block):
                # A block that nearly fills a chunk on its own leaves less room for overlap.
                room = min(self.overlap, self.max_tokens - used - 1)
                start = self._overlap_start(text, prev_start, first.start, room)
            end = group[-1].end
            pages = [p.block.page for p in group if p.block.page is not None]
            start_page = _page_at(pieces, start) or (pages[0] if pages else None)
            # The heading path of the chunk's first body text: headings that open the chunk
            # are its ancestors, so "# Guide / ## Owls / text" is cited as Guide > Owls.
            body = next((p for p in group if not p.block.is_heading), first)
            headings = body.block.headings
            chunks.append(Chunk(
                doc_hash=doc_hash, index=index, text=text[start:end], path=path, title=document.title,
                page=start_page, page_end=pages[-1] if pages else None,
                section=headings[-1] if headings else None, headings=headings,
                char_start=start, char_end=end,
            ))
            prev_start = first.start
        return chunks


def _page_at(pieces: list[_Piece], offset: int) -> int | None:
    for piece in pieces:
        if piece.start <= offset < piece.end or offset < piece.start:
            return piece.block.page
    return None
